"""Tests for grounded_sam.inputs.images: sources, modes, orientation, damaged files and size caps."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grounded_sam.errors import ImageLoadError
from grounded_sam.inputs.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    MAX_PIXELS_ENV_VAR,
    default_max_pixels,
    is_image_path,
    load_image,
)

WHITE = (255, 255, 255)


@pytest.fixture(autouse=True)
def _no_env_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep a developer's GROUNDED_SAM_MAX_PIXELS from leaking into the tests."""
    monkeypatch.delenv(MAX_PIXELS_ENV_VAR, raising=False)


def assert_rgb(out: np.ndarray, shape: tuple[int, int] | None = None) -> None:
    """Check the output contract: (H, W, 3) uint8, C-contiguous, writeable."""
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.uint8
    assert out.ndim == 3 and out.shape[2] == 3
    assert out.flags.c_contiguous and out.flags.writeable
    if shape is not None:
        assert out.shape[:2] == shape


def encode(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height, followed by almost no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + _png_chunk(b"IEND", b"")
    )


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# Modes


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("RGB", (10, 20, 30), (10, 20, 30)),
        ("CMYK", (255, 0, 0, 0), (0, 255, 255)),  # pure cyan
        ("CMYK", (0, 255, 0, 0), (255, 0, 255)),  # pure magenta
        ("CMYK", (0, 0, 0, 255), (0, 0, 0)),
        ("L", 77, (77, 77, 77)),
        ("1", 1, (255, 255, 255)),
        ("1", 0, (0, 0, 0)),
        ("RGBA", (10, 20, 30, 0), WHITE),  # fully transparent -> background
        ("RGBA", (10, 20, 30, 255), (10, 20, 30)),
        ("RGBA", (0, 0, 0, 128), (127, 127, 127)),  # half black over white
        ("LA", (100, 0), WHITE),
        ("LA", (100, 255), (100, 100, 100)),
        ("RGBa", (50, 25, 0, 255), (50, 25, 0)),
        ("RGBa", (0, 0, 0, 0), WHITE),
        ("La", (100, 255), (100, 100, 100)),
        ("I;16", 65535, (255, 255, 255)),
        ("I;16", 32768, (128, 128, 128)),
        ("I;16", 255, (0, 0, 0)),  # 16-bit data is scaled, not clipped at 255
        ("I;16B", 65535, (255, 255, 255)),
        ("I;16L", 32768, (128, 128, 128)),
        ("I", 65535, (255, 255, 255)),
        ("I", 32768, (128, 128, 128)),
        ("I", 70000, (255, 255, 255)),  # 32-bit "I" is clipped to the 16-bit range
        ("I", -5, (0, 0, 0)),
        ("F", 12.4, (12, 12, 12)),
        ("F", 300.0, (255, 255, 255)),
        ("F", -3.0, (0, 0, 0)),
        ("YCbCr", (255, 128, 128), (255, 255, 255)),
        ("YCbCr", (0, 128, 128), (0, 0, 0)),
        ("HSV", (0, 255, 255), (255, 0, 0)),
        ("HSV", (85, 255, 255), (0, 255, 0)),
    ],
)
def test_mode_converts_to_exact_rgb(
    mode: str, value: object, expected: tuple[int, int, int]
) -> None:
    out = load_image(Image.new(mode, (3, 2), value))
    assert_rgb(out, (2, 3))
    assert (out == expected).all(), out[0, 0]


@pytest.mark.parametrize(
    ("value", "expected"), [((255, 128, 128), WHITE), ((0, 128, 128), (0, 0, 0))]
)
def test_lab_uses_pils_conversion(value: tuple[int, int, int], expected: tuple[int, ...]) -> None:
    out = load_image(Image.new("LAB", (2, 2), value))
    assert_rgb(out, (2, 2))
    assert np.abs(out.astype(int) - expected).max() <= 2


