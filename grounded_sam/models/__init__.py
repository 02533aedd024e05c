"""The models: which exist (registry), where their weights are (weights), loading them once per device
(loading), the device and precision (devices), the detectors (florence/, grounding_dino, owlv2 sharing
native: boxes from prompts; sam3: masks from prompts), SAM2 (sam2/: masks from boxes, clicks on cached
embeddings), SAM 3's tracker (sam3_tracker: clicks on SAM 3 results), the interface of click refiners
(refiner), and tiny random models for tests (testing).

Nothing here imports torch, transformers or sam2 at import time.
"""
