"""The video tab: one clip, every object of the categories tracked through it, streamed frame by frame.

Track streams a :class:`VideoUpdate` after every frame (progress bar in frames, the latest frame's
overlay); at the end the overlay video plays in the page, a slider shows any frame's overlay with
its objects (track id, class, score), and one results zip holds the labels, the chosen dataset
formats and ``overlay.mp4``. A click on the frame the slider shows fixes the selected track there
(a + or − point) or adds a new object of a picked class, then re-tracks the clip from that frame
(:func:`~grounded_sam.runs.retrack.retrack`), streaming its progress as a run does. The named API
endpoint ``/track`` does the same work as Track and returns the overlay video, the zip and the summary.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import gradio as gr
from gradio.components import Component

from grounded_sam.app import gpu
from grounded_sam.app.errors import EDIT_ERROR_S, user_errors
from grounded_sam.app.jobs import DEFAULT_MAX_JOB_AGE_S
from grounded_sam.app.markup import VIDEO_STOPPED, progress_bar_html
from grounded_sam.app.options import LabelOptions, load_models
from grounded_sam.app.options_panel import OptionsPanel
from grounded_sam.app.queues import EDIT_GROUP, JOB_EVENT
from grounded_sam.app.settings import AppSettings
from grounded_sam.app.video_job import DEFAULT_VIDEO_FORMATS, POINT_MODES, ClipOptions, FrameView
from grounded_sam.categories import parse_categories
from grounded_sam.errors import InputError
from grounded_sam.pipeline.track import DEFAULT_EVERY

if TYPE_CHECKING:
    from pathlib import Path

    from grounded_sam.app.video_job import ClipPlan
    from grounded_sam.runs.batch import BatchSummary

__all__ = ["FRAME_HEADERS", "EditUpdate", "VideoHandlers", "VideoTab", "VideoUpdate", "build_video_tab", "edit_video",
           "run_video"]

FRAME_HEADERS = ["track id", "class", "score"]
EDIT_HINT = ("To fix a track: pick it (or New object and its class), pick + or −, then click on the frame. The "
             "clip is tracked again from that frame; the frames before it stay as they are.")
FORMAT_CHOICES = [("COCO (with track ids)", "coco"), ("MOT (mot.txt)", "mot"), ("YOLO", "yolo"),
                  ("Pascal VOC", "voc"), ("Mask PNGs", "masks")]


class VideoUpdate(NamedTuple):
    """What the video tab shows after each frame: progress bar (HTML), a frame's overlay and its objects, and at
    the end the overlay video, the results zip and the frame viewer's job."""

    progress_html: str
    frame: str | None
    objects: list[list[Any]]
    video: str | None
    results: str | None
    summary: str
    view: FrameView | None = None
    tracks: list[tuple[str, str]] | None = None


class EditUpdate(NamedTuple):
    """What the video tab shows while an edit re-tracks (the progress bar), and at its end: the edited frame and
    its objects, the overlay video, the results zip, the track selector's choices and the edit's status line."""

    progress_html: str
    status: str
    frame: str | None = None
    objects: list[list[Any]] | None = None
    video: str | None = None
    results: str | None = None
    tracks: list[tuple[str, str]] | None = None
    summary: str | None = None


def _progress(done: int, total: int | None, note: str, verb: str = "Tracked") -> str:
    return progress_bar_html(done, total, note, verb=verb, unit="frames", element_id="video-progress-bar")


def _status(text: str) -> str:
    return f'<div id="video-edit-status-text" style="padding:2px 4px">{html.escape(text)}</div>'


