"""``python -m grounded_sam track``: a clip in, tracked labels per frame, MOT, COCO and an overlay video out."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from grounded_sam.cli.common import EXIT_INTERRUPTED, EXIT_OK
from grounded_sam.cli.label import add_model_arguments, pipeline_from_args, progress_bar, terminate_like_ctrl_c
from grounded_sam.pipeline.track import DEFAULT_EVERY, DEFAULT_MATCH_IOU


def add_parser(commands: Any) -> None:
    """Adds the ``track`` command to ``commands`` (an argparse subparsers object)."""
    from grounded_sam.export.coco import COCO_MASK_MODES
    from grounded_sam.export.overlap import OVERLAP_MODES
    from grounded_sam.runs.track import TRACK_FORMATS

    track = commands.add_parser("track", help="Track every object of the categories through a video.", description=(
        "Track objects through a clip: Florence-2 finds boxes on the first frame and every --every frames, SAM2's "
        "video predictor carries each object's mask in between, and every object keeps one id. Writes "
        "labels/frame_<i>.json per frame as it goes (resumable like label), the formats asked with --format "
        "(mot: MOTChallenge mot.txt) and with --plot overlays/ and overlay.mp4."))
    track.add_argument("video", metavar="VIDEO", type=Path, help="An .mp4/.mov/.webm/.mkv clip or a folder of frames.")
    track.add_argument("--categories", "-c", required=True, help="Comma-separated prompts, e.g. 'person, cup'.")
    track.add_argument("--out", "-o", required=True, type=Path, help="Output folder.")
    clip = track.add_argument_group("clip")
    clip.add_argument("--every", type=int, default=DEFAULT_EVERY,
                      help=f"Run the detector on every N-th frame (default {DEFAULT_EVERY}).")
    clip.add_argument("--match-iou", type=float, default=DEFAULT_MATCH_IOU,
                      help=f"Mask IoU at which a detection continues a track (default {DEFAULT_MATCH_IOU}).")
    clip.add_argument("--start", type=float, default=None, metavar="SECONDS", help="First second to track.")
    clip.add_argument("--end", type=float, default=None, metavar="SECONDS", help="Second to stop before.")
    clip.add_argument("--max-frames", type=int, default=None, help="Most frames to track.")
    output = track.add_argument_group("outputs")
    output.add_argument("--format", "-f", default="", metavar="LIST",
                        help=f"Comma-separated: {', '.join(TRACK_FORMATS)}, or all (default: only the per-frame JSON).")
    output.add_argument("--overlap", choices=OVERLAP_MODES, default="auto", help="As for label.")
    output.add_argument("--coco-masks", choices=COCO_MASK_MODES, default="rle", help="As for label.")
    output.add_argument("--plot", action="store_true", help="Also write overlays/frame_<i>.png and overlay.mp4.")
    output.add_argument("--force", action="store_true", help="Delete this tool's earlier outputs in --out first.")
    add_model_arguments(track)
    track.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="Only local: a clip's frames depend on each other, so tracking runs in this process "
                            "(--engine ray is for label).")
    track.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    track.set_defaults(run=run_track)


def run_track(args: argparse.Namespace) -> int:
    from grounded_sam.errors import OptionError
    from grounded_sam.pipeline.track import TrackingOptions
    from grounded_sam.runs.track import run_tracking

    if args.engine != "local":
        raise OptionError("track runs on the local engine only: a clip's frames depend on each other. "
                          "Leave out --engine ray (it is for label, whose images are independent).")

    options = TrackingOptions(every=args.every, match_iou=args.match_iou)
    pipe = pipeline_from_args(args)
    progress = progress_bar(None, "frame", disable=args.no_progress, desc="Tracking")
    previous_handler = terminate_like_ctrl_c()

    def on_progress(done: int, total: int | None, outcome: Any) -> None:
        if progress is not None:
            progress.total = total
            progress.update(1)

    try:
        summary = run_tracking(
            pipe, args.video, args.categories, args.out, options=options, formats=args.format, plot=args.plot,
            overlap=args.overlap, coco_masks=args.coco_masks, start_s=args.start, end_s=args.end,
            max_frames=args.max_frames, force=args.force, on_progress=on_progress,
        )
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        if progress is not None:
            progress.close()
    print(summary.as_text().replace("images", "frames"), file=sys.stderr)
    return EXIT_INTERRUPTED if summary.interrupted else EXIT_OK
