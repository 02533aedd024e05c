"""The HTML the app writes itself: the legend, the progress bars (batch, video) and the edit status line.

Every text from a user (class names, file names) is escaped here. The element ids are the ones
the browser tests look for (``#legend``, ``#batch-progress-bar``, ``#video-progress-bar``,
``#edit-status-text``).
"""

from __future__ import annotations

import html

__all__ = [
    "BATCH_STOPPED", "EDIT_IDLE", "EDIT_READY", "VIDEO_STOPPED", "legend_markup", "progress_bar_html", "status_html",
]

EDIT_IDLE = "After Run, click on the overlay to select an object and fix it."
EDIT_READY = ("Click an object on the overlay (or its row in the table) to select it; then fix its mask with "
              "+ point / − point clicks, or Delete / Relabel it. Add missed objects with a point or a box.")
#: What the batch tab's progress shows after Stop.
BATCH_STOPPED = ('<div id="batch-progress-bar">Stopped. The images done so far are not zipped; '
                 "click Label all to start again.</div>")
#: What the video tab's progress shows after Stop.
VIDEO_STOPPED = ('<div id="video-progress-bar">Stopped after the frame in progress. The frames done so far are '
                 "not zipped; click Track to start again.</div>")


def legend_markup(class_names: list[str], counts: list[int], total: int) -> str:
    """The legend: how many objects, and a colour chip with a count per class."""
    from grounded_sam.annotate import legend

    chips = "".join(
        f'<span style="display:inline-flex;align-items:center;gap:6px;margin:2px 14px 2px 0">'
        f'<span style="width:14px;height:14px;border-radius:3px;background:{colour}"></span>'
        f"{html.escape(name)} <b>{count}</b></span>"
        for (name, colour), count in zip(legend(class_names), counts)
    )
    found = f"{total} object{'s' if total != 1 else ''} found" if total else (
        "Nothing found for these categories. Try other wording, or lower the minimum score.")
    return f'<div id="legend"><div style="margin-bottom:4px">{found}</div>{chips}</div>'


def progress_bar_html(done: int, total: int | None, note: str, *, verb: str = "Labeled", unit: str = "images",
                      element_id: str = "batch-progress-bar") -> str:
    """A labelled progress bar, e.g. "Labeled 3 of 8 images · about 12 s left" (no fill while ``total`` is unknown)."""
    counted = f"{done} of {total}" if total is not None else str(done)
    text = html.escape(f"{verb} {counted} {unit}" + (f" · {note}" if note else ""))
    percent = 100 * done / max(total, 1) if total is not None else 0.0
    limits = f'aria-valuemin="0" aria-valuemax="{total}" ' if total is not None else ""
    return (f'<div id="{element_id}"><div style="margin-bottom:4px">{text}</div>'
            f'<div role="progressbar" {limits}aria-valuenow="{done}" '
            f'style="height:12px;border-radius:6px;overflow:hidden;background:var(--neutral-200,#e5e7eb)">'
            f'<div style="height:100%;width:{percent:.1f}%;background:var(--color-accent,#f97316);'
            f'transition:width .3s"></div></div></div>')


def status_html(text: str) -> str:
    """The edit panel's status line."""
    return f'<div id="edit-status-text" style="padding:2px 4px">{html.escape(text)}</div>'
