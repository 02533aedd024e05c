"""Edits that survive a reload and a restart: each image's labels, saved as they change, in embedded SQLite.

One file, ``<data dir>/edits.sqlite3`` (:data:`DB_NAME`), holds per *(owner, image)*:

- ``edits``: the file name, the run's models and settings, the class list, the objects now and the
  automatic result (each a JSON list: class, COCO RLE mask, prompt box, scores, clicks, whether a click
  made it; see :func:`object_record`), the object count, the bytes it takes and when it was saved;
- ``images``: the uploaded file's bytes, written once per run, so a restarted server rebuilds the
  editor without the upload. Apart from ``edits`` so that saving an edit never rewrites the image.

The *owner* is a random key the browser keeps (``secrets.token_urlsafe(32)``, see :func:`new_owner_key`);
the database holds only its SHA-256, so the file alone does not let anyone act as an owner, and every
lookup is by (owner, image): a client that sends another key finds nothing. The image is its content
hash (:func:`~grounded_sam.caching.image_key`). Undo history is not saved: a resumed session starts with
an empty history (Reset still returns to the automatic result), and each object's low-resolution logits
are recomputed from its box on its next click.

Rows older than the retention time are invisible at once and deleted at start and then at most every
:data:`PURGE_EVERY_S` on writes. Each owner keeps at most ``max_images_per_owner`` images and the whole
store at most ``max_total_bytes`` (oldest first out). The store never breaks editing: a store that
cannot open (unwritable folder) reports :attr:`EditStore.problem`, a corrupt file is moved aside and
replaced by an empty one, and :class:`EditSaver` turns a failed write into one warning for the user.

Thread safety: one connection, used under one lock (Gradio calls from its worker threads); WAL mode
with ``synchronous=NORMAL``, so a commit costs no fsync and a killed process loses nothing committed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grounded_sam.editing.session import EditableObject

__all__ = [
    "DB_NAME", "DEFAULT_MAX_TOTAL_BYTES", "MAX_IMAGES_PER_OWNER", "NOT_SAVED", "EditSaver", "EditStore", "SavedEdits",
    "SavedSummary", "new_owner_key", "object_from_record", "object_json", "object_record", "valid_owner_key",
]

logger = logging.getLogger(__name__)

DB_NAME = "edits.sqlite3"
#: Images one owner keeps (the most recently saved); older ones are deleted.
MAX_IMAGES_PER_OWNER = 20
#: Bytes of the whole store (images + objects); the oldest rows of any owner go first.
DEFAULT_MAX_TOTAL_BYTES = 2 * 2**30
#: Expired rows are deleted at most this often on writes (they are invisible to reads at once).
PURGE_EVERY_S = 600
SCHEMA_VERSION = 1
_OWNER_KEY = re.compile(r"^[A-Za-z0-9_-]{43}$")  # token_urlsafe(32): 32 random bytes, base64url, no padding

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS edits (
    owner TEXT NOT NULL, image TEXT NOT NULL, file_name TEXT NOT NULL, models TEXT NOT NULL,
    settings TEXT NOT NULL, class_names TEXT NOT NULL, objects TEXT NOT NULL, initial TEXT NOT NULL,
    object_count INTEGER NOT NULL, nbytes INTEGER NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (owner, image));
CREATE INDEX IF NOT EXISTS edits_updated ON edits (updated_at);
CREATE TABLE IF NOT EXISTS images (owner TEXT NOT NULL, image TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (owner, image));
"""


def new_owner_key() -> str:
    """A fresh owner key: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def valid_owner_key(value: Any) -> bool:
    """True for a string shaped like :func:`new_owner_key`'s (anything else gets a new key, not a lookup)."""
    return isinstance(value, str) and bool(_OWNER_KEY.match(value))


def _owner_id(owner_key: str) -> str:
    return hashlib.sha256(owner_key.encode("ascii")).hexdigest()


# ---------------------------------------------------------------------------------------------- objects


def object_record(obj: EditableObject) -> dict[str, Any]:
    """One object as JSON: class, COCO compressed RLE mask, prompt box (xyxy pixels), scores, clicks, ``edited``.

    Floats are the float32 values widened to Python floats, so they come back bit-exact.
    """
    from grounded_sam.export.rle import encode_mask

    return {
        "class_name": obj.class_name,
        "mask": encode_mask(obj.mask),
        "box": [float(v) for v in np.asarray(obj.box, np.float32)],
        "score": float(obj.score),
        "detector_score": None if obj.detector_score is None else float(obj.detector_score),
        "edited": bool(obj.edited),
        "points": np.asarray(obj.points, np.float32).reshape(-1, 2).tolist(),
        "labels": [int(v) for v in obj.labels],
    }