def _palette_image(transparent_index: int | None) -> Image.Image:
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 255, 0])  # index 0 red, index 1 green
    img.putpixel((1, 0), 1)
    if transparent_index is not None:
        img.info["transparency"] = transparent_index
    return img


@pytest.mark.parametrize("via_file", [False, True])
@pytest.mark.parametrize(
    ("transparent_index", "expected"),
    [
        (None, [(255, 0, 0), (0, 255, 0)]),
        (1, [(255, 0, 0), (0, 0, 255)]),  # green is transparent -> blue background
    ],
)
def test_palette_with_and_without_transparency(
    tmp_path: Path, via_file: bool, transparent_index: int | None, expected: list[tuple[int, ...]]
) -> None:
    img = _palette_image(transparent_index)
    if via_file:
        path = tmp_path / "palette.png"
        extra = {} if transparent_index is None else {"transparency": transparent_index}
        img.save(path, **extra)
        with Image.open(path) as check:
            assert check.mode == "P"
        source: object = path
    else:
        source = img
    out = load_image(source, background=(0, 0, 255))
    assert_rgb(out, (1, 2))
    assert [tuple(px) for px in out[0]] == expected


def test_palette_alpha_mode_pa() -> None:
    pa = _palette_image(None).convert("PA")
    pa.putpixel((1, 0), (1, 0))  # green, fully transparent
    out = load_image(pa, background=(9, 9, 9))
    assert [tuple(px) for px in out[0]] == [(255, 0, 0), (9, 9, 9)]


def test_gray_with_transparency_entry_is_composited() -> None:
    img = Image.new("L", (2, 1), 10)
    img.putpixel((1, 0), 200)
    img.info["transparency"] = 10
    out = load_image(img, background=(1, 2, 3))
    assert [tuple(px) for px in out[0]] == [(1, 2, 3), (200, 200, 200)]


