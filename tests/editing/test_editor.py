"""What clicks on the overlay do (grounded_sam.editing.editor), with the tiny models: no UI involved."""

from __future__ import annotations

import json
import threading
import zipfile

import numpy as np
import pytest

from grounded_sam.editing.editor import (
    ADD_BOX,
    ADD_POINT,
    EDIT_MODES,
    GROW,
    KEEP_OVERLAYS,
    SELECT,
    SHRINK,
    Editor,
    EditorRegistry,
)
from grounded_sam.editing.session import LabelSession
from grounded_sam.errors import EditError


@pytest.fixture
def editor(refiner, truck_rgb, truck_result, tmp_path, photos) -> Editor:
    session = LabelSession(refiner, truck_rgb, truck_result, truck_result.metadata["class_names"])
    return Editor(session, tmp_path, "truck.jpg", "truck", source_path=photos / "truck.jpg",
                  settings={"categories": "truck, tire"})


def deepest(mask: np.ndarray) -> tuple[int, int]:
    """The pixel farthest from the mask's edge (x, y): a click there hits the mask whatever the noise."""
    import cv2

    distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return int(x), int(y)


def test_a_click_selects_the_object_under_it_and_nothing_elsewhere(editor) -> None:
    x, y = deepest(editor.session.objects[2].mask)
    expected = editor.session.object_at(x, y)
    assert "Selected #" in editor.click(x, y, SELECT) and editor.selected == expected

    x, y = deepest(~np.any([o.mask for o in editor.session.objects], axis=0))
    assert "Nothing selected" in editor.click(x, y, SELECT) and editor.selected is None


def test_plus_and_minus_points_refine_the_selected_object_only(editor) -> None:
    editor.select(1)
    others = [o for i, o in enumerate(editor.session.objects) if i != 1]
    outside = deepest(~editor.session.objects[1].mask)
    status = editor.click(*outside, GROW)
    assert "#1" in status and "1 + / 0 − points" in status
    assert editor.session.objects[1].mask[outside[1], outside[0]]
    inside = deepest(editor.session.objects[1].mask)
    editor.click(*inside, SHRINK)
    assert not editor.session.objects[1].mask[inside[1], inside[0]]
    assert all(a is b for a, b in zip(others, [o for i, o in enumerate(editor.session.objects) if i != 1]))
    assert editor.view().can_undo


def test_a_point_click_with_nothing_selected_selects_first(editor) -> None:
    x, y = deepest(editor.session.objects[0].mask)
    assert "Selected" in editor.click(x, y, GROW)
    assert not editor.session.can_undo  # no edit yet

    editor.selected = None
    x, y = deepest(~np.any([o.mask for o in editor.session.objects], axis=0))
    with pytest.raises(EditError, match="Select an object first"):
        editor.click(x, y, SHRINK)


def test_new_objects_from_a_point_and_from_two_corners(editor) -> None:
    count = len(editor.session.objects)
    assert "Added #" in editor.click(700, 800, ADD_POINT, "wheel")
    assert editor.selected == count and editor.session.objects[count].class_name == "wheel"

    assert "First corner" in editor.click(100, 900, ADD_BOX, "Truck")
    assert editor.corner == (100.0, 900.0) and len(editor.session.objects) == count + 1
    assert "Added #" in editor.click(400, 600, ADD_BOX, "Truck")
    new = editor.session.objects[-1]
    assert new.class_name == "truck"  # the known class, whatever the letter case
    np.testing.assert_array_equal(new.box, [100, 600, 400, 900])
    assert editor.corner is None
    assert editor.view().class_names == ["truck", "tire", "wheel"]


def test_a_new_object_needs_a_class_and_a_point_inside_the_image(editor) -> None:
    with pytest.raises(EditError, match="Pick a class"):
        editor.click(10, 10, ADD_POINT, "  ")
    with pytest.raises(EditError, match="Pick a class"):
        editor.click(10, 10, ADD_BOX, None)
    assert editor.corner is None
    with pytest.raises(EditError, match="outside"):
        editor.click(5000, 10, ADD_BOX, "truck")
    with pytest.raises(EditError, match="Unknown edit mode"):
        editor.click(10, 10, "lasso")


def test_switching_mode_drops_a_half_drawn_box(editor) -> None:
    editor.click(10, 10, ADD_BOX, "truck")
    assert editor.set_mode(SELECT).startswith("Click an object")
    assert editor.corner is None


def test_delete_relabel_undo_redo_reset(editor) -> None:
    initial = [o.class_name for o in editor.session.objects]
    with pytest.raises(EditError, match="Select the object to delete first"):
        editor.delete()
    editor.select(0)
    assert "Deleted #0" in editor.delete()
    assert editor.selected is None and len(editor.view().rows) == len(initial) - 1

    editor.select(0)
    assert "is now excavator" in editor.relabel("excavator")
    view = editor.view()
    assert view.rows[0][1] == "excavator" and view.class_names[-1] == "excavator"
    assert view.counts[-1] == 1

    assert editor.undo() == "Undone."
    assert "excavator" not in editor.view().class_names
    assert editor.redo() == "Redone."
    assert editor.view().rows[0][1] == "excavator"
    assert editor.reset().startswith("Back to the automatic result")
    assert [r[1] for r in editor.view().rows] == initial and editor.selected is None
    assert editor.redo() == "Nothing to redo."


