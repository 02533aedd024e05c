"""Grounded SAM 2 web app (Gradio): an image tab, a batch tab and two named API endpoints.

UI wiring only, and it lives in :mod:`grounded_sam.app` (:func:`grounded_sam.app.blocks.build_demo`
builds the page); every model step, file format and safety check is the ``grounded_sam`` package's.

On the image tab, after Run, the result can be fixed by clicking on the overlay (see
:mod:`grounded_sam.app.edit_panel`); each browser session has its own editor, released when the
session ends.

Run with ``python app.py``: it serves on 127.0.0.1:7860 (``GRADIO_SERVER_NAME`` and
``GRADIO_SERVER_PORT`` override). Settings come from ``GROUNDED_SAM_*`` environment variables
(see :mod:`grounded_sam.app.settings`). The page renders before any model loads; models load on
first use and are shared by every request. All model work goes through one queue, one request
at a time.

API (``gradio_client``)::

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    overlay_png, detections = client.predict(handle_file("truck.jpg"), "truck, tire", api_name="/segment")
    results_zip, summary = client.predict([handle_file("photos.zip")], "truck, tire", api_name="/label_batch")
"""

from __future__ import annotations

# On Hugging Face ZeroGPU Spaces, `spaces` must be imported before anything imports torch (it
# patches CUDA initialisation); everywhere else it is absent, or present and a no-op.
try:
    import spaces
except ImportError:
    spaces = None

from grounded_sam.app.blocks import build_demo, main

__all__ = ["build_demo", "main"]

if __name__ == "__main__":
    main()
