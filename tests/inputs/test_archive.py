"""Safe extraction of uploaded zips, and the results zip."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grounded_sam.errors import ArchiveError
from grounded_sam.inputs.archive import SkippedMember, ZipLimits, extract_images, member_path, write_zip


def png_bytes(size: tuple[int, int] = (8, 6), colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def make_zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.jpg", "a.jpg"),
        ("photos/a.jpg", "photos/a.jpg"),
        ("./photos/./a.jpg", "photos/a.jpg"),
        ("photos\\sub\\a.jpg", "photos/sub/a.jpg"),
        ("photos//a.jpg", "photos/a.jpg"),
        ("..a.jpg", "..a.jpg"),  # a name that starts with dots is not a parent reference
    ],
)
def test_member_path_keeps_safe_relative_paths(name: str, expected: str) -> None:
    assert member_path(name).as_posix() == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../evil.jpg", "leaves its folder"),
        ("photos/../../evil.jpg", "leaves its folder"),
        ("photos\\..\\..\\evil.jpg", "leaves its folder"),
        ("/etc/evil.jpg", "absolute path"),
        ("\\\\server\\share\\evil.jpg", "absolute path"),
        ("C:/evil.jpg", "absolute path"),
        ("c:evil.jpg", "absolute path"),
        ("D:\\evil.jpg", "absolute path"),
    ],
)
def test_member_path_refuses_paths_that_leave_the_folder(name: str, message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        member_path(name)


def test_extracts_images_and_lists_what_it_skipped(tmp_path: Path) -> None:
    image = png_bytes()
    zip_path = make_zip(tmp_path / "upload.zip", {
        "photos/": b"",
        "photos/a.png": image,
        "photos/sub/B.PNG": image,
        "photos/notes.txt": b"hello",
        "__MACOSX/photos/._a.png": b"\x00\x05",
        "photos/.hidden.png": image,
        ".git/config.png": image,
    })
    out = tmp_path / "out"

    extracted = extract_images(zip_path, out)

    assert [p.relative_to(out).as_posix() for p in extracted.images] == ["photos/a.png", "photos/sub/B.PNG"]
    assert files_under(out) == ["photos/a.png", "photos/sub/B.PNG"]  # nothing but the images is written
    assert (out / "photos" / "a.png").read_bytes() == image
    reasons = {s.name: s.reason for s in extracted.skipped}
    assert reasons["photos/notes.txt"].startswith("not an image")
    assert reasons["__MACOSX/photos/._a.png"] == "macOS metadata (__MACOSX)"
    assert reasons["photos/.hidden.png"] == "hidden file"
    assert reasons[".git/config.png"] == "hidden file"
    assert "photos/" not in reasons  # folders are not "skipped files"


@pytest.mark.parametrize("evil", ["../evil.jpg", "ok/../../evil.jpg", "/tmp/evil.jpg", "C:\\evil.jpg"])
def test_an_unsafe_member_refuses_the_whole_zip_before_writing(tmp_path: Path, evil: str) -> None:
    zip_path = make_zip(tmp_path / "upload.zip", {"good.png": png_bytes(), evil: png_bytes()})
    out = tmp_path / "jobs" / "job" / "out"

    with pytest.raises(ArchiveError, match="refused|absolute path"):
        extract_images(zip_path, out)

    assert not out.exists() or files_under(out) == []
    assert not list(tmp_path.rglob("evil.jpg"))


def test_too_many_members_is_refused(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "many.zip", {f"{i}.png": b"x" for i in range(6)})
    with pytest.raises(ArchiveError, match="6 entries, over the cap of 5"):
        extract_images(zip_path, tmp_path / "out", ZipLimits(max_members=5))


def test_total_uncompressed_bytes_are_capped_across_members(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    # Incompressible data, so the ratio check stays quiet and only the total cap can fire.
    members = {f"{i}.bmp": rng.integers(0, 256, 400_000, dtype=np.uint8).tobytes() for i in range(3)}
    zip_path = make_zip(tmp_path / "big.zip", members)
    out = tmp_path / "out"

    with pytest.raises(ArchiveError, match="more than 1_000_000 bytes"):
        extract_images(zip_path, out, ZipLimits(max_total_bytes=1_000_000))
    assert not out.exists()  # the partial extraction is removed

    extracted = extract_images(zip_path, out, ZipLimits(max_total_bytes=1_300_000))
    assert len(extracted.images) == 3


def test_a_member_that_expands_like_a_bomb_is_refused(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "bomb.zip", {"bomb.bmp": bytes(30_000_000)})
    assert zipfile.ZipFile(zip_path).infolist()[0].compress_size < 100_000

    with pytest.raises(ArchiveError, match="zip bomb"):
        extract_images(zip_path, tmp_path / "out", ZipLimits(max_ratio=100))


def test_small_compressible_images_are_not_mistaken_for_bombs(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (500, 300), (255, 255, 255)).save(buffer, format="BMP")  # ~450 KB, compresses ~1000x
    zip_path = make_zip(tmp_path / "white.zip", {"white.bmp": buffer.getvalue()})

    extracted = extract_images(zip_path, tmp_path / "out", ZipLimits(max_ratio=10))

    assert [p.name for p in extracted.images] == ["white.bmp"]


def test_duplicate_names_keep_the_first(tmp_path: Path) -> None:
    zip_path = tmp_path / "dup.zip"
    with zipfile.ZipFile(zip_path, "w") as archive, pytest.warns(UserWarning, match="Duplicate name"):
        archive.writestr("a.png", png_bytes(colour=(1, 2, 3)))
        archive.writestr("a.png", png_bytes(colour=(9, 9, 9)))

    extracted = extract_images(zip_path, tmp_path / "out")

    assert len(extracted.images) == 1
    assert extracted.images[0].read_bytes() == png_bytes(colour=(1, 2, 3))
    assert extracted.skipped == [SkippedMember("a.png", "duplicate name (the first one was kept)")]


def test_symlink_members_are_skipped(tmp_path: Path) -> None:
    zip_path = tmp_path / "link.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        link = zipfile.ZipInfo("passwd.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("real.png", png_bytes())

    extracted = extract_images(zip_path, tmp_path / "out")

    assert [p.name for p in extracted.images] == ["real.png"]
    assert extracted.skipped == [SkippedMember("passwd.png", "symbolic link")]


def test_a_damaged_member_is_skipped_and_the_rest_extracted(tmp_path: Path) -> None:
    data = png_bytes((40, 40))
    zip_path = make_zip(tmp_path / "damaged.zip", {"bad.png": data, "good.png": data}, compression=zipfile.ZIP_STORED)
    raw = bytearray(zip_path.read_bytes())
    first = raw.index(data)  # the stored bytes of bad.png; changing one breaks its CRC
    raw[first + 20] ^= 0xFF
    zip_path.write_bytes(bytes(raw))

    extracted = extract_images(zip_path, tmp_path / "out")

    assert [p.name for p in extracted.images] == ["good.png"]
    assert extracted.skipped[0].name == "bad.png" and extracted.skipped[0].reason.startswith("unreadable")
    assert not (tmp_path / "out" / "bad.png").exists()


def test_not_a_zip_is_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "photos.zip"
    fake.write_bytes(b"this is not a zip")
    with pytest.raises(ArchiveError, match="Cannot open photos.zip as a zip archive"):
        extract_images(fake, tmp_path / "out")


def test_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "a.zip", {"a.png": png_bytes()})
    out = tmp_path / "out"
    out.mkdir()
    (out / "other.txt").write_text("x")
    with pytest.raises(ArchiveError, match="not empty"):
        extract_images(zip_path, out)


@pytest.mark.parametrize("kwargs", [{"max_members": 0}, {"max_total_bytes": 0}, {"max_ratio": 1.0}])
def test_zip_limits_are_validated(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="ZipLimits need"):
        ZipLimits(**kwargs)


def test_write_zip_holds_every_file_by_relative_path(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    (folder / "labels").mkdir(parents=True)
    (folder / "overlays").mkdir()
    (folder / "labels" / "a.json").write_text('{"a": 1}')
    (folder / "overlays" / "a.png").write_bytes(png_bytes())
    (folder / "summary.json").write_text("{}")

    zip_path = write_zip(folder, folder / "results.zip")  # inside the folder: must not include itself

    with zipfile.ZipFile(zip_path) as archive:
        assert archive.namelist() == ["labels/a.json", "overlays/a.png", "summary.json"]
        assert archive.getinfo("overlays/a.png").compress_type == zipfile.ZIP_STORED
        assert archive.getinfo("labels/a.json").compress_type == zipfile.ZIP_DEFLATED
        assert archive.read("labels/a.json") == b'{"a": 1}'
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]
