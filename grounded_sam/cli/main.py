"""The ``python -m grounded_sam`` entry point: the parser of every command, logging, and errors as exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from grounded_sam.cli import doctor, label, models, track
from grounded_sam.cli.common import EXIT_ERROR, EXIT_INTERRUPTED
from grounded_sam.errors import GroundedSamError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m grounded_sam",
        description="Text prompts -> detector boxes (Florence-2, Grounding DINO, OWLv2) -> SAM2 masks.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="More log output (-vv for debug).")
    commands = parser.add_subparsers(dest="command", required=True)
    label.add_parser(commands)
    track.add_parser(commands)
    models.add_parsers(commands)
    doctor.add_parser(commands)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # SAM2 logs every set_image on the root logger; keep that for -vv.
    logging.getLogger().setLevel(level)
    if verbosity < 2:
        logging.getLogger("root").setLevel(max(level, logging.WARNING))
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return args.run(args)
    except GroundedSamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
