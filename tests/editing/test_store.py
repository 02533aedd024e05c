"""Saved edits (grounded_sam.editing.store): round trips, owners kept apart, retention, caps, threads, failures.

Most tests use small hand-made objects and no model; the editor tests at the end use the tiny models'
truck result (tests/editing/conftest.py).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from grounded_sam.caching import image_key
from grounded_sam.editing.editor import GROW, SELECT, Editor
from grounded_sam.editing.session import EditableObject, LabelSession
from grounded_sam.editing.store import (
    DB_NAME,
    NOT_SAVED,
    EditSaver,
    EditStore,
    new_owner_key,
    object_json,
    valid_owner_key,
)

HOUR = 3600.0


class Clock:
    """A clock the test moves."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def random_object(rng: np.random.Generator, size: tuple[int, int] = (37, 53), *, by_hand: bool = False) -> EditableObject:
    clicks = int(rng.integers(0, 4))
    return EditableObject(
        mask=rng.random(size) > 0.6,
        box=(rng.random(4) * 50).astype(np.float32),
        class_name=str(rng.choice(["truck", "tire", "Reifen 🚚", "عجلة"])),
        score=float(np.float32(rng.random())),
        points=(rng.random((clicks, 2)) * 40).astype(np.float32),
        labels=rng.integers(0, 2, clicks).astype(np.int32),
        edited=by_hand or clicks > 0,
        detector_score=None if by_hand else float(np.float32(rng.random())),
    )


def put(store: EditStore, owner: str, key: str, objects: list[EditableObject], image: bytes = b"img",
        name: str = "site.jpg") -> bool:
    classes = sorted({o.class_name for o in objects})
    texts = [object_json(o) for o in objects]
    return store.put(owner, key, file_name=name, image_bytes=image, class_names=classes, objects=texts,
                     initial_classes=classes, initial=texts, settings={"categories": "truck"},
                     models={"detector": None, "segmenter": "tiny"})


def rows(folder: Path) -> int:
    with sqlite3.connect(folder / DB_NAME) as conn:
        return conn.execute("SELECT COUNT(*) FROM edits").fetchone()[0]


def assert_same_objects(loaded: list[EditableObject], saved: list[EditableObject]) -> None:
    assert len(loaded) == len(saved)
    for a, b in zip(loaded, saved):
        assert a.mask.dtype == bool and a.mask.tobytes() == b.mask.tobytes()
        assert a.box.dtype == np.float32 and a.box.tobytes() == np.asarray(b.box, np.float32).tobytes()
        assert a.points.tobytes() == b.points.tobytes() and a.labels.tobytes() == b.labels.tobytes()
        assert (a.class_name, a.score, a.detector_score, a.edited) == (b.class_name, b.score, b.detector_score, b.edited)
        assert a.logits is None


def test_objects_and_the_image_come_back_byte_exact(tmp_path) -> None:
    rng = np.random.default_rng(0)
    store = EditStore(tmp_path, 24 * HOUR)
    owner = new_owner_key()
    objects = [random_object(rng) for _ in range(6)] + [random_object(rng, by_hand=True)]
    initial = objects[:3]
    image = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    texts = [object_json(o) for o in objects]
    assert store.put(owner, "k" * 64, file_name="Baustelle 🚧.jpg", image_bytes=image,
                     class_names=["truck", "tire", "Reifen 🚚", "عجلة"], objects=texts, initial_classes=["truck"],
                     initial=[object_json(o) for o in initial], settings={"categories": "truck, tire"},
                     models={"detector": "florence-2-base", "segmenter": None})

    saved = EditStore(tmp_path, 24 * HOUR).load(owner, "k" * 64)  # another connection: what a restart reads
    assert saved.image_bytes == image and saved.file_name == "Baustelle 🚧.jpg"
    assert saved.class_names == ["truck", "tire", "Reifen 🚚", "عجلة"] and saved.initial_classes == ["truck"]
    assert saved.settings == {"categories": "truck, tire"}
    assert saved.models == {"detector": "florence-2-base", "segmenter": None}
    assert_same_objects(saved.objects, objects)
    assert_same_objects(saved.initial, initial)

    # An edit updates the objects only; the image and the automatic result stay.
    assert store.update(owner, "k" * 64, ["truck"], texts[:2])
    again = store.load(owner, "k" * 64)
    assert_same_objects(again.objects, objects[:2])
    assert_same_objects(again.initial, initial)
    assert again.image_bytes == image and again.class_names == ["truck"]
    assert [(s.file_name, s.object_count) for s in store.recent(owner)] == [("Baustelle 🚧.jpg", 2)]