def object_json(obj: EditableObject) -> str:
    """:func:`object_record` as JSON text (what :meth:`EditStore.put` and :meth:`EditStore.update` take)."""
    return json.dumps(object_record(obj))


def object_from_record(record: dict[str, Any]) -> EditableObject:
    """The object :func:`object_record` saved, without logits (its next click recomputes them from its box).

    Raises:
        KeyError, TypeError, ValueError: The record is malformed.
    """
    from grounded_sam.export.rle import decode_rle

    return EditableObject(
        mask=decode_rle(record["mask"]),
        box=np.array(record["box"], np.float32).reshape(4),
        class_name=str(record["class_name"]),
        score=float(record["score"]),
        points=np.array(record["points"], np.float32).reshape(-1, 2),
        labels=np.array(record["labels"], np.int32).reshape(-1),
        edited=bool(record["edited"]),
        detector_score=None if record["detector_score"] is None else float(record["detector_score"]),
    )


# ---------------------------------------------------------------------------------------------- store


@dataclass(frozen=True)
class SavedSummary:
    """One saved image of an owner, as the resume menu lists it.

    Attributes:
        image_key: The image's content hash (what :meth:`EditStore.load` takes).
        file_name: The name the user uploaded it as.
        object_count: Objects now.
        updated_at: When it was last saved (``time.time()`` seconds).
    """

    image_key: str
    file_name: str
    object_count: int
    updated_at: float


@dataclass(frozen=True)
class SavedEdits:
    """Everything saved of one image: enough to rebuild its editor after a restart.

    Attributes:
        image_key: The image's content hash.
        file_name: The name the user uploaded it as.
        image_bytes: The uploaded file, as it was.
        class_names: Every class now, in class-id order.
        objects: The objects now, in table order (no logits).
        initial: The automatic result's objects (what Reset returns to).
        initial_classes: The automatic result's classes.
        settings: The run's settings (recorded in the dataset zip).
        models: The model options the run used (``{"detector": ..., "segmenter": ...}``, None = default).
        updated_at: When it was last saved.
    """

    image_key: str
    file_name: str
    image_bytes: bytes
    class_names: list[str]
    objects: list[EditableObject]
    initial: list[EditableObject]
    initial_classes: list[str]
    settings: dict[str, Any]
    models: dict[str, Any]
    updated_at: float


