"""The page: the options column beside the image, batch and video tabs, the queue, and serving it.

:func:`build_demo` builds no model: models load on first use and are shared by every request.
:func:`main` is what ``python app.py`` runs.
"""

from __future__ import annotations

import logging
import os

import gradio as gr

from grounded_sam.app.batch_tab import build_batch_tab
from grounded_sam.app.edit_panel import release_on_unload, wire_resume
from grounded_sam.app.image_tab import build_image_tab
from grounded_sam.app.options_panel import build_options_panel
from grounded_sam.app.settings import AppSettings, load_settings
from grounded_sam.app.video_tab import build_video_tab
from grounded_sam.errors import GroundedSamError

__all__ = ["build_demo", "main"]


def build_demo(settings: AppSettings | None = None) -> gr.Blocks:
    """The app's Blocks, with its queue configured; builds no model.

    Args:
        settings: The server's settings; read from the environment when None.

    Raises:
        OptionError: An environment variable holds a bad value (only when ``settings`` is None).
    """
    from grounded_sam.caching import DetectionCache
    from grounded_sam.editing.editor import EditorRegistry
    from grounded_sam.editing.store import EditStore

    settings = settings or load_settings()
    # Shared by every session: automatic results by (image, categories, models, options), the
    # live editors by browser session (each released when its session ends), and the saved edits
    # by browser (kept across reloads and restarts).
    detection_cache = DetectionCache()
    editors = EditorRegistry()
    store = (EditStore(settings.data_dir, settings.edit_retention_hours * 3600)
             if settings.saves_edits and settings.data_dir is not None else None)

    with gr.Blocks(title="Grounded SAM 2", delete_cache=(3600, 6 * 3600)) as demo:
        gr.Markdown(
            "# Grounded SAM 2\n"
            "Type what to find, get a mask for every object: Florence-2 finds the boxes, SAM2 draws the masks "
            "(and, in a video, carries them from frame to frame)."
        )
        with gr.Row(equal_height=False):
            options = build_options_panel(settings)
            with gr.Column(scale=3), gr.Tabs():
                edits = build_image_tab(settings, options, detection_cache, editors, store)
                build_batch_tab(settings, options)
                build_video_tab(settings, options)
        demo.unload(release_on_unload(editors))
        wire_resume(demo, edits)

    demo.queue(max_size=settings.queue_size, default_concurrency_limit=2)
    return demo


def main() -> None:
    """Serves the app: ``GRADIO_SERVER_NAME`` (default 127.0.0.1), ``GRADIO_SERVER_PORT`` (default 7860)."""
    # The package's own messages (models loaded, requests refused); not every HTTP request or SAM2 call.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("grounded_sam").setLevel(logging.INFO)
    try:
        settings = load_settings()
    except GroundedSamError as exc:
        raise SystemExit(f"error: {exc}") from None
    from grounded_sam.models.devices import set_torch_threads

    logging.getLogger(__name__).info("Model calls use %d CPU threads", set_torch_threads(settings.torch_threads))
    build_demo(settings).launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        # Explicit, so a busy port is an error rather than a silent move to the next free one.
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        max_file_size=settings.max_upload_bytes,
        # What Gradio itself refuses before a handler runs (a file path no user uploaded, a malformed value, a
        # file over the size cap) reaches the client with Gradio's message instead of a bare "Error". Handlers
        # never leak internals this way: user_errors turns every exception of theirs into a gr.Error first.
        show_error=True,
    )