def run_video(settings: AppSettings, video: Any, options: LabelOptions, clip: ClipOptions,
              progress: Callable[..., Any] | None = None) -> Iterator[VideoUpdate]:
    """Tracks a clip: yields a :class:`VideoUpdate` before the models load, after every frame, and at the end.

    Args:
        video: The uploaded clip as Gradio hands it over.
        clip: Key-frame spacing, the range, the frame limit and the dataset formats.
        progress: ``gr.Progress`` (its updates reach API clients); None in tests.

    Raises:
        GroundedSamError: A user-fixable problem with the clip or the options (nothing was tracked).
    """
    from grounded_sam.app.jobs import format_seconds, new_job_dir, seconds_left, upload_path
    from grounded_sam.app.video_job import RESULTS, overlay_png, plan_clip, video_summary_text
    from grounded_sam.runs.batch import BatchSummary

    parsed = parse_categories(options.categories)
    pipe = options.models.pipeline(settings)
    upload = upload_path(video)
    if upload is None:
        raise InputError("No video: upload a clip (.mp4, .mov, .webm or .mkv).")
    plan = plan_clip(upload[0], clip, settings)
    annotator = options.overlay.annotator()
    job = new_job_dir()
    total, frames = plan.frames, plan.frames or plan.run["max_frames"]
    report = progress or (lambda *args, **kwargs: None)
    report((0, total), desc="Loading models", unit="frames")
    yield VideoUpdate(_progress(0, total, "loading models"), None, [], None, None, video_summary_text(plan, None))
    load_models(pipe, tracking=True)
    started = time.perf_counter()
    summary, frame = None, None
    run = {**plan.run, "annotator": annotator, "short_model_names": True}  # the zip names no server folder
    for event in gpu.track_on_gpu(pipe, plan.path, parsed, job / RESULTS, frames, run):
        if isinstance(event, BatchSummary):
            summary = event
            break  # ends the GPU call before the zip is written
        frame = str(overlay_png(job / RESULTS, event.outcome.stem))
        left = format_seconds(seconds_left(event.done, event.total, time.perf_counter() - started)
                              if event.total else None)
        counted = f"{event.done}/{event.total}" if event.total else str(event.done)
        report((event.done, event.total), desc=f"Tracked {counted} frames" + (f", {left}" if left else ""),
               unit="frames")
        yield VideoUpdate(_progress(event.done, event.total, left), frame, [], None, None,
                          video_summary_text(plan, None, event.done))
    if summary is None:  # the run was stopped
        return
    yield _finish(job, plan, summary, started, options)


def _finish(job: Path, plan: ClipPlan, summary: BatchSummary, started: float, options: LabelOptions) -> VideoUpdate:
    """Zips the results: the last update, with the video, the zip, the first frame and the tracks to fix."""
    from grounded_sam.app.video_job import (
        finish_video_job,
        frame_view,
        track_choices,
        tracks_by_class,
        video_summary_text,
    )

    results, view = finish_video_job(job, plan, summary, options)
    frame, objects = frame_view(view, view.first)
    done = len(summary.labeled)
    return VideoUpdate(_progress(done, done, f"done in {time.perf_counter() - started:.0f} s"), frame, objects,
                       _overlay_video(view), str(results),
                       video_summary_text(plan, summary, done, tracks_by_class(view)), view, track_choices(view))


def _overlay_video(view: FrameView) -> str | None:
    from grounded_sam.export.video import OVERLAY_VIDEO_PATH

    path = view.results / OVERLAY_VIDEO_PATH
    return str(path) if path.is_file() else None