def test_another_owner_finds_nothing_and_the_file_holds_no_key(tmp_path) -> None:
    rng = np.random.default_rng(1)
    store = EditStore(tmp_path, 24 * HOUR)
    alice, bob = new_owner_key(), new_owner_key()
    assert valid_owner_key(alice) and alice != bob
    put(store, alice, "a" * 64, [random_object(rng)])

    assert store.recent(bob) == [] and store.load(bob, "a" * 64) is None
    assert not store.update(bob, "a" * 64, ["truck"], [])  # nor can another key overwrite it
    # What the database holds for Alice (the hash of her key) is no key itself.
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        stored_owner = conn.execute("SELECT owner FROM edits").fetchone()[0]
    assert store.load(stored_owner, "a" * 64) is None and store.recent(stored_owner) == []
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert alice.encode() not in raw
    assert EditStore(tmp_path, 24 * HOUR).load(alice, "a" * 64) is not None  # Alice herself still finds it
    for bad in (None, "", "x" * 42, "x" * 44, alice[:-1] + "!", 12345, ["list"]):
        assert not valid_owner_key(bad)


def test_rows_past_the_retention_time_are_gone_at_once_and_deleted(tmp_path) -> None:
    rng = np.random.default_rng(2)
    clock = Clock()
    store = EditStore(tmp_path, 2 * HOUR, clock=clock)
    owner = new_owner_key()
    put(store, owner, "old" + "0" * 61, [random_object(rng)])
    clock.now += HOUR
    put(store, owner, "new" + "0" * 61, [random_object(rng)])
    clock.now += 1.5 * HOUR  # the first is 2.5 h old, the second 1.5 h

    assert [s.image_key[:3] for s in store.recent(owner)] == ["new"]
    assert store.load(owner, "old" + "0" * 61) is None
    assert not store.update(owner, "old" + "0" * 61, ["truck"], [])
    assert rows(tmp_path) == 2  # invisible already, deleted by the next purge
    assert store.purge() == 1 and rows(tmp_path) == 1
    clock.now += HOUR
    EditStore(tmp_path, 2 * HOUR, clock=clock)  # a restart purges at start
    assert rows(tmp_path) == 0
    with pytest.raises(ValueError, match="must be positive"):
        EditStore(tmp_path, 0)


def test_each_owner_keeps_its_newest_images_and_the_store_its_byte_cap(tmp_path) -> None:
    rng = np.random.default_rng(3)
    clock = Clock()
    store = EditStore(tmp_path, 24 * HOUR, max_images_per_owner=3, max_total_bytes=60_000, clock=clock)
    alice, bob = new_owner_key(), new_owner_key()
    for i in range(5):
        clock.now += 1
        put(store, alice, f"{i:064d}", [random_object(rng)], image=b"a" * 1000)
    assert [s.image_key[-1] for s in store.recent(alice)] == ["4", "3", "2"]

    # Bob's large images push out the oldest rows of anybody, never the one just saved.
    for i in range(3):
        clock.now += 1
        assert put(store, bob, f"{i:064d}", [random_object(rng)], image=b"b" * 25_000)
    assert [s.image_key[-1] for s in store.recent(bob)] == ["2", "1"]
    assert store.recent(alice) == []
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        assert conn.execute("SELECT SUM(nbytes) FROM edits").fetchone()[0] <= 60_000
        assert conn.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 2  # the files went with their rows
    # One image larger than the whole store is not saved at all.
    assert not put(store, bob, "x" * 64, [random_object(rng)], image=b"c" * 70_000)
    assert len(store.recent(bob)) == 2


