"""What a click on the overlay means: one browser session's editing of one image, without any UI.

An :class:`Editor` wraps a :class:`~grounded_sam.editing.session.LabelSession` with what the page adds: an
edit mode, the selected object, the first corner of a box being drawn, the overlay
(:class:`~grounded_sam.editing.view.OverlayRenderer`) and the downloads
(:class:`~grounded_sam.editing.downloads.LabelFiles`). Every action returns a short status line for the
user. Front-ends hold one editor per browser session; :class:`EditorRegistry` bounds how many are
alive and releases them when their sessions end.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import numpy as np
import supervision as sv

from grounded_sam.editing.downloads import LabelFiles, write_dataset_zip
from grounded_sam.editing.session import LabelSession
from grounded_sam.editing.view import OverlayRenderer, OverlayStyle, encode_jpeg, object_rows
from grounded_sam.errors import EditError
from grounded_sam.export.files import atomic_write_bytes

if TYPE_CHECKING:
    from grounded_sam.editing.store import EditSaver, SavedEdits
    from grounded_sam.models.refiner import ClickRefiner

logger = logging.getLogger(__name__)

_SUFFIX = re.compile(r"^\.[a-z0-9]{1,5}$")  # a saved image's suffix, when it is a plain one

SELECT = "Select"
GROW = "+ point (grow)"
SHRINK = "- point (shrink)"
ADD_POINT = "New object: point"
ADD_BOX = "New object: box (click two corners)"
#: What a click on the overlay does, in the order a UI offers them.
EDIT_MODES: tuple[str, ...] = (SELECT, GROW, SHRINK, ADD_POINT, ADD_BOX)

#: Overlay files kept per editor (older ones were fetched by the page long ago).
KEEP_OVERLAYS = 8
#: Default bound on live editors (each holds its image, masks and undo history).
DEFAULT_MAX_EDITORS = 32
#: Default bound on the bytes live editors hold (images, masks, undo history), whatever their number.
DEFAULT_MAX_EDITOR_BYTES = 2 * 2**30


@dataclass(frozen=True)
class EditorView:
    """What a page shows of an editor after an action.

    Attributes:
        rows: The table: ``[#, class, score, "x1, y1, x2, y2", area]`` per object.
        class_names: Every class, in class-id order (new classes appended).
        counts: Objects per class, in class-id order.
        selected: The highlighted object's index, or None.
        can_undo: An edit can be undone.
        can_redo: An undone edit can be redone.
    """

    rows: list[list[Any]]
    class_names: list[str]
    counts: list[int]
    selected: int | None
    can_undo: bool
    can_redo: bool


class Editor:
    """One image's objects as one browser session edits them.

    Args:
        session: The image's :class:`~grounded_sam.editing.session.LabelSession`.
        folder: Where the downloads (and the dataset zip) are written.
        file_name: The image's name as the user knows it.
        stem: File-name stem of the downloads.
        source_path: The image file (for the dataset zip), or None.
        style: Overlay options.
        settings: The run's settings, recorded in the dataset zip.
        saver: Saves the labels after every edit (:mod:`grounded_sam.editing.store`), or None.

    Thread safety: every action holds the editor's lock, so two events of one session never
    interleave (the model itself is guarded by the segmenter's lock inside the session).
    """

    def __init__(self, session: LabelSession, folder: str | Path, file_name: str, stem: str,
                 source_path: str | Path | None = None, style: OverlayStyle | None = None,
                 settings: dict[str, Any] | None = None, saver: EditSaver | None = None) -> None:
        self._session: LabelSession | None = session
        self.folder = Path(folder)
        self.file_name = file_name
        self.source_path = None if source_path is None else Path(source_path)
        self.settings = dict(settings or {})
        self.saver = saver
        self.renderer = OverlayRenderer(session.image, style)
        self.files = LabelFiles(self.folder, stem, file_name)
        self._overlays = 0
        self.selected: int | None = None
        self.corner: tuple[float, float] | None = None
        self.lock = threading.RLock()
        #: What a front-end last sent for each of its outputs, so it can send only what changed.
        self.sent: dict[str, Any] = {}

    @classmethod
    def from_saved(cls, saved: SavedEdits, refiner: ClickRefiner, folder: str | Path, *,
                   style: OverlayStyle | None = None, saver: EditSaver | None = None) -> Editor:
        """An editor of edits saved before (after a reload or a restart); runs no model.

        The saved image file is written back into ``folder`` (the dataset zip reads it); the objects, classes
        and the automatic result come from the store; the undo history starts empty.

        Args:
            saved: What :meth:`~grounded_sam.editing.store.EditStore.load` returned.
            refiner: Refines later clicks (its model loads on the first one).
            folder: A fresh folder for the image, the overlays and the downloads.
            style: Overlay options.
            saver: Saves later edits (to the same row of the store).

        Raises:
            ImageLoadError: The saved image no longer decodes.
            EditError: The saved masks do not fit the image.
        """
        from grounded_sam.caching import image_key
        from grounded_sam.inputs.images import load_image
        from grounded_sam.naming import sanitize_stem

        folder = Path(folder)
        name = PurePath(saved.file_name).name or "image"
        stem = sanitize_stem(PurePath(name))
        suffix = PurePath(name).suffix.lower()
        path = atomic_write_bytes(folder / (stem + (suffix if _SUFFIX.match(suffix) else "")), saved.image_bytes,
                                  durable=False)
        rgb = load_image(path)
        if image_key(rgb) != saved.image_key:  # another decoder version: the masks still fit if the size does
            logger.info("The saved image of %s decodes to other pixels than when it was edited", name)
        session = LabelSession.from_objects(refiner, rgb, saved.objects, saved.class_names, initial=saved.initial,
                                            initial_classes=saved.initial_classes)
        return cls(session, folder, name, stem, source_path=path, style=style, settings=saved.settings, saver=saver)

    # ------------------------------------------------------------------ state

    @property
    def session(self) -> LabelSession:
        """The label session; EditError once the editor was released."""
        if self._session is None:
            raise EditError("This editing session has ended (the page was idle too long or the server needed "
                            "the memory): click Run again to edit this image.")
        return self._session

    @property
    def released(self) -> bool:
        return self._session is None

    def nbytes(self) -> int:
        """Bytes of the image, masks and undo history held (0 once released)."""
        session = self._session
        return 0 if session is None else session.nbytes()

    def release(self) -> None:
        """Drops the image, masks, history and caches (the files written stay until jobs are cleaned)."""
        with self.lock:
            if self._session is not None:
                logger.info("Released the editing session of %s", self.file_name)
            self._session = None
            self.renderer = None  # type: ignore[assignment]
            self.files = None  # type: ignore[assignment]
            self.sent.clear()

    @property
    def image_size(self) -> tuple[int, int]:
        """``(width, height)``."""
        height, width = self.session.image.shape[:2]
        return width, height

    def view(self) -> EditorView:
        """The table, classes and history flags now."""
        session = self.session
        rows = object_rows(session.objects)
        counts = [sum(o.class_name == name for o in session.objects) for name in session.class_names]
        return EditorView(rows, list(session.class_names), counts, self.selected, session.can_undo,
                          session.can_redo)

    def overlay(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB: the objects with the selected one highlighted (and a pending box corner)."""
        session = self.session
        return self.renderer.render(session.objects, session.class_names, self.selected, self.corner)

    def set_style(self, style: OverlayStyle) -> None:
        with self.lock:
            self.renderer.style = style

    def detections(self) -> sv.Detections:
        """The labels now, every edit included."""
        return self.session.to_detections()

    def write_overlay(self) -> Path:
        """Writes the overlay as a JPEG (fast to encode and to send) under a new name; returns its path.

        Each call writes ``<stem>_edit_NNNN.jpg``, so a page never gets a file being rewritten;
        only the last :data:`KEEP_OVERLAYS` are kept.
        """
        with self.lock:
            overlay = self.overlay()
            self._overlays += 1
            path = atomic_write_bytes(self.folder / f"{self.files.stem}_edit_{self._overlays:04d}.jpg", encode_jpeg(overlay),
                                      durable=False)
            old = self.folder / f"{self.files.stem}_edit_{self._overlays - KEEP_OVERLAYS:04d}.jpg"
            old.unlink(missing_ok=True)
            return path

    def write_downloads(self) -> list[Path]:
        """(Re)writes ``<stem>_coco.json`` and ``<stem>_masks.zip``; only changed masks are encoded."""
        with self.lock:
            session = self.session
            return self.files.write(session.objects, session.class_names, self.image_size)

    def write_dataset(self, folder: str | Path) -> Path:
        """The dataset formats of the labels now, zipped (see :func:`~grounded_sam.editing.downloads.write_dataset_zip`)."""
        with self.lock:
            if self.source_path is None:
                raise EditError("The image file is gone: upload it again and click Run.")
            return write_dataset_zip(self.source_path, self.file_name, self.detections(), self.session.class_names,
                                     folder, settings=self.settings)

    def save(self) -> str | None:
        """Saves the labels now with the editor's saver (nothing to do without one, or when nothing changed).

        Every action below saves after itself; a front-end calls this once after opening an editor.

        Returns:
            None, or (once per editor) a message for the user that the edits are not being saved.
        """
        with self.lock:
            if self.saver is None or self._session is None:
                return None
            session = self._session
            return self.saver.save(session.objects, session.class_names, *session.initial)

    def _saved(self, status: str) -> str:
        """The status line of an action, after saving its result (with the warning when that failed)."""
        warning = self.save()
        return status if warning is None else f"{status} {warning}"

    # ------------------------------------------------------------------ actions

    def set_mode(self, mode: str) -> str:
        """A new edit mode: forgets a half-drawn box. Returns the status line."""
        _check_mode(mode)
        with self.lock:
            self.session  # noqa: B018 (refuses a released editor)
            self.corner = None
            return _MODE_HINTS[mode]

    def click(self, x: float, y: float, mode: str, class_name: str | None = None) -> str:
        """A click at pixel (x, y) of the overlay, meaning what ``mode`` says. Returns the status line.

        Args:
            x: Column, pixels of the full-resolution image.
            y: Row, pixels.
            mode: One of :data:`EDIT_MODES`.
            class_name: The class of a new object.

        Raises:
            EditError: Nothing selected to refine, no class for a new object, a point outside the image.
        """
        with self.lock:
            return self._saved(self._click(x, y, mode, class_name))

    def _click(self, x: float, y: float, mode: str, class_name: str | None) -> str:
        _check_mode(mode)
        with self.lock:
            session = self.session
            if mode == SELECT:
                return self.select(session.object_at(x, y))
            if mode in (GROW, SHRINK):
                if self.selected is None:
                    hit = session.object_at(x, y)
                    if hit is None:
                        raise EditError("Select an object first: click its mask or its row in the table, "
                                        "then click here again.")
                    return self.select(hit)
                positive = mode == GROW
                obj = session.refine(self.selected, x, y, positive=positive)
                plus, minus = int((obj.labels == 1).sum()), int((obj.labels == 0).sum())
                return (f"#{self.selected} {obj.class_name}: {'added' if positive else 'removed'} the area at "
                        f"({x:.0f}, {y:.0f}) · {plus} + / {minus} − points. Undo steps back one click.")
            if mode == ADD_POINT:
                index = session.add_object(self._new_class(class_name), point=(x, y))
                self.selected = index
                return (f"Added #{index} {session.objects[index].class_name}. Refine it with + / − points, "
                        "or switch to Select.")
            # ADD_BOX: two clicks
            session.object_at(x, y)  # refuses a point outside the image, as every other click
            if self.corner is None:
                self._new_class(class_name)  # refuse now, not after the second click
                self.corner = (float(x), float(y))
                return f"First corner at ({x:.0f}, {y:.0f}): click the opposite corner."
            (x0, y0), self.corner = self.corner, None
            index = session.add_object(self._new_class(class_name), box=(x0, y0, x, y))
            self.selected = index
            return (f"Added #{index} {session.objects[index].class_name} from the box "
                    f"({min(x0, x):.0f}, {min(y0, y):.0f}) – ({max(x0, x):.0f}, {max(y0, y):.0f}).")

    def select(self, index: int | None) -> str:
        """Highlights object ``index`` (None: nothing). Returns the status line."""
        with self.lock:
            session = self.session
            if index is not None:
                index = int(index)
                if not 0 <= index < len(session.objects):
                    raise EditError(f"No object #{index}: this image has {len(session.objects)} objects.")
            self.selected = index
            if index is None:
                return "Nothing selected there. Click on an object's mask, or on its row in the table."
            obj = session.objects[index]
            return (f"Selected #{index} {obj.class_name} (score {obj.score:.2f}). Fix its mask with "
                    "+ point / − point clicks, or Delete / Relabel it.")

    def delete(self) -> str:
        with self.lock:
            index = self._selected_or_raise("delete")
            name = self.session.objects[index].class_name
            self.session.delete(index)
            self.selected = None
            return self._saved(f"Deleted #{index} {name}. Undo brings it back.")

    def relabel(self, class_name: str | None) -> str:
        with self.lock:
            index = self._selected_or_raise("relabel")
            old = self.session.objects[index].class_name
            self.session.relabel(index, self._new_class(class_name))
            new = self.session.objects[index].class_name
            return self._saved(f"#{index} is now {new} (was {old})." if new != old else f"#{index} is already {new}.")

    def undo(self) -> str:
        with self.lock:
            done = self.session.undo()
            self._after_history()
            return self._saved("Undone." if done else "Nothing to undo.")

    def redo(self) -> str:
        with self.lock:
            done = self.session.redo()
            self._after_history()
            return self._saved("Redone." if done else "Nothing to redo.")

    def reset(self) -> str:
        with self.lock:
            self.session.reset()
            self.selected, self.corner = None, None
            return self._saved("Back to the automatic result (Undo returns to your edits).")

    # ------------------------------------------------------------------ helpers

    def _after_history(self) -> None:
        self.corner = None
        if self.selected is not None and self.selected >= len(self.session.objects):
            self.selected = None

    def _selected_or_raise(self, action: str) -> int:
        if self.selected is None:
            raise EditError(f"Select the object to {action} first: click its mask or its row in the table.")
        return self.selected

    def _new_class(self, class_name: str | None) -> str:
        name = " ".join(str(class_name or "").split())
        if not name:
            raise EditError("Pick a class for the object (or type a new one) in the Class box.")
        return name


_MODE_HINTS = {
    SELECT: "Click an object's mask (or its row in the table) to select it.",
    GROW: "Click where the selected object's mask should grow.",
    SHRINK: "Click where the selected object's mask should shrink.",
    ADD_POINT: "Pick the class, then click on the new object.",
    ADD_BOX: "Pick the class, then click two opposite corners of the new object's box.",
}


def _check_mode(mode: str) -> None:
    if mode not in EDIT_MODES:
        raise EditError(f"Unknown edit mode {mode!r}: expected one of {', '.join(EDIT_MODES)}.")


class EditorRegistry:
    """The live editors, one per browser session, bounded in number and in bytes (least recently used released first).

    Args:
        max_editors: Bound on live editors; the oldest is released when a new one would exceed it.
        max_bytes: Bound on the bytes they hold (:meth:`Editor.nbytes`: images, masks, undo history), checked when
            an editor is added or used; the least recently used go first, never the one just added or used.
    """

    def __init__(self, max_editors: int = DEFAULT_MAX_EDITORS, max_bytes: int = DEFAULT_MAX_EDITOR_BYTES) -> None:
        if max_editors < 1:
            raise ValueError(f"max_editors must be >= 1, but got {max_editors}")
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, but got {max_bytes}")
        self.max_editors, self.max_bytes = max_editors, max_bytes
        self._editors: OrderedDict[str, Editor] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._editors)

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._editors

    def nbytes(self) -> int:
        """Bytes held by the live editors."""
        with self._lock:
            editors = list(self._editors.values())
        return sum(editor.nbytes() for editor in editors)

    def add(self, session_id: str, editor: Editor) -> None:
        """Makes ``editor`` the session's (releasing its previous one), then enforces the bounds."""
        released: list[Editor] = []
        with self._lock:
            previous = self._editors.pop(session_id, None)
            if previous is not None and previous is not editor:
                released.append(previous)
            self._editors[session_id] = editor
            while len(self._editors) > self.max_editors:
                _, oldest = self._editors.popitem(last=False)
                released.append(oldest)
            released.extend(self._over_bytes())
        for old in released:
            old.release()

    def touch(self, session_id: str) -> None:
        """Marks the session's editor as just used (its edits may have grown it: the byte bound is checked)."""
        released: list[Editor] = []
        with self._lock:
            if session_id in self._editors:
                self._editors.move_to_end(session_id)
                released = self._over_bytes()
        for old in released:
            old.release()

    def _over_bytes(self) -> list[Editor]:
        """Takes out the least recently used editors until the rest fit in ``max_bytes`` (call with the lock held)."""
        sizes = {key: editor.nbytes() for key, editor in self._editors.items()}
        total, released = sum(sizes.values()), []
        while total > self.max_bytes and len(self._editors) > 1:
            key, oldest = self._editors.popitem(last=False)
            total -= sizes[key]
            released.append(oldest)
            logger.info("Released the least recently used editor to stay within %d MB", self.max_bytes >> 20)
        return released

    def release(self, session_id: str) -> bool:
        """Releases the session's editor; False when it had none."""
        with self._lock:
            editor = self._editors.pop(session_id, None)
        if editor is None:
            return False
        editor.release()
        return True

    def discard(self, editor: Editor) -> None:
        """Releases ``editor`` wherever it is registered (for a state's delete callback)."""
        with self._lock:
            for key in [k for k, v in self._editors.items() if v is editor]:
                del self._editors[key]
        editor.release()