def edit_video(settings: AppSettings, view: FrameView | None, index: Any, point: tuple[float, float], mode: Any,
               track: Any, class_name: Any, progress: Callable[..., Any] | None = None) -> Iterator[EditUpdate]:
    """A click on the frame the slider shows: fixes the track there (or adds an object), then re-tracks the clip from
    that frame with the run's models and overlay options; yields an :class:`EditUpdate` per frame, then the result.

    Args:
        view: The finished job (the tab's state).
        index: The slider's frame.
        point: ``(x, y)`` pixels of the click.
        mode: + or − point (:data:`~grounded_sam.app.video_job.POINT_MODES`).
        track: The track selector's value: a track id, or a new object.
        class_name: The new object's class.
        progress: ``gr.Progress``; None in tests.

    Raises:
        GroundedSamError: No finished job, nothing picked, a point off the track's frame (nothing was changed).
    """
    from grounded_sam.app.jobs import ProgressEvent
    from grounded_sam.app.video_job import (
        edit_request,
        edit_status_text,
        finish_video_edit,
        frame_index,
        frame_view,
        track_choices,
    )

    edit = edit_request(view, index, point, mode, track, class_name)
    assert view is not None and view.options is not None  # edit_request refuses a view without them
    pipe = view.options.models.pipeline(settings)
    annotator = view.options.overlay.annotator()
    first, frames = edit["frame"], view.last - edit["frame"] + 1
    report = progress or (lambda *args, **kwargs: None)
    report((0, frames), desc=f"Re-tracking from frame {first}", unit="frames")
    status = _status(f"Fixing frame {first}, then tracking the clip again from there...")
    yield EditUpdate(_progress(0, frames, "loading models", verb="Re-tracked"), status)
    load_models(pipe, tracking=True)
    started, result = time.perf_counter(), None
    for event in gpu.retrack_on_gpu(pipe, view.results, frames, edit, annotator):
        if not isinstance(event, ProgressEvent):
            result = event
            break  # ends the GPU call before the zip is written
        # A stopped edit of before goes on first: its frames count from where it stopped.
        done = min(max(frame_index(event.outcome.source) - first + 1, 0), frames)
        report((done, frames), desc=f"Re-tracked {done}/{frames} frames", unit="frames")
        yield EditUpdate(_progress(done, frames, "", verb="Re-tracked"), status)
    if result is None:  # the edit was stopped
        return
    seconds = time.perf_counter() - started
    results, summary = finish_video_edit(view, result)
    frame, objects = frame_view(view, first)
    yield EditUpdate(_progress(frames, frames, f"done in {seconds:.0f} s", verb="Re-tracked"),
                     _status(edit_status_text(edit, result, view, seconds)), frame, objects, _overlay_video(view),
                     str(results), track_choices(view), summary)


@dataclass(frozen=True)
class VideoTab:
    """The tab's inputs (besides the options column) and what shows a run's progress and results."""

    clip: gr.Video
    every: gr.Number
    max_frames: gr.Number
    start_s: gr.Number
    end_s: gr.Number
    formats: gr.CheckboxGroup
    progress: gr.HTML
    overlay_video: gr.Video
    frame_slider: gr.Slider
    frame: gr.Image
    objects: gr.Dataframe
    results: gr.File
    summary: gr.Textbox
    view: gr.State
    track: gr.Dropdown
    point_mode: gr.Radio
    new_class: gr.Dropdown
    edit_status: gr.HTML

    @property
    def clip_inputs(self) -> list[Component]:
        """The tracking settings, in the order of the named API's parameters (after the options column's)."""
        return [self.every, self.max_frames, self.start_s, self.end_s, self.formats]

    def show(self, update: VideoUpdate) -> dict[Component, Any]:
        """An update as the answer of a streaming event; the frame slider appears with the finished result."""
        shown = {self.progress: update.progress_html, self.frame: update.frame, self.objects: update.objects,
                 self.overlay_video: update.video, self.results: update.results, self.summary: update.summary,
                 self.view: update.view}
        view = update.view
        shown[self.frame_slider] = gr.Slider(visible=False) if view is None else gr.Slider(
            minimum=view.first, maximum=max(view.last, view.first + 1), value=view.first, visible=True)
        # The edit controls come with a finished result: its tracks, and its classes for a new object.
        editable = view is not None and view.options is not None and update.tracks is not None
        choices = update.tracks or []
        classes = list(parse_categories(view.options.categories).class_names) if editable else []  # type: ignore[union-attr]
        shown[self.track] = gr.Dropdown(choices=choices, value=choices[0][1] if choices else None, visible=editable)
        shown[self.new_class] = gr.Dropdown(choices=classes, value=classes[0] if classes else None, visible=editable)
        shown[self.point_mode] = gr.Radio(visible=editable)
        shown[self.edit_status] = gr.HTML(_status(EDIT_HINT) if editable else "", visible=editable)
        return shown

    @property
    def edit_outputs(self) -> list[Component]:
        """What an edit may change."""
        return [self.progress, self.edit_status, self.frame, self.objects, self.overlay_video, self.results, self.track,
                self.summary]

    def show_edit(self, update: EditUpdate) -> dict[Component, Any]:
        """An edit's update as the answer of a streaming event: the progress, then the edited result."""
        shown: dict[Component, Any] = {self.progress: update.progress_html, self.edit_status: update.status}
        if update.results is not None:
            shown.update({self.frame: update.frame, self.objects: update.objects, self.overlay_video: update.video,
                          self.results: update.results, self.track: gr.Dropdown(choices=update.tracks)})
            if update.summary is not None:
                shown[self.summary] = update.summary
        return shown