def test_threads_save_at_once_without_losing_a_write(tmp_path) -> None:
    store = EditStore(tmp_path, 24 * HOUR)
    owners = [new_owner_key() for _ in range(4)]
    errors: list[BaseException] = []

    def edit(t: int) -> None:
        rng = np.random.default_rng(10 + t)
        owner, key = owners[t % 4], f"{t:064d}"
        try:
            objects = [random_object(rng) for _ in range(3)]
            put(store, owner, key, objects)
            for step in range(15):
                objects = objects[1:] + [random_object(rng)] if step % 2 else objects + [random_object(rng)]
                assert store.update(owner, key, ["truck", "tire", "Reifen 🚚", "عجلة"],
                                    [object_json(o) for o in objects])
                store.recent(owner)
            final[t] = objects
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    final: dict[int, list[EditableObject]] = {}
    threads = [threading.Thread(target=edit, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    reopened = EditStore(tmp_path, 24 * HOUR)
    for t, objects in final.items():
        assert_same_objects(reopened.load(owners[t % 4], f"{t:064d}").objects, objects)
    assert sorted(len(reopened.recent(o)) for o in owners) == [2, 2, 2, 2]


def test_a_corrupt_database_is_moved_aside_and_saving_goes_on(tmp_path, caplog) -> None:
    (tmp_path / DB_NAME).write_bytes(b"this is not SQLite" * 100)
    store = EditStore(tmp_path, HOUR)
    assert store.available and store.problem is None
    assert "unreadable" in caplog.text
    aside = list(tmp_path.glob(f"{DB_NAME}.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not SQLite")
    owner = new_owner_key()
    assert put(store, owner, "a" * 64, [random_object(np.random.default_rng(4))])
    assert len(store.recent(owner)) == 1


def test_an_unusable_data_folder_turns_saving_off_with_one_warning(tmp_path, caplog) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = EditStore(blocker / "data", HOUR)  # the data folder cannot be made: a file is in the way
    assert not store.available and "cannot open" in store.problem
    assert store.recent(new_owner_key()) == [] and store.load(new_owner_key(), "a" * 64) is None
    with pytest.raises(sqlite3.Error):
        put(store, new_owner_key(), "a" * 64, [])

    saver = EditSaver(store, new_owner_key(), "a" * 64, "site.jpg", lambda: b"img")
    objects = [random_object(np.random.default_rng(5))]
    assert saver.save(objects, ["truck"], objects, ["truck"]) == NOT_SAVED
    assert saver.save(objects[:0], ["truck"], objects, ["truck"]) is None  # told once; logged every time
    assert caplog.text.count("were not saved") == 2
    assert EditSaver(None, new_owner_key(), "a" * 64, "x", lambda: b"").save([], [], [], []) == NOT_SAVED


def test_a_full_disk_mid_session_warns_once_and_saving_resumes_when_space_is_back(tmp_path) -> None:
    rng = np.random.default_rng(6)
    store = EditStore(tmp_path, HOUR)
    saver = EditSaver(store, new_owner_key(), "a" * 64, "site.jpg", lambda: b"img")
    objects = [random_object(rng, (200, 300))]
    assert saver.save(objects, ["truck"], objects, ["truck"]) is None
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count={pages}")  # SQLite's own "disk full"
    bigger = objects + [random_object(rng, (200, 300)) for _ in range(20)]
    assert saver.save(bigger, ["truck"], objects, ["truck"]) == NOT_SAVED
    assert saver.save(bigger[:-1], ["truck"], objects, ["truck"]) is None
    assert len(store.load(saver.owner_key, "a" * 64).objects) == 1  # the last save that fitted is intact
    store._conn.execute("PRAGMA max_page_count=1073741823")
    assert saver.save(bigger, ["truck"], objects, ["truck"]) is None
    assert len(store.load(saver.owner_key, "a" * 64).objects) == 21


def test_the_saver_writes_only_changes_and_serialises_each_object_once(tmp_path, monkeypatch) -> None:
    import grounded_sam.editing.store as store_module

    rng = np.random.default_rng(7)
    calls = []
    monkeypatch.setattr(store_module, "object_json", lambda o: calls.append(o) or object_json(o))
    store = EditStore(tmp_path, HOUR)
    reads = []
    saver = EditSaver(store, new_owner_key(), "a" * 64, "site.jpg", lambda: reads.append(1) or b"img")
    objects = [random_object(rng) for _ in range(5)]
    classes = ["truck", "tire", "Reifen 🚚", "عجلة"]
    saver.save(objects, classes, objects, classes)
    assert len(calls) == 5 and saver.saves == 1
    saver.save(list(objects), list(classes), objects, classes)  # the same labels: nothing written
    assert saver.saves == 1
    objects = objects[:2] + [random_object(rng)] + objects[3:]
    saver.save(objects, classes, objects[:0] + objects, classes)
    assert len(calls) == 6 and saver.saves == 2 and reads == [1]  # one new object; the image read once


# ---------------------------------------------------------------------------------------------
# An editor that saves as it goes, and one rebuilt from the store


@pytest.fixture
def saving_editor(refiner, truck_rgb, truck_result, tmp_path, photos) -> tuple[Editor, EditStore, str]:
    store = EditStore(tmp_path / "data", HOUR)
    owner = new_owner_key()
    session = LabelSession(refiner, truck_rgb, truck_result, truck_result.metadata["class_names"])
    saver = EditSaver(store, owner, session.key, "truck.jpg", (photos / "truck.jpg").read_bytes,
                      settings={"categories": "truck, tire"}, models={"segmenter": None})
    editor = Editor(session, tmp_path / "job", "truck.jpg", "truck", source_path=photos / "truck.jpg", saver=saver)
    assert editor.save() is None
    return editor, store, owner


def test_every_edit_is_saved_and_a_rebuilt_editor_has_it(saving_editor, refiner, truck_rgb, tmp_path) -> None:
    editor, store, owner = saving_editor
    key = editor.session.key
    count = len(editor.session.objects)
    editor.select(0)
    editor.delete()
    assert store.recent(owner)[0].object_count == count - 1
    editor.select(0)
    editor.relabel("excavator")
    x, y = 900, 700
    editor.click(x, y, GROW)
    assert editor.saver.saves == 4  # the run, delete, relabel, the click (selecting saves nothing)

    saved = store.load(owner, key)
    rebuilt = Editor.from_saved(saved, refiner, tmp_path / "resumed", saver=editor.saver)
    assert rebuilt.file_name == "truck.jpg" and rebuilt.source_path.read_bytes() == saved.image_bytes
    np.testing.assert_array_equal(rebuilt.session.image, truck_rgb)
    assert rebuilt.view().rows == editor.view().rows
    assert rebuilt.view().class_names == ["truck", "tire", "excavator"]
    assert not rebuilt.session.can_undo  # the history is not saved
    mine, theirs = rebuilt.detections(), editor.detections()
    np.testing.assert_array_equal(mine.mask, theirs.mask)
    np.testing.assert_array_equal(mine.xyxy, theirs.xyxy)
    coco = json.loads(rebuilt.write_downloads()[0].read_text())
    assert len(coco["annotations"]) == count - 1 and coco["categories"][-1]["name"] == "excavator"

    # Later clicks refine the rebuilt objects (logits recomputed from the box), and are saved.
    rebuilt.select(0)
    assert "added the area" in rebuilt.click(300, 300, GROW)
    assert store.load(owner, key).objects[0].points.shape == (2, 2)
    # Reset returns to the automatic result, which was saved too.
    rebuilt.reset()
    assert len(store.load(owner, key).objects) == count


def test_a_saved_result_that_does_not_fit_its_image_is_refused(saving_editor, refiner, tmp_path) -> None:
    from grounded_sam.errors import EditError

    editor, store, owner = saving_editor
    saved = store.load(owner, editor.session.key)
    small = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(EditError, match="saved mask is 1800x1200, but the image is 10x10"):
        LabelSession.from_objects(refiner, small, saved.objects, saved.class_names)
    with pytest.raises(EditError, match="not among"):
        LabelSession.from_objects(refiner, editor.session.image, saved.objects, ["bus"])


def test_print_what_saving_an_edit_costs(saving_editor, capsys) -> None:
    """Figures for the README: truck.jpg (1800 x 1200), the tiny models' objects; a delete, then relabels."""
    editor, store, _ = saving_editor
    editor.select(0)
    times = []
    for name in ("excavator", "truck", "crane", "truck") * 3:
        started = time.perf_counter()
        editor.saver.save(*_relabelled(editor, name))
        times.append(time.perf_counter() - started)
    size = (store.path.stat().st_size + Path(str(store.path) + "-wal").stat().st_size) / 2**20
    with capsys.disabled():
        print(f"\n[edit store] {len(editor.session.objects)} objects of 1800x1200: an edit saved in "
              f"{1000 * sorted(times)[len(times) // 2]:.1f} ms (median of {len(times)}); database + WAL {size:.1f} MB")


def _relabelled(editor: Editor, name: str) -> tuple:
    editor.session.relabel(0, name)
    return (editor.session.objects, editor.session.class_names, *editor.session.initial)


def test_selecting_saves_nothing(saving_editor) -> None:
    editor, _, _ = saving_editor
    x, y = 900, 700
    editor.click(x, y, SELECT)
    editor.select(None)
    assert editor.saver.saves == 1
    assert image_key(editor.session.image) == editor.session.key
