"""The Gradio web app: settings from the environment, upload jobs, the ZeroGPU shim, and one builder per
tab; :func:`grounded_sam.app.blocks.build_demo` puts them together. Gradio is imported only here.
"""