class VideoHandlers:
    """The tab's streaming run, the ``/track`` endpoint, and the frame viewer."""

    def __init__(self, settings: AppSettings, options: OptionsPanel, tab: VideoTab) -> None:
        self.settings = settings
        self.options = options
        self.tab = tab

    @user_errors()
    def track_stream(self, values: dict[Component, Any],
                     progress: gr.Progress = gr.Progress()) -> Iterator[dict[Component, Any]]:  # noqa: B008
        tab = self.tab
        clip = ClipOptions(*(values[c] for c in tab.clip_inputs))
        for update in run_video(self.settings, values[tab.clip], self.options.read(values), clip, progress):
            yield tab.show(update)

    @user_errors()
    def track(self, video: Any, categories: str, detector: str | None = None, segmenter: str | None = None,
              min_score: float = 0.0, nms: str = "class", nms_iou: float = 0.7, show_masks: bool = True,
              show_boxes: bool = True, show_labels: bool = True, opacity: float = 0.5, every: int = DEFAULT_EVERY,
              max_frames: int = 0, start_s: float = 0.0, end_s: float = 0.0,
              formats: list[str] | tuple[str, ...] = DEFAULT_VIDEO_FORMATS,
              progress: gr.Progress = gr.Progress()) -> tuple[str | None, str | None, str]:  # noqa: B008 (Gradio's way)
        """Tracks every object of the categories through a clip: returns the overlay video (mp4), the results zip
        (labels per frame with track ids, the chosen formats, overlay.mp4) and a summary."""
        # The parameters are the API's (names, order, defaults); LabelOptions takes its own by name.
        options = LabelOptions.from_flat(locals())
        clip = ClipOptions(every, max_frames, start_s, end_s, formats)
        last = VideoUpdate("", None, [], None, None, "")
        for update in run_video(self.settings, video, options, clip, progress):
            last = update
        return last.video, last.results, last.summary

    @user_errors(EDIT_ERROR_S)
    def show_frame(self, view: FrameView | None, index: Any) -> tuple[str, list[list[Any]]]:
        """The frame viewer: the slider's frame, its overlay and objects."""
        from grounded_sam.app.video_job import frame_view

        return frame_view(view, index)

    @user_errors(EDIT_ERROR_S)
    def click_frame(self, view: FrameView | None, index: Any, track: Any, mode: Any, new_class: Any,
                    evt: gr.SelectData, progress: gr.Progress = gr.Progress()  # noqa: B008 (Gradio's way)
                    ) -> Iterator[dict[Component, Any]]:
        """A click on the shown frame: fixes the picked track there (or adds an object), then re-tracks from it."""
        if not isinstance(evt.index, (list, tuple)) or len(evt.index) != 2:  # beside the image
            return
        x, y = (float(v) for v in evt.index)
        for update in edit_video(self.settings, view, index, (x, y), mode, track, new_class, progress):
            yield self.tab.show_edit(update)


def build_video_tab(settings: AppSettings, options: OptionsPanel) -> None:
    """Creates the tab and wires Track, Stop, the frame slider and the ``/track`` endpoint."""
    tab, run, stop, api_trigger = _video_components(settings)
    handlers = VideoHandlers(settings, options, tab)
    inputs = [tab.clip, *options.components, *tab.clip_inputs]
    outputs = [tab.progress, tab.frame, tab.objects, tab.overlay_video, tab.results, tab.summary, tab.view,
               tab.frame_slider, tab.track, tab.new_class, tab.point_mode, tab.edit_status]
    track_event = run.click(handlers.track_stream, set(inputs), outputs, api_visibility="private",
                            show_progress_on=[tab.results], **JOB_EVENT)
    tab.frame_slider.input(handlers.show_frame, [tab.view, tab.frame_slider], [tab.frame, tab.objects],
                           api_visibility="private", trigger_mode="always_last", show_progress="hidden",
                           **EDIT_GROUP)
    # Each click is an edit (never dropped); an edit tracks the clip again from its frame, so it is a job as Track is.
    edit_event = tab.frame.select(handlers.click_frame,
                                  [tab.view, tab.frame_slider, tab.track, tab.point_mode, tab.new_class],
                                  tab.edit_outputs, api_visibility="private", show_progress_on=[tab.edit_status],
                                  trigger_mode="multiple", **JOB_EVENT)
    stop.click(lambda: VIDEO_STOPPED, None, tab.progress, cancels=[track_event, edit_event], queue=False,
               api_visibility="private")
    api_trigger.click(handlers.track, inputs, [tab.overlay_video, tab.results, tab.summary], api_name="track",
                      **JOB_EVENT)


