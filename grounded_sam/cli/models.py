"""``python -m grounded_sam models`` (what the registry holds and where the weights are) and ``download``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from grounded_sam.cli.common import EXIT_OK
from grounded_sam.errors import GroundedSamError
from grounded_sam.models.registry import DEFAULT_DETECTOR, DEFAULT_SEGMENTER, DETECTORS, SEGMENTERS


def add_parsers(commands: Any) -> None:
    """Adds the ``download`` and ``models`` commands to ``commands`` (an argparse subparsers object)."""
    download = commands.add_parser("download", help="Download weights into models/.")
    download.add_argument("names", nargs="*", metavar="NAME",
                          help=f"Registry names (default: {DEFAULT_DETECTOR} {DEFAULT_SEGMENTER}).")
    download.set_defaults(run=run_download)

    models = commands.add_parser("models", help="List registry models and where their weights are.")
    models.add_argument("--json", action="store_true", help="Machine-readable output.")
    models.set_defaults(run=run_models)


def run_download(args: argparse.Namespace) -> int:
    from grounded_sam.models.weights import download_to_models_dir

    for name in args.names or [DEFAULT_DETECTOR, DEFAULT_SEGMENTER]:
        path = download_to_models_dir(name)
        print(f"{name}: {path}")
    return EXIT_OK


def run_models(args: argparse.Namespace) -> int:
    from grounded_sam.models.weights import resolve_detector, resolve_segmenter

    rows = []
    for kind, table, resolve in (("detector", DETECTORS, resolve_detector), ("segmenter", SEGMENTERS, resolve_segmenter)):
        for name, spec in table.items():
            try:
                found = resolve(name, allow_download=False)
                where = f"{found.source}: {getattr(found, 'path', None) or found.checkpoint}"
            except GroundedSamError:
                where = f"missing (python -m grounded_sam download {name})"
            rows.append({"kind": kind, "name": name, "repo_id": spec.repo_id, "description": spec.description,
                         "family": getattr(spec, "family", "sam2"), "license": spec.license, "size": spec.size,
                         "gated": spec.gated, "default": name in (DEFAULT_DETECTOR, DEFAULT_SEGMENTER),
                         "weights": where})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            mark = "*" if row["default"] else " "
            terms = row["license"] + (", gated: accept the licence on the hub and log in" if row["gated"] else "")
            print(f"{mark} {row['kind']:<9} {row['name']:<24} {row['description']}\n      licence {terms}; "
                  f"{row['weights']}")
    return EXIT_OK
