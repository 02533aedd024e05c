"""The Gradio web app: settings from the environment, upload jobs, the ZeroGPU shim, and one builder per
tab; :func:`grounded_sam.app.blocks.build_demo` puts them together. Gradio is imported only here.

- ``blocks``: the page (the options column beside the tabs), its queue, and ``main`` (``python app.py``).
- ``options_panel``: the options column's components, read into ``LabelOptions``.
- ``image_tab``: the image tab: Run (the ``/segment`` endpoint), the redraw on an overlay option.
- ``edit_panel``: fixing a result by clicks, one editor per browser session.
- ``batch_tab``: the batch tab: a streamed run into one results zip (the ``/label_batch`` endpoint).
- ``video_tab``: the video tab: a clip tracked and streamed frame by frame, the overlay video, a frame viewer
  and one results zip (the ``/track`` endpoint).
- ``video_job``: a video job without Gradio: the clip's caps, the run, a frame's objects, the summary, the zip.
- ``image_result``: one image's result, without Gradio: the run, a redraw, its details, an editor of it.
- ``options``: a request's raw values -> the pipeline, the annotator, the overlay style.
- ``errors``: the one wrapper that turns a package error into the message a user reads (any other failure into a
  short message with an error id that the log holds too).
- ``markup``: the HTML the app writes: the legend, the progress bars, the edit status.
- ``queues``: the concurrency groups: interactive model work, long jobs (batch, clip), and the edits'.
- ``gate``: one model call at a time, interactive calls before a batch's next image.
- ``gpu``: every model call through the gate, and ZeroGPU's ``spaces.GPU`` around it, sized by the work.
- ``jobs``, ``settings``: job folders, batch inputs and a blocking run streamed item by item; the
  ``GROUNDED_SAM_*`` settings.

Importing any of these loads no model and does not import torch: the package's model modules are
imported inside the functions that use them.
"""
