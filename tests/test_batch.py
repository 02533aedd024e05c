"""Collecting inputs, naming outputs uniquely, and runs that survive a bad image."""

from __future__ import annotations

from pathlib import Path, PurePath

import numpy as np
import pytest
import supervision as sv
from PIL import Image

from grounded_sam.batch import InputImage, assign_stems, collect_images, label_images, sanitize_stem
from grounded_sam.errors import InputError
from grounded_sam.export import JsonLabelWriter


def _png(path: Path, size=(16, 12)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path, format="PNG")
    return path


def test_collect_images_recurses_and_filters(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "sub" / "b.PNG")
    _png(tmp_path / "sub" / "deeper" / "c.JpEg")
    _png(tmp_path / ".hidden" / "d.png")
    _png(tmp_path / ".e.png")
    (tmp_path / "notes.txt").write_text("not an image")
    found = collect_images([tmp_path])
    assert [i.relative.as_posix() for i in found] == ["a.png", "sub/b.PNG", "sub/deeper/c.JpEg"]


def test_a_file_given_directly_is_taken_whatever_its_suffix(tmp_path):
    odd = tmp_path / "notes.txt"
    odd.write_text("x")
    assert collect_images([odd]) == [InputImage(odd, PurePath("notes.txt"))]


@pytest.mark.parametrize("make", ["missing", "empty-folder"])
def test_collect_images_errors(tmp_path, make):
    target = tmp_path / "nothing"
    if make == "empty-folder":
        target.mkdir()
    with pytest.raises(InputError):
        collect_images([target])


@pytest.mark.parametrize(
    ("relative", "stem"),
    [("img.jpg", "img"), ("sub/dir/img 1.jpg", "sub__dir__img_1"), ("../../etc/passwd.png", "etc__passwd"),
     ("ü n/ï.png", "ü_n__ï"), ("a\\b:c.png", "a_b_c"), (".jpg", "jpg")],
)
def test_sanitize_stem(relative, stem):
    result = sanitize_stem(PurePath(relative))
    assert result == stem
    assert "/" not in result and ".." not in result


def test_assign_stems_keeps_same_names_apart():
    images = [InputImage(Path(p), PurePath(r)) for p, r in
              [("a/img.jpg", "img.jpg"), ("b/img.jpg", "img.jpg"), ("c/IMG.png", "IMG.png"), ("x/sub/img.jpg", "sub/img.jpg")]]
    assert assign_stems(images) == ["img", "img-2", "IMG-3", "sub__img"]


class FakePipe:
    """Stands in for GroundedSAM2: one full-image detection per image, failing on demand."""

    def __init__(self, fail_on: str = "") -> None:
        self.fail_on = fail_on
        self.calls = 0

    def __call__(self, image: np.ndarray, categories) -> sv.Detections:
        self.calls += 1
        if self.fail_on and self.calls == 2:
            raise RuntimeError(self.fail_on)
        height, width = image.shape[:2]
        return sv.Detections(
            xyxy=np.array([[0, 0, width, height]], dtype=np.float32), mask=np.ones((1, height, width), bool),
            confidence=np.array([0.5], np.float32), class_id=np.array([0]), data={"class_name": np.array(["thing"])},
        )


def test_one_bad_image_never_stops_the_run(tmp_path):
    _png(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").write_bytes(b"corrupt")
    _png(tmp_path / "in" / "c.png")
    progress = []
    summary = label_images(
        FakePipe(), collect_images([tmp_path / "in"]), "thing", [JsonLabelWriter(tmp_path / "out")],
        on_progress=lambda done, total, outcome: progress.append((done, total, outcome.ok)),
    )
    assert [o.ok for o in summary.outcomes] == [True, False, True]
    assert "b.png" in summary.failed[0].error
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == ["a.json", "c.json"]
    assert progress == [(1, 3, True), (2, 3, False), (3, 3, True)]
    assert "Failed 1" in summary.as_text() and "b.png" in summary.as_text()


def test_a_model_failure_on_one_image_is_recorded(tmp_path):
    for name in "abc":
        _png(tmp_path / f"{name}.png")
    summary = label_images(FakePipe(fail_on="CUDA out of memory"), collect_images([tmp_path]), "thing", [])
    assert [o.ok for o in summary.outcomes] == [True, False, True]
    assert "CUDA out of memory" in summary.failed[0].error
