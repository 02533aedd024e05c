"""Command line: ``python -m grounded_sam label|doctor|models|download``, one module per command.

Wiring only: every model step is the package's. Each command module adds its parser and sets the
function that runs it; :func:`grounded_sam.cli.main.main` turns package errors into exit codes.
"""

from grounded_sam.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