def _video_components(settings: AppSettings) -> tuple[VideoTab, gr.Button, gr.Button, gr.Button]:
    with gr.Tab("Video", id="video-tab"):
        gr.Markdown(
            "Track every object of the categories on the left through a clip: the detector runs on every N-th "
            "frame, SAM2 carries each mask in between, and each object keeps one id. The results zip holds "
            "`labels/frame_<i>.json` per frame (with track ids), the formats you tick and `overlay.mp4`. "
            f"Up to {settings.max_video_frames} frames per clip; the overlay options on the left draw the video too."
        )
        clip = gr.Video(label="Clip (.mp4, .mov, .webm, .mkv)", sources=["upload"], height=320,
                        elem_id="video-input")
        with gr.Row():
            every = gr.Number(DEFAULT_EVERY, label="Detect every N frames", precision=0, minimum=1,
                              elem_id="video-every", info="Smaller finds new objects sooner; larger is faster.")
            max_frames = gr.Number(0, label="Most frames", precision=0, minimum=0, elem_id="video-max-frames",
                                   info="0: the whole range, up to the cap.")
            start_s = gr.Number(0, label="Start (s)", minimum=0, elem_id="video-start")
            end_s = gr.Number(0, label="End (s)", minimum=0, elem_id="video-end", info="0: the end of the clip.")
        formats = gr.CheckboxGroup(FORMAT_CHOICES, value=list(DEFAULT_VIDEO_FORMATS), elem_id="video-formats",
                                   label="Dataset formats in the results zip")
        with gr.Row():
            run = gr.Button("Track", variant="primary", elem_id="run-video")
            stop = gr.Button("Stop", variant="stop", elem_id="stop-video")
        progress = gr.HTML(elem_id="video-progress")
        summary = gr.Textbox(label="Summary", lines=3, max_lines=12, interactive=False, elem_id="video-summary")
        overlay_video = gr.Video(label="Overlay video", interactive=False, height=400, elem_id="video-overlay")
        results = gr.File(label="Results zip", interactive=False, elem_id="video-results")
        frame_slider = gr.Slider(0, 1, value=0, step=1, label="Frame", visible=False, elem_id="video-frame")
        with gr.Row(equal_height=True):
            track = gr.Dropdown([], value=None, label="A click on the frame fixes", visible=False, scale=2,
                                elem_id="video-edit-track")
            point_mode = gr.Radio(list(POINT_MODES), value=POINT_MODES[0], label="Point", visible=False, scale=2,
                                  elem_id="video-edit-mode")
            new_class = gr.Dropdown([], value=None, label="Class (new object)", visible=False, scale=1,
                                    elem_id="video-edit-class")
        edit_status = gr.HTML(visible=False, elem_id="video-edit-status")
        with gr.Row():
            frame = gr.Image(type="filepath", format="png", label="Frame overlay · click to fix a track",
                             interactive=False, height=360, scale=3, elem_id="video-frame-image")
            objects = gr.Dataframe(headers=FRAME_HEADERS, value=[], interactive=False, scale=2,
                                   label="Objects on this frame", elem_id="video-objects")
        view = gr.State(None, time_to_live=DEFAULT_MAX_JOB_AGE_S)  # the last result, as long as its job folder lives
        # The API endpoint: same work, returning the overlay video, the zip and the summary.
        api_trigger = gr.Button(visible=False)
    tab = VideoTab(clip, every, max_frames, start_s, end_s, formats, progress, overlay_video, frame_slider, frame,
                   objects, results, summary, view, track, point_mode, new_class, edit_status)
    return tab, run, stop, api_trigger