@pytest.mark.parametrize(
    ("mode", "value", "fmt", "expected"),
    [
        ("I;16", 65535, "PNG", (255, 255, 255)),
        ("I;16", 32768, "PNG", (128, 128, 128)),
        ("I;16", 32768, "TIFF", (128, 128, 128)),
        ("CMYK", (255, 0, 0, 0), "TIFF", (0, 255, 255)),
        ("LA", (100, 0), "PNG", WHITE),
        ("1", 1, "PNG", (255, 255, 255)),
        ("RGBA", (10, 20, 30, 0), "WEBP", WHITE),
        ("F", 77.0, "TIFF", (77, 77, 77)),
    ],
)
def test_modes_survive_a_file_round_trip(
    tmp_path: Path, mode: str, value: object, fmt: str, expected: tuple[int, ...]
) -> None:
    path = tmp_path / f"img.{fmt.lower()}"
    Image.new(mode, (4, 3), value).save(path, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    out = load_image(path)
    assert_rgb(out, (3, 4))
    assert (out == expected).all(), out[0, 0]


def test_cmyk_jpeg_is_close_to_cyan(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(path, quality=95)
    out = load_image(path)
    assert np.abs(out.astype(int) - (0, 255, 255)).max() <= 3


def test_background_colour_is_used() -> None:
    out = load_image(Image.new("RGBA", (1, 1), (0, 0, 0, 0)), background=(0, 128, 255))
    assert tuple(out[0, 0]) == (0, 128, 255)


# --------------------------------------------------------------------------------------------
# EXIF orientation and frames


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize(("orientation", "k"), [(6, -1), (8, 1)])  # 6: 90 deg CW, 8: 90 deg CCW
def test_exif_orientation_makes_the_image_upright(
    tmp_path: Path, fmt: str, orientation: int, k: int
) -> None:
    stored = np.zeros((32, 64, 3), dtype=np.uint8)
    stored[:, :] = (0, 0, 255)
    stored[:16, :16] = (255, 0, 0)  # red top-left corner block
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"rotated.{fmt.lower()}"
    img.save(path, fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))

    out = load_image(path)
    upright = np.rot90(stored, k=k)
    assert_rgb(out, (64, 32))  # transposed
    if fmt == "PNG":
        np.testing.assert_array_equal(out, upright)
    # The red block's centre lands where the rotated image has it.
    red_rows, red_cols = np.nonzero((upright == (255, 0, 0)).all(axis=2))
    centre = out[int(red_rows.mean()), int(red_cols.mean())].astype(int)
    assert np.abs(centre - (255, 0, 0)).max() <= 10


def test_exif_orientation_applies_to_pil_sources_without_mutating_them() -> None:
    img = Image.new("RGB", (4, 2))
    exif = img.getexif()
    exif[0x0112] = 6
    img = Image.open(io.BytesIO(encode(img, "PNG", exif=exif)))
    out = load_image(img)
    assert out.shape == (4, 2, 3)
    assert img.size == (4, 2)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_multi_frame_uses_the_first_frame(tmp_path: Path, fmt: str) -> None:
    frames = [Image.new("RGB", (4, 4), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    path = tmp_path / f"frames.{fmt.lower()}"
    frames[0].save(path, fmt, save_all=True, append_images=frames[1:])
    with Image.open(path) as check:
        assert check.n_frames == 2
    assert (load_image(path) == (255, 0, 0)).all()


# --------------------------------------------------------------------------------------------
# Sources


def test_bytes_file_like_and_path_agree(tmp_path: Path) -> None:
    data = noise(5, 7)
    png = encode(Image.fromarray(data), "PNG")
    path = tmp_path / "noise.png"
    path.write_bytes(png)

    class ReadOnlyStream:  # no seek(): PIL must buffer it
        def __init__(self, payload: bytes) -> None:
            self._buf = io.BytesIO(payload)

        def read(self, size: int = -1) -> bytes:
            return self._buf.read(size)

    with path.open("rb") as handle:
        from_handle = load_image(handle)
        assert not handle.closed
    sources = [
        path, str(path), png, bytearray(png), memoryview(png), io.BytesIO(png), ReadOnlyStream(png)
    ]
    for source in sources:
        np.testing.assert_array_equal(load_image(source), data)
    np.testing.assert_array_equal(from_handle, data)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (np.full((2, 3), 9, np.uint8), (9, 9, 9)),
        (np.full((2, 3, 1), 9, np.uint8), (9, 9, 9)),
        (np.full((2, 3, 3), (1, 2, 3), np.uint8), (1, 2, 3)),
        (np.full((2, 3, 4), (1, 2, 3, 0), np.uint8), WHITE),
        (np.full((2, 3, 4), (1, 2, 3, 255), np.uint8), (1, 2, 3)),
        (np.full((2, 3), 65535, np.uint16), (255, 255, 255)),
        (np.full((2, 3, 3), 32768, np.uint16), (128, 128, 128)),
        (np.ones((2, 3), bool), (255, 255, 255)),
        (np.zeros((2, 3), bool), (0, 0, 0)),
        (np.full((2, 3), 0.5, np.float32), (128, 128, 128)),
        (np.full((2, 3, 3), 1.0, np.float64), (255, 255, 255)),
        (np.full((2, 3, 4), (1.0, 0.0, 0.0, 0.0), np.float32), WHITE),
        (np.full((2, 3), 200, np.int64), (200, 200, 200)),
    ],
    ids=lambda v: f"{v.dtype}{v.shape}" if isinstance(v, np.ndarray) else str(v),
)
def test_numpy_sources(source: np.ndarray, expected: tuple[int, ...]) -> None:
    out = load_image(source)
    assert_rgb(out, (2, 3))
    assert (out == expected).all(), out[0, 0]
    assert not np.may_share_memory(out, source)


def test_numpy_non_contiguous_view_becomes_contiguous() -> None:
    rgb = noise(4, 6)
    bgr_view = rgb[:, :, ::-1]
    out = load_image(bgr_view)
    assert_rgb(out, (4, 6))
    np.testing.assert_array_equal(out, bgr_view)


@pytest.mark.parametrize(
    ("source", "match"),
    [
        (np.zeros((2, 3, 2), np.uint8), r"shape \(2, 3, 2\)"),
        (np.zeros((1, 2, 3, 3), np.uint8), "expected shape"),
        (np.zeros((0, 3, 3), np.uint8), "no pixels"),
        (np.full((2, 2), 2.0, np.float32), r"\[0, 1\]"),
        (np.full((2, 2), -0.5, np.float32), r"\[0, 1\]"),
        (np.full((2, 2), np.nan, np.float32), "NaN"),
        (np.full((2, 2), 300, np.int32), "0..255"),
        (np.zeros((2, 2), np.complex64), "unsupported dtype"),
    ],
)
def test_bad_numpy_sources(source: np.ndarray, match: str) -> None:
    with pytest.raises(ImageLoadError, match=match) as info:
        load_image(source)
    assert "<array>" in str(info.value)


def test_unsupported_source_types() -> None:
    with pytest.raises(TypeError, match="int"):
        load_image(42)  # type: ignore[arg-type]
    with pytest.raises(ImageLoadError, match="No image was given"):
        load_image(None)  # type: ignore[arg-type]
    with pytest.raises(ImageLoadError, match="URL"):
        load_image("https://example.com/cat.jpg")


def test_text_mode_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "img.png"
    Image.new("RGB", (2, 2)).save(path)
    with path.open("r", encoding="latin-1") as handle, pytest.raises(ImageLoadError, match="'rb'"):
        load_image(handle)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_pixels": 0}, "max_pixels"),
        ({"max_pixels": -1}, "max_pixels"),
        ({"max_pixels": True}, "max_pixels"),
        ({"max_pixels": 1.5}, "max_pixels"),
        ({"background": (0, 0)}, "background"),
        ({"background": (0, 0, 256)}, "background"),
        ({"background": "white"}, "background"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_image(np.zeros((2, 2), np.uint8), **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Damaged and non-image files


def _truncated(fmt: str) -> bytes:
    data = encode(Image.fromarray(noise(64, 64)), fmt)
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("cut.jpg", lambda: _truncated("JPEG"), "truncated"),
        ("cut.png", lambda: _truncated("PNG"), "truncated"),
        ("random.jpg", lambda: np.random.default_rng(1).bytes(4096), "not in an image format"),
        ("notes.txt", lambda: b"just some text\n", r"not an image .*'\.txt'"),
        ("empty.png", lambda: b"", "empty"),
    ],
)
def test_damaged_or_non_image_files(tmp_path: Path, name: str, content, match: str) -> None:
    path = tmp_path / name
    path.write_bytes(content())
    with pytest.raises(ImageLoadError, match=match) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_truncated_bytes_name_the_source() -> None:
    with pytest.raises(ImageLoadError, match="<bytes>.*truncated"):
        load_image(_truncated("JPEG"))
    with pytest.raises(ImageLoadError, match="<upload>.*truncated"):
        load_image(io.BytesIO(_truncated("PNG")))


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImageLoadError, match="no such file") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="directory") as info:
        load_image(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_truncation_setting_is_left_alone() -> None:
    from PIL import ImageFile

    before = ImageFile.LOAD_TRUNCATED_IMAGES
    with pytest.raises(ImageLoadError):
        load_image(_truncated("JPEG"))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is before is False


# --------------------------------------------------------------------------------------------
# Size caps


def test_max_pixels_rejects_large_images(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("L", (2000, 2000)).save(path)
    with pytest.raises(ImageLoadError) as info:
        load_image(path, max_pixels=1_000_000)
    message = str(info.value)
    needed_parts = ["2000x2000", "4_000_000", "1_000_000", MAX_PIXELS_ENV_VAR, "max_pixels"]
    for needed in [*needed_parts, str(path)]:
        assert needed in message
    assert load_image(path, max_pixels=4_000_000).shape == (2000, 2000, 3)
    assert load_image(path, max_pixels=None).shape == (2000, 2000, 3)


def test_max_pixels_is_checked_before_decoding() -> None:
    # A header claiming 5000x5000 with no pixel data at all: decoding would fail as truncated,
    # so a cap message proves the check ran on the header alone.
    header = png_header_only(5000, 5000)
    with pytest.raises(ImageLoadError, match="over the cap"):
        load_image(header, max_pixels=1_000_000)
    with pytest.raises(ImageLoadError, match="truncated|corrupt"):
        load_image(header)


def test_max_pixels_applies_to_arrays_and_pil_images() -> None:
    with pytest.raises(ImageLoadError, match="over the cap"):
        load_image(np.zeros((20, 20), np.uint8), max_pixels=399)
    with pytest.raises(ImageLoadError, match="over the cap"):
        load_image(Image.new("RGB", (20, 20)), max_pixels=399)


def test_pillow_soft_bomb_warning_is_not_leaked_nor_fatal() -> None:
    # 12000 x 8000 = 96 MP: above Pillow's warning threshold (~89.5 MP), below our 100 MP default.
    header = png_header_only(12_000, 8_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageLoadError, match="truncated|corrupt"):
            load_image(header)


def test_pillow_hard_bomb_limit_becomes_image_load_error() -> None:
    header = png_header_only(20_000, 20_000)  # 400 MP > 2 * PIL.Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageLoadError, match="decompression bomb") as info:
        load_image(header, max_pixels=None)
    assert "<bytes>" in str(info.value)
    with pytest.raises(ImageLoadError, match="over the cap|decompression bomb"):
        load_image(header)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, DEFAULT_MAX_PIXELS),
        ("", DEFAULT_MAX_PIXELS),
        ("5000", 5000),
        ("200_000_000", 200_000_000),
        (" none ", None),
        ("0", None),
    ],
)
def test_default_max_pixels_reads_env(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: int | None
) -> None:
    if value is not None:
        monkeypatch.setenv(MAX_PIXELS_ENV_VAR, value)
    assert default_max_pixels() == expected