class EditStore:
    """The saved edits of every owner, in ``<folder>/edits.sqlite3``.

    Args:
        folder: The data folder (created if missing).
        retention_s: Seconds a row is kept after its last save.
        max_images_per_owner: Images one owner keeps.
        max_total_bytes: Bytes of all rows together (image files and objects JSON).
        clock: ``time.time`` (tests move it).

    Attributes:
        problem: Why nothing can be saved (the store could not open), for the log; None while it works.
    """

    def __init__(self, folder: str | Path, retention_s: float, *, max_images_per_owner: int = MAX_IMAGES_PER_OWNER,
                 max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES, clock: Callable[[], float] = time.time) -> None:
        if retention_s <= 0 or max_images_per_owner < 1 or max_total_bytes < 1:
            raise ValueError(f"retention_s, max_images_per_owner and max_total_bytes must be positive, but got "
                             f"{retention_s}, {max_images_per_owner}, {max_total_bytes}")
        self.path = Path(folder) / DB_NAME
        self.retention_s = float(retention_s)
        self.max_images_per_owner = max_images_per_owner
        self.max_total_bytes = max_total_bytes
        self.clock = clock
        self.problem: str | None = None
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._last_purge = float("-inf")
        try:
            self._conn = self._open()
        except (sqlite3.Error, OSError) as exc:
            self.problem = f"cannot open {self.path}: {exc}"
            logger.warning("Edits will not be saved: %s", self.problem)
            return
        try:
            self.purge()
        except sqlite3.Error as exc:
            logger.warning("Edit store: the purge at start failed: %s", exc)

    # ------------------------------------------------------------------ opening

    def _open(self) -> sqlite3.Connection:
        # Owner-only when created here: the file holds users' uploads.
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if not _is_corrupt(exc):
                raise  # unwritable, locked...: moving the file would not help
            aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            logger.warning("The edit store %s is unreadable (%s): moved it aside to %s and started an empty one",
                           self.path, exc, aside.name)
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        # Autocommit (isolation_level=None): transactions are the explicit BEGIN IMMEDIATE ... COMMIT of _transaction.
        conn = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA journal_size_limit={64 * 2**20}")
            conn.executescript(_SCHEMA)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {row[0]}, expected {SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        """Closes the database (later writes fail, reads find nothing)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self.problem = self.problem or "closed"

    @property
    def available(self) -> bool:
        """True while the store is open."""
        return self._conn is not None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, under the lock: all of it is saved, or none (BEGIN IMMEDIATE takes the write lock
        first, so two server processes on one data folder wait for each other instead of failing mid-way)."""
        with self._lock:
            if self._conn is None:
                raise sqlite3.OperationalError(f"the edit store is unavailable ({self.problem})")
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:  # SQLite may have rolled back itself (disk full)
                        pass
                raise

    # ------------------------------------------------------------------ writes

    def put(self, owner_key: str, image_key: str, *, file_name: str, image_bytes: bytes, class_names: Sequence[str],
            objects: Sequence[str], initial_classes: Sequence[str], initial: Sequence[str],
            settings: dict[str, Any] | None = None, models: dict[str, Any] | None = None) -> bool:
        """Saves an image with its edits, replacing what the owner saved of that image before.

        Args:
            owner_key: The browser's key (:func:`new_owner_key`).
            image_key: The image's content hash.
            file_name: The name the user uploaded it as.
            image_bytes: The uploaded file.
            class_names: Every class now.
            objects: Each object now as :func:`object_json` text, in table order.
            initial_classes: The automatic result's classes.
            initial: The automatic result's objects, as :func:`object_json` text.
            settings: The run's settings.
            models: The model options of the run.

        Returns:
            False when this one image (file and objects) is larger than the whole store may be (nothing saved).

        Raises:
            sqlite3.Error, OSError: The write failed (disk full, read-only, store unavailable); nothing was saved.
        """
        objects_json = _json_list(objects)
        initial_json = f'{{"classes": {json.dumps(list(initial_classes))}, "objects": {_json_list(initial)}}}'
        nbytes = len(image_bytes) + len(objects_json.encode()) + len(initial_json.encode())
        if nbytes > self.max_total_bytes:
            logger.warning("Not saving the edits of %s: %d bytes, over the edit store's %d", file_name, nbytes,
                           self.max_total_bytes)
            return False
        owner, now = _owner_id(owner_key), self.clock()
        with self._transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO edits VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (owner, image_key, file_name, json.dumps(models or {}), json.dumps(settings or {}),
                 json.dumps(list(class_names)), objects_json, initial_json, len(objects), nbytes, now, now))
            conn.execute("INSERT OR REPLACE INTO images VALUES (?, ?, ?)", (owner, image_key, image_bytes))
            self._enforce_caps(conn, owner, image_key)
        self._purge_now_and_then()
        return True

    def update(self, owner_key: str, image_key: str, class_names: Sequence[str], objects: Sequence[str]) -> bool:
        """Saves an edit: the classes and objects (:func:`object_json` texts) now of an image already :meth:`put`.

        Returns:
            False when the owner has no such image stored (expired or evicted): :meth:`put` it again.

        Raises:
            sqlite3.Error, OSError: The write failed; the previous save stays.
        """
        owner, now = _owner_id(owner_key), self.clock()
        objects_json = _json_list(objects)
        with self._transaction() as conn:
            row = conn.execute("SELECT nbytes - length(CAST(objects AS BLOB)) FROM edits WHERE owner = ? AND image = ? "
                               "AND updated_at >= ?", (owner, image_key, now - self.retention_s)).fetchone()
            if row is None:
                return False
            conn.execute("UPDATE edits SET class_names = ?, objects = ?, object_count = ?, nbytes = ?, updated_at = ? "
                         "WHERE owner = ? AND image = ?",
                         (json.dumps(list(class_names)), objects_json, len(objects),
                          int(row[0]) + len(objects_json.encode()), now, owner, image_key))
            self._enforce_caps(conn, owner, image_key)
        self._purge_now_and_then()
        return True

    def delete(self, owner_key: str, image_key: str) -> None:
        """Forgets one image of an owner."""
        with self._transaction() as conn:
            _delete(conn, [(_owner_id(owner_key), image_key)])

    def purge(self) -> int:
        """Deletes the rows saved longer ago than the retention time; returns how many.

        Raises:
            sqlite3.Error: The delete failed.
        """
        cutoff = self.clock() - self.retention_s
        with self._transaction() as conn:
            rows = conn.execute("SELECT owner, image FROM edits WHERE updated_at < ?", (cutoff,)).fetchall()
            _delete(conn, rows)
        self._last_purge = self.clock()
        if rows:
            logger.info("Edit store: deleted %d images saved more than %.0f h ago", len(rows), self.retention_s / 3600)
        return len(rows)

    def _purge_now_and_then(self) -> None:
        if self.clock() - self._last_purge >= PURGE_EVERY_S:
            try:
                self.purge()
            except sqlite3.Error as exc:  # the edit itself is saved; the next write tries again
                logger.warning("Edit store: purge failed: %s", exc)

    def _enforce_caps(self, conn: sqlite3.Connection, owner: str, keep: str) -> None:
        """Deletes the owner's images beyond its cap, and every row older than the first that would pass the byte cap.

        ``(owner, keep)``, the row just written, is always kept (:meth:`put` refused it if it alone is too large).
        """
        rows = conn.execute("SELECT owner, image, nbytes FROM edits ORDER BY updated_at DESC").fetchall()
        total, owned, full, gone = 0, 0, False, []
        for row_owner, image, nbytes in rows:
            owned += row_owner == owner
            if (row_owner, image) == (owner, keep):
                total += nbytes
            elif row_owner == owner and owned > self.max_images_per_owner:
                gone.append((row_owner, image))
            elif full or total + nbytes > self.max_total_bytes:
                full = True  # oldest first out: nothing older stays, even if it would fit
                gone.append((row_owner, image))
            else:
                total += nbytes
        if gone:
            _delete(conn, gone)
            logger.info("Edit store: deleted %d older images (caps: %d per browser, %d MB in all)", len(gone),
                        self.max_images_per_owner, self.max_total_bytes // 2**20)

    # ------------------------------------------------------------------ reads

    def recent(self, owner_key: str) -> list[SavedSummary]:
        """The owner's saved images, newest first; none for a key nobody saved with.

        Raises:
            sqlite3.Error: The database could not be read.
        """
        with self._lock:
            if self._conn is None:
                return []
            rows = self._conn.execute(
                "SELECT image, file_name, object_count, updated_at FROM edits WHERE owner = ? AND updated_at >= ? "
                "ORDER BY updated_at DESC", (_owner_id(owner_key), self.clock() - self.retention_s)).fetchall()
        return [SavedSummary(image, name, int(count), float(updated)) for image, name, count, updated in rows]

    def load(self, owner_key: str, image_key: str) -> SavedEdits | None:
        """Everything saved of one image of the owner; None when the owner has no such image (or it expired).

        Raises:
            sqlite3.Error: The database could not be read.
            ValueError: The saved row is malformed.
        """
        with self._lock:
            if self._conn is None:
                return None
            row = self._conn.execute(
                "SELECT e.file_name, e.models, e.settings, e.class_names, e.objects, e.initial, e.updated_at, i.data "
                "FROM edits e JOIN images i ON i.owner = e.owner AND i.image = e.image "
                "WHERE e.owner = ? AND e.image = ? AND e.updated_at >= ?",
                (_owner_id(owner_key), str(image_key), self.clock() - self.retention_s)).fetchone()
        if row is None:
            return None
        file_name, models, settings, class_names, objects, initial, updated_at, data = row
        try:
            initial = json.loads(initial)
            return SavedEdits(
                image_key=str(image_key), file_name=str(file_name), image_bytes=bytes(data),
                class_names=[str(c) for c in json.loads(class_names)],
                objects=[object_from_record(r) for r in json.loads(objects)],
                initial=[object_from_record(r) for r in initial["objects"]],
                initial_classes=[str(c) for c in initial["classes"]], settings=dict(json.loads(settings)),
                models=dict(json.loads(models)), updated_at=float(updated_at))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"the saved edits of {file_name} are malformed: {exc}") from exc


