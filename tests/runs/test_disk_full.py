"""A disk that fills up during a run: a clear error, the finished images whole, and a resume once space is freed."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from grounded_sam.errors import DiskFullError
from grounded_sam.export import JsonLabelWriter
from grounded_sam.runs.batch import run_labeling
from tests.fakes import ShapesPipe, write_image
from tests.readers import manifest_lines, run_files

IMAGES = 6


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    for key in range(1, IMAGES + 1):
        write_image(tmp_path / "in" / f"{key}.png", key)
    return tmp_path / "in"


class FillingWriter(JsonLabelWriter):
    """Writes labels like the JSON writer until ``full_after`` images, then fails as a full disk does."""

    name = "filling"

    def __init__(self, out: Path, full_after: int) -> None:
        super().__init__(out / "extra")
        self.full_after, self.written = full_after, 0

    def write(self, item):
        if self.written >= self.full_after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(item.stem))
        self.written += 1
        return super().write(item)

    def settings(self) -> dict:
        return {}


def test_a_full_disk_stops_the_run_and_the_same_call_resumes(tmp_path: Path, photos: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(DiskFullError, match="disk is full.*run the same command again") as error:
        run_labeling(ShapesPipe(), [photos], "truck, tire", out, formats="coco,yolo",
                     extra_writers=[FillingWriter(out, full_after=2)])
    assert "3.png" in str(error.value)  # names what it was writing
    records = manifest_lines(out)[1:]
    assert [r["stem"] for r in records] == ["1", "2"] and all(r["status"] == "ok" for r in records)
    assert not (out / "labels" / "3.json").exists()  # the image that hit the full disk left nothing
    assert not list(out.rglob(".*.tmp"))
    coco = json.loads((out / "coco" / "annotations.json").read_text())  # datasets list the images done
    assert [i["file_name"] for i in coco["images"]] == ["1.png", "2.png"]

    pipe = ShapesPipe()
    summary = run_labeling(pipe, [photos], "truck, tire", out, formats="coco,yolo",
                           extra_writers=[FillingWriter(out, full_after=IMAGES)])
    assert pipe.calls == IMAGES - 2 and len(summary.labeled) == IMAGES - 2 and not summary.failed


# ------------------------------------------------------------------------------- a real full file system

def _mount_tmpfs(folder: Path, size: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True,
                   capture_output=True, timeout=30)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs file system of our own (root only): sized by the test, grown with a remount."""
    folder = tmp_path / "small-disk"
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the fake-writer test above covers the logic")
    try:
        _mount_tmpfs(folder, 4096 * 16)
    except (subprocess.CalledProcessError, FileNotFoundError, OSError) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc}); the fake-writer test above covers the logic")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False, capture_output=True, timeout=30)


def _resize(folder: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True, capture_output=True, timeout=30)


def test_a_real_disk_filling_up_mid_run(tmp_path: Path, photos: Path, small_disk: Path) -> None:
    reference = tmp_path / "reference"
    run_labeling(ShapesPipe(), [photos], "truck, tire", reference, formats="all", plot=True)
    total = sum(p.stat().st_size for p in reference.rglob("*") if p.is_file())

    _resize(small_disk, (total * 2 // 5) // 4096 * 4096)  # room for about two of the six images
    out = small_disk / "out"
    with pytest.raises(DiskFullError, match="disk is full"):
        run_labeling(ShapesPipe(), [photos], "truck, tire", out, formats="all", plot=True)
    records = manifest_lines(out)[1:]  # every line parses: no half line from the full disk
    assert 0 < len(records) < IMAGES
    for record in records:
        assert all((out / p).is_file() for p in record["outputs"])
        json.loads((out / record["labels"]).read_text())
    assert not list(out.rglob(".*.tmp"))

    _resize(small_disk, total * 3)  # space freed
    summary = run_labeling(ShapesPipe(), [photos], "truck, tire", out, formats="all", plot=True)
    assert not summary.failed and len(summary.labeled) + len(summary.skipped) == IMAGES
    assert run_files(out) == run_files(reference)