@pytest.mark.parametrize("value", ["lots", "-5", "1e6"])
def test_default_max_pixels_rejects_bad_env(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(MAX_PIXELS_ENV_VAR, value)
    with pytest.raises(ImageLoadError, match=MAX_PIXELS_ENV_VAR):
        default_max_pixels()


def test_env_var_cap_is_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    img = np.zeros((100, 100), np.uint8)  # 10_000 pixels
    assert load_image(img).shape == (100, 100, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV_VAR, "1000")
    with pytest.raises(ImageLoadError, match="1_000"):
        load_image(img)
    assert load_image(img, max_pixels=10_000).shape == (100, 100, 3)  # argument wins
    monkeypatch.setenv(MAX_PIXELS_ENV_VAR, "none")
    assert load_image(img).shape == (100, 100, 3)


# --------------------------------------------------------------------------------------------
# Paths


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a.jpg", True),
        ("a.JPG", True),
        ("dir/a.Jpeg", True),
        ("a.png", True),
        ("a.bmp", True),
        ("a.webp", True),
        ("a.tif", True),
        ("a.Tiff", True),
        (Path("x") / "b.PNG", True),
        ("a.txt", False),
        ("a.gif", False),
        ("jpg", False),
        ("a.jpg.zip", False),
    ],
)
def test_is_image_path(path: str | Path, expected: bool) -> None:
    assert is_image_path(path) is expected


def test_image_extensions_are_lower_case_suffixes() -> None:
    assert isinstance(IMAGE_EXTENSIONS, frozenset)
    assert IMAGE_EXTENSIONS == {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


# --------------------------------------------------------------------------------------------
# Real photos


@pytest.mark.parametrize("name", ["truck.jpg", "groceries.jpg", "cars.jpg"])
def test_real_photos(name: str, photos: Path) -> None:
    path = photos / name
    out = load_image(path)
    with Image.open(path) as img:
        width, height = img.size
    assert_rgb(out)
    assert sorted(out.shape[:2]) == sorted((height, width))
    assert out.std() > 0