def _is_corrupt(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text or "schema version" in text


def _delete(conn: sqlite3.Connection, rows: Sequence[tuple[str, str]]) -> None:
    conn.executemany("DELETE FROM edits WHERE owner = ? AND image = ?", rows)
    conn.executemany("DELETE FROM images WHERE owner = ? AND image = ?", rows)


def _json_list(items: Sequence[str]) -> str:
    return "[" + ",".join(items) + "]"


# ---------------------------------------------------------------------------------------------- saver

#: What the status line says, once per editor, when its edits cannot be saved.
NOT_SAVED = ("Your edits are not being saved on the server right now: download the labels before you close or "
             "reload this page.")
TOO_LARGE = ("This image is too large for the server's edit store, so your edits are not saved: download the "
             "labels before you close or reload this page.")


class EditSaver:
    """Saves one editor's labels after every edit: only when they changed, each object serialised once.

    Objects are immutable (an edit makes a new one), so an unchanged object keeps its JSON text and a click
    re-encodes only the mask it changed.

    Args:
        store: The store; None or unavailable means nothing is saved (and the first save says so).
        owner_key: The browser's key.
        image_key: The image's content hash.
        file_name: The name the user uploaded it as.
        image_bytes: Reads the uploaded file (called at the first save only).
        settings: The run's settings.
        models: The model options of the run.
    """

    def __init__(self, store: EditStore | None, owner_key: str, image_key: str, file_name: str,
                 image_bytes: Callable[[], bytes], settings: dict[str, Any] | None = None,
                 models: dict[str, Any] | None = None) -> None:
        self.store = store
        self.owner_key = owner_key
        self.image_key = image_key
        self.file_name = file_name
        self.image_bytes = image_bytes
        self.settings = dict(settings or {})
        self.models = dict(models or {})
        self.saves = 0
        self._stored = False  # put once; updates after that
        self._warned = False
        self._last: tuple[list[EditableObject], list[str]] | None = None
        self._texts: dict[int, tuple[EditableObject, str]] = {}

    def save(self, objects: Sequence[EditableObject], class_names: Sequence[str],
             initial: Sequence[EditableObject], initial_classes: Sequence[str]) -> str | None:
        """Saves the labels now (nothing to do when they did not change since the last save).

        Args:
            objects: The objects now, in table order.
            class_names: Every class now.
            initial: The automatic result's objects.
            initial_classes: The automatic result's classes.

        Returns:
            None, or the first time saving fails a message for the user (later failures are only logged).
        """
        labels = (list(objects), list(class_names))
        if self._last is not None and _same(self._last, labels):
            return None
        if self.store is None or not self.store.available:
            return self._failed(f"the edit store is unavailable ({self.store.problem if self.store else 'off'})")
        try:
            texts = self._json(objects, keep=initial)
            saved = self._stored and self.store.update(self.owner_key, self.image_key, class_names, texts)
            if not saved:
                saved = self.store.put(
                    self.owner_key, self.image_key, file_name=self.file_name, image_bytes=self.image_bytes(),
                    class_names=class_names, objects=texts, initial_classes=initial_classes,
                    initial=self._json(initial), settings=self.settings, models=self.models)
                if not saved:
                    return self._failed("too large for the store", TOO_LARGE)
        except (sqlite3.Error, OSError) as exc:
            return self._failed(str(exc))
        self._stored, self._last = True, labels
        self.saves += 1
        return None

    def mark_saved(self, objects: Sequence[EditableObject], class_names: Sequence[str]) -> None:
        """Tells the saver these labels are in the store already (an editor rebuilt from it): the next save that
        finds them unchanged writes nothing, and a changed one updates the row instead of putting it again."""
        self._stored, self._last = True, (list(objects), list(class_names))

    def _json(self, objects: Sequence[EditableObject], keep: Sequence[EditableObject] = ()) -> list[str]:
        """Each object's JSON text, from the cache when the object was saved before; forgets the others."""
        texts = []
        for obj in objects:
            cached = self._texts.get(id(obj))
            if cached is None or cached[0] is not obj:
                cached = self._texts[id(obj)] = (obj, object_json(obj))
            texts.append(cached[1])
        alive = {id(o) for o in (*objects, *keep)}
        for key in [k for k in self._texts if k not in alive]:
            del self._texts[key]
        return texts

    def _failed(self, why: str, message: str = NOT_SAVED) -> str | None:
        logger.warning("The edits of %s were not saved: %s", self.file_name, why)
        if self._warned:
            return None
        self._warned = True
        return message


def _same(a: tuple[list[EditableObject], list[str]], b: tuple[list[EditableObject], list[str]]) -> bool:
    return a[1] == b[1] and len(a[0]) == len(b[0]) and all(x is y for x, y in zip(a[0], b[0]))