def test_the_overlay_files_are_new_each_time_and_few(editor) -> None:
    paths = [editor.write_overlay() for _ in range(KEEP_OVERLAYS + 3)]
    assert len(set(paths)) == len(paths)
    kept = sorted(p.name for p in editor.folder.glob("truck_edit_*.jpg"))
    assert kept == sorted(p.name for p in paths[-KEEP_OVERLAYS:])


def test_downloads_and_dataset_hold_the_edits(editor, tmp_path) -> None:
    editor.select(0)
    editor.delete()
    editor.click(100, 100, ADD_BOX, "wheel")
    editor.click(500, 400, ADD_BOX, "wheel")
    coco_path, masks_path = editor.write_downloads()

    coco = json.loads(coco_path.read_text())
    assert len(coco["annotations"]) == len(editor.session.objects)
    assert [c["name"] for c in coco["categories"]] == ["truck", "tire", "wheel"]
    assert coco["annotations"][-1]["category_id"] == 3
    with zipfile.ZipFile(masks_path) as archive:
        assert archive.namelist()[-1].endswith("_wheel.png")

    dataset = editor.write_dataset(tmp_path / "dataset-job")
    with zipfile.ZipFile(dataset) as archive:
        names = set(archive.namelist())
        assert {"coco/annotations.json", "labels/truck.json", "voc/labelmap.txt"} <= names
        assert any(n.startswith("yolo/segment/") for n in names) and any(n.startswith("masks/") for n in names)
        document = json.loads(archive.read("coco/annotations.json"))
    assert len(document["annotations"]) == len(editor.session.objects)
    assert [c["name"] for c in document["categories"]] == ["truck", "tire", "wheel"]


def test_a_released_editor_says_so(editor) -> None:
    editor.release()
    assert editor.released
    with pytest.raises(EditError, match="editing session has ended"):
        editor.click(10, 10, SELECT)
    with pytest.raises(EditError, match="editing session has ended"):
        editor.view()


def test_the_registry_releases_replaced_and_least_recently_used_editors(editor) -> None:
    def twin() -> Editor:
        return Editor(editor.session, editor.folder, "truck.jpg", "truck")

    registry = EditorRegistry(max_editors=2)
    first, second, third, replacement = twin(), twin(), twin(), twin()
    registry.add("a", first)
    registry.add("b", second)
    registry.touch("a")
    registry.add("c", third)  # over the bound: "b" was used least recently
    assert second.released and not first.released and len(registry) == 2
    registry.add("a", replacement)  # a new run in the same session
    assert first.released and "a" in registry
    assert registry.release("c") and third.released and not registry.release("c")
    registry.discard(replacement)  # the state's delete callback
    assert replacement.released and len(registry) == 0


def test_two_sessions_clicking_at_once_keep_their_own_images(pipe, refiner, truck_result, truck_rgb, tmp_path) -> None:
    other_rgb = np.ascontiguousarray(truck_rgb[::-1])  # another image: the truck upside down
    other_result = pipe(other_rgb, "truck, tire")
    editors = [Editor(LabelSession(refiner, rgb, result, ["truck", "tire"]), tmp_path / name, name, name)
               for rgb, result, name in ((truck_rgb, truck_result, "a"), (other_rgb, other_result, "b"))]
    clicks = [(300 + 40 * i, 400 + 30 * i, bool(i % 2)) for i in range(4)]

    def edit(editor: Editor) -> None:
        editor.select(0)
        for x, y, positive in clicks:
            editor.click(x, y, GROW if positive else SHRINK)

    threads = [threading.Thread(target=edit, args=(e,)) for e in editors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # The same clicks one session at a time give the same masks: nothing leaked between images.
    for editor, (rgb, result) in zip(editors, ((truck_rgb, truck_result), (other_rgb, other_result))):
        alone = Editor(LabelSession(refiner, rgb, result, ["truck", "tire"]), tmp_path / "alone", "x", "x")
        edit(alone)
        np.testing.assert_array_equal(editor.session.objects[0].mask, alone.session.objects[0].mask)


def test_the_modes_a_page_offers() -> None:
    assert EDIT_MODES == ("Select", "+ point (grow)", "- point (shrink)", "New object: point",
                          "New object: box (click two corners)")


def test_the_registry_stays_within_its_bytes_releasing_the_least_recently_used(editor) -> None:
    def twin() -> Editor:
        return Editor(LabelSession(editor.session.refiner, editor.session.image.copy(), editor.detections(),
                                   editor.view().class_names), editor.folder, "truck.jpg", "truck")

    one = twin()
    size = one.nbytes()
    assert size >= one.session.image.nbytes + sum(o.mask.nbytes for o in one.session.objects)
    registry = EditorRegistry(max_editors=10, max_bytes=int(size * 2.5))
    first, second, third = one, twin(), twin()
    registry.add("a", first)
    registry.add("b", second)
    registry.touch("a")
    registry.add("c", third)  # three do not fit: "b" was used least recently
    assert second.released and not first.released and not third.released
    assert registry.nbytes() <= registry.max_bytes

    # Edits grow an editor (its undo history keeps the old masks), so using one checks the bound again.
    registry.max_bytes = first.nbytes() + third.nbytes() - 1
    registry.touch("a")
    assert third.released and not first.released  # never the editor just used
    assert EditorRegistry(max_bytes=0).max_bytes == 0
    with pytest.raises(ValueError, match="max_bytes"):
        EditorRegistry(max_bytes=-1)
