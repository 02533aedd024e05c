"""The models: which exist (registry), where their weights are (weights), loading them once per device
(loading), the device and precision (devices), Florence-2 (florence/: boxes from prompts) and SAM2
(sam2/: masks from boxes, clicks on cached embeddings), and tiny random models for tests (testing).

Nothing here imports torch, transformers or sam2 at import time.
"""
