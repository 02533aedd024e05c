"""Turn an image source into an upright 8-bit RGB numpy array.

This module has one job: whatever arrives (a path, raw bytes, an open binary file, a PIL image or
a numpy array), :func:`load_image` returns an ``(H, W, 3)`` ``uint8`` array in **RGB** order,
C-contiguous and writeable, with EXIF orientation applied, so the rest of the pipeline never has
to think about modes, bit depths, alpha or rotation again.

Anything that cannot become such an array raises :class:`~grounded_sam.errors.ImageLoadError`,
whose message names the source, says what went wrong and, where there is one, how to fix it.

Example:
    >>> rgb = load_image("photo.jpg")            # doctest: +SKIP
    >>> rgb.shape, rgb.dtype                      # doctest: +SKIP
    ((1200, 1800, 3), dtype('uint8'))
"""

from __future__ import annotations

import io
import logging
import numbers
import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO, Literal, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from grounded_sam.errors import ImageLoadError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS_ENV_VAR",
    "ImageSource",
    "default_max_pixels",
    "is_image_path",
    "load_image",
]

logger = logging.getLogger(__name__)

#: Built-in cap on ``width * height``; a guard against decompression bombs (100 megapixels).
DEFAULT_MAX_PIXELS: int = 100_000_000

#: Environment variable that overrides :data:`DEFAULT_MAX_PIXELS` (read at call time).
MAX_PIXELS_ENV_VAR: str = "GROUNDED_SAM_MAX_PIXELS"

#: Lower-case file suffixes treated as images when scanning folders or archives.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
)

#: Everything :func:`load_image` accepts.
ImageSource = Union[
    str, os.PathLike[str], bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray
]

# Errors PIL (or the codecs under it) raise while decoding damaged data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)

# Modes that carry an alpha channel; they are composited over the background.
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})

_FIX_DAMAGED = "Re-download or re-export the file (for example save it again as PNG or JPEG)."


def is_image_path(path: str | os.PathLike[str]) -> bool:
    """Tell whether a path has an image suffix from :data:`IMAGE_EXTENSIONS`.

    Only the name is checked (any letter case, so ``.JPG`` and ``.Tiff`` count); the file is
    neither opened nor required to exist.

    Args:
        path: A file name or path.

    Returns:
        True if the suffix, lower-cased, is in :data:`IMAGE_EXTENSIONS`.
    """
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def default_max_pixels() -> int | None:
    """Return the pixel cap used when :func:`load_image` is not given ``max_pixels``.

    Reads the environment variable ``GROUNDED_SAM_MAX_PIXELS`` now (not at import), so it can be
    changed while the process runs. A positive integer (``_`` separators allowed, e.g.
    ``200_000_000``) sets the cap; ``none`` or ``0`` turns the check off. Unset or empty means
    :data:`DEFAULT_MAX_PIXELS`.

    Returns:
        The cap in pixels (``width * height``), or None for no cap.

    Raises:
        ImageLoadError: The variable is set to something that is not a non-negative integer
            or ``none``.
    """
    raw = os.environ.get(MAX_PIXELS_ENV_VAR, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    if raw.lower() == "none":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ImageLoadError(
            f"{MAX_PIXELS_ENV_VAR} must be a positive integer number of pixels (e.g. 200_000_000), "
            f"or 'none'/'0' to turn the cap off, but got {raw!r}."
        )
    return value or None


def load_image(
    source: ImageSource,
    *,
    max_pixels: int | None | Literal["default"] = "default",
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Load an image source as an upright 8-bit RGB array.

    Accepted sources:

    * a path (``str`` or ``os.PathLike``; ``~`` is expanded);
    * raw encoded bytes (``bytes``, ``bytearray``, ``memoryview``);
    * a binary file-like object (opened with ``"rb"``; it is read but not closed);
    * a ``PIL.Image.Image`` (its current frame; the object is not modified);
    * a numpy array of shape ``(H, W)`` or ``(H, W, 1)`` (gray), ``(H, W, 3)`` (RGB, not BGR) or
      ``(H, W, 4)`` (RGBA) with dtype ``uint8``, ``uint16`` (scaled by ``>> 8``), ``bool``
      (False/True -> 0/255), float in ``[0, 1]`` (times 255, rounded), or another integer dtype
      whose values all lie in ``0..255``.

    Decoded files are fully loaded (a truncated file is an error, as long as the process has not
    set ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``), rotated upright from their EXIF orientation,
    and for multi-frame files (GIF, multi-page TIFF) the first frame is used. Every PIL mode is
    converted to RGB: alpha (RGBA, LA, PA, premultiplied RGBa/La, palette or gray with a
    ``transparency`` entry) is composited over ``background``; 16-bit gray (``I;16*`` and ``I``)
    keeps its full range (``value >> 8``, so 65535 -> 255 and 32768 -> 128) with ``I`` clipped to
    ``0..65535`` first; float mode ``F`` is clipped to ``0..255``; CMYK, YCbCr, LAB and HSV use
    PIL's conversions.

    Args:
        source: The image, as one of the types above.
        max_pixels: Largest accepted ``width * height``. The check runs on the header, before any
            pixel data is decoded. ``"default"`` means :func:`default_max_pixels` (100 megapixels
            unless ``GROUNDED_SAM_MAX_PIXELS`` says otherwise); None turns the check off (Pillow's
            own hard limit of ``2 * PIL.Image.MAX_IMAGE_PIXELS`` still applies to files).
        background: RGB colour, 0..255 each, that transparent pixels are composited over.
            White by default.

    Returns:
        A new, writeable, C-contiguous ``np.ndarray`` of shape ``(H, W, 3)``, dtype ``uint8``,
        channels in RGB order, ``H``/``W`` being the upright (EXIF-rotated) size.

    Raises:
        ImageLoadError: The source is missing, a directory, not an image, truncated or corrupt,
            larger than ``max_pixels``, or an array of an unsupported shape, dtype or range.
        TypeError: ``source`` is of a type not listed above.
        ValueError: ``max_pixels`` or ``background`` is malformed.
    """
    cap = default_max_pixels() if max_pixels == "default" else _check_max_pixels(max_pixels)
    bg = _check_background(background)

    if source is None:
        raise ImageLoadError(
            "No image was given: pass a path, bytes, a binary file, a PIL image or an array."
        )
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source, name="<array>", max_pixels=cap, background=bg)
    if isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or "<PIL image>"
        return _pil_to_rgb(source, name=name, max_pixels=cap, background=bg)
    if isinstance(source, (str, os.PathLike)):
        path = _check_path(source)
        return _open_and_convert(path, name=str(path), max_pixels=cap, background=bg)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageLoadError("Cannot load image <bytes>: the data is empty (0 bytes).")
        return _open_and_convert(io.BytesIO(source), name="<bytes>", max_pixels=cap, background=bg)
    if isinstance(source, io.TextIOBase):
        raise ImageLoadError(
            f"Cannot load image {_stream_name(source)}: the file was opened in text mode; "
            "open it with mode 'rb'."
        )
    if callable(getattr(source, "read", None)):
        return _open_and_convert(
            source, name=_stream_name(source), max_pixels=cap, background=bg
        )
    raise TypeError(
        "load_image expects a path (str or os.PathLike), bytes, a binary file object, a "
        f"PIL.Image.Image or a numpy array, but got {type(source).__name__}."
    )


# --------------------------------------------------------------------------------------------
# Argument checks


def _check_max_pixels(max_pixels: object) -> int | None:
    if max_pixels is None:
        return None
    is_int = isinstance(max_pixels, numbers.Integral) and not isinstance(max_pixels, bool)
    if not is_int or max_pixels <= 0:  # type: ignore[operator]
        raise ValueError(
            "max_pixels must be a positive int, None (no cap) or 'default', "
            f"but got {max_pixels!r}."
        )
    return int(max_pixels)


def _check_background(background: object) -> np.ndarray:
    try:
        values = tuple(background)  # type: ignore[call-overload]
    except TypeError:
        values = ()
    def is_channel(v: object) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 <= v <= 255

    if len(values) != 3 or not all(is_channel(v) for v in values):
        raise ValueError(
            "background must be an (R, G, B) tuple of three ints in 0..255, "
            f"but got {background!r}."
        )
    return np.array(values, dtype=np.uint16)


def _check_path(source: str | os.PathLike[str]) -> Path:
    text = os.fspath(source)
    if isinstance(text, str) and text.startswith(("http://", "https://")):
        raise ImageLoadError(
            f"Cannot load image {text}: URLs are not fetched; download the file and pass its path."
        )
    path = Path(text).expanduser()
    if not path.exists():
        hint = "" if path.is_absolute() else f" (relative paths resolve from {Path.cwd()})"
        raise ImageLoadError(f"Cannot load image {path}: no such file. Check the path{hint}.")
    if path.is_dir():
        raise ImageLoadError(
            f"Cannot load image {path}: it is a directory; pass a single image file."
        )
    return path


def _stream_name(stream: object) -> str:
    name = getattr(stream, "name", None)
    return os.fspath(name) if isinstance(name, (str, os.PathLike)) else "<upload>"


# --------------------------------------------------------------------------------------------
# Decoding


def _open_and_convert(
    fp: Path | BinaryIO, *, name: str, max_pixels: int | None, background: np.ndarray
) -> np.ndarray:
    """Open an encoded image (path or binary stream) and convert it; see :func:`load_image`."""
    # Our own max_pixels check below is the policy; silence Pillow's softer warning (it fires
    # at ~89 MP, below our 100 MP default) in this scope only. Its hard error is still mapped.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(fp)
        except UnidentifiedImageError as exc:
            raise ImageLoadError(_not_an_image_message(fp, name)) from exc
        except Image.DecompressionBombError as exc:
            raise ImageLoadError(_pil_bomb_message(name, exc)) from exc
        except PermissionError as exc:
            raise ImageLoadError(
                f"Cannot load image {name}: permission denied. Check the file's permissions."
            ) from exc
        except _DECODE_ERRORS as exc:
            raise ImageLoadError(
                f"Cannot load image {name}: the file is corrupt (Pillow: {exc}). {_FIX_DAMAGED}"
            ) from exc
        with img:
            return _pil_to_rgb(img, name=name, max_pixels=max_pixels, background=background)


def _pil_to_rgb(
    img: Image.Image, *, name: str, max_pixels: int | None, background: np.ndarray
) -> np.ndarray:
    """Check size, fully decode, rotate upright and convert a PIL image to RGB uint8."""
    _check_size(img.size, name=name, max_pixels=max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img.load()
        except Image.DecompressionBombError as exc:
            raise ImageLoadError(_pil_bomb_message(name, exc)) from exc
        except _DECODE_ERRORS as exc:
            what = "truncated" if "truncated" in str(exc).lower() else "corrupt"
            raise ImageLoadError(
                f"Cannot load image {name}: the file is {what} (Pillow: {exc}). {_FIX_DAMAGED}"
            ) from exc
    mode_in = img.mode
    img = _upright(img, name)
    rgb = _mode_to_rgb(img, name=name, background=background)
    logger.debug("Loaded %s: %dx%d, mode %s -> RGB", name, rgb.shape[1], rgb.shape[0], mode_in)
    return rgb


def _check_size(size: tuple[int, int], *, name: str, max_pixels: int | None) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"Cannot load image {name}: it has no pixels ({width}x{height}).")
    pixels = width * height
    if max_pixels is not None and pixels > max_pixels:
        raise ImageLoadError(
            f"Cannot load image {name}: it is {width}x{height} = {pixels:_} pixels, over the cap "
            f"of {max_pixels:_} pixels (a guard against decompression bombs). If you trust the "
            f"file, raise the cap with load_image(..., max_pixels={pixels:_}) or the environment "
            f"variable {MAX_PIXELS_ENV_VAR}={pixels:_}; max_pixels=None or "
            f"{MAX_PIXELS_ENV_VAR}=none turns it off."
        )


def _pil_bomb_message(name: str, exc: Exception) -> str:
    return (
        f"Cannot load image {name}: Pillow refused it as a possible decompression bomb ({exc}). "
        "This is Pillow's own hard limit (2 * PIL.Image.MAX_IMAGE_PIXELS), which max_pixels does "
        "not override; downscale the image, or raise PIL.Image.MAX_IMAGE_PIXELS in your "
        "application if you trust the file."
    )


def _not_an_image_message(fp: Path | BinaryIO, name: str) -> str:
    if isinstance(fp, Path):
        if fp.stat().st_size == 0:
            return f"Cannot load image {name}: the file is empty (0 bytes)."
        if not is_image_path(fp):
            return (
                f"Cannot load image {name}: it is not an image Pillow can read (suffix "
                f"{fp.suffix or '(none)'!r}; expected one of "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))})."
            )
    return (
        f"Cannot load image {name}: the data is not in an image format Pillow can read, or is "
        f"corrupt. {_FIX_DAMAGED}"
    )


def _upright(img: Image.Image, name: str) -> Image.Image:
    """Apply the EXIF orientation tag; a malformed EXIF block is logged and ignored."""
    try:
        return ImageOps.exif_transpose(img)
    except _DECODE_ERRORS as exc:
        logger.warning("Ignoring unreadable EXIF orientation in %s: %s", name, exc)
        return img


def _mode_to_rgb(img: Image.Image, *, name: str, background: np.ndarray) -> np.ndarray:
    """Convert a loaded PIL image of any mode to a new (H, W, 3) uint8 RGB array."""
    mode = img.mode
    if mode == "RGB":
        return np.ascontiguousarray(np.array(img, dtype=np.uint8))
    if mode == "I" or mode.startswith("I;16"):
        data = np.asarray(img)
        if data.dtype.kind == "u" and data.dtype.itemsize == 2:
            gray = (data >> 8).astype(np.uint8)
        else:  # 32-bit "I" (or signed 16-bit): treat as 16-bit data.
            gray = (np.clip(data, 0, 65535) >> 8).astype(np.uint8)
        return _gray_to_rgb(gray)
    if mode == "F":
        data = np.nan_to_num(np.asarray(img, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        return _gray_to_rgb(np.rint(np.clip(data, 0.0, 255.0)).astype(np.uint8))
    if mode in _ALPHA_MODES or "transparency" in img.info:
        if mode == "La":  # PIL has no direct La -> RGBA conversion.
            img = img.convert("LA")
        rgba = np.asarray(img.convert("RGBA"))
        return _composite(rgba, background)
    try:
        return np.ascontiguousarray(np.array(img.convert("RGB"), dtype=np.uint8))
    except ValueError as exc:
        raise ImageLoadError(
            f"Cannot load image {name}: Pillow cannot convert its mode {mode!r} to RGB ({exc}). "
            "Save it as an 8-bit RGB PNG or JPEG."
        ) from exc


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _composite(rgba: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Blend an (H, W, 4) uint8 RGBA array over an RGB background; returns (H, W, 3) uint8."""
    rgb = rgba[:, :, :3].astype(np.uint16)
    alpha = rgba[:, :, 3:4].astype(np.uint16)
    # Max 255*255 + 127 fits in uint16; +127 rounds to nearest.
    out = (rgb * alpha + background * (255 - alpha) + 127) // 255
    return np.ascontiguousarray(out.astype(np.uint8))


# --------------------------------------------------------------------------------------------
# Numpy sources


def _array_to_rgb(
    arr: np.ndarray, *, name: str, max_pixels: int | None, background: np.ndarray
) -> np.ndarray:
    """Convert a numpy image to a new (H, W, 3) uint8 RGB array; see :func:`load_image`."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ImageLoadError(
            f"Cannot load image {name}: expected shape (H, W), (H, W, 1), (H, W, 3) RGB or "
            f"(H, W, 4) RGBA, but got shape {arr.shape}."
        )
    height, width = arr.shape[:2]
    _check_size((width, height), name=name, max_pixels=max_pixels)
    data = _array_to_uint8(arr, name)
    if data.ndim == 2:
        out = _gray_to_rgb(data)
    elif data.shape[2] == 4:
        out = _composite(data, background)
    else:
        out = np.ascontiguousarray(data)
    if np.may_share_memory(out, arr):  # never hand back (a view of) the caller's array
        out = out.copy()
    return out


def _array_to_uint8(arr: np.ndarray, name: str) -> np.ndarray:
    """Scale an array of any supported dtype to uint8, same shape."""
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return arr
    if kind == "b":
        return arr.astype(np.uint8) * np.uint8(255)
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)
    if kind == "f":
        if not np.isfinite(arr).all():
            raise ImageLoadError(
                f"Cannot load image {name}: the float array contains NaN or infinity."
            )
        low, high = float(arr.min()), float(arr.max())
        if low < 0.0 or high > 1.0:
            raise ImageLoadError(
                f"Cannot load image {name}: float arrays must hold values in [0, 1], but this one "
                f"({arr.dtype}) spans [{low:g}, {high:g}]. Divide 0..255 data by 255, or pass "
                "uint8."
            )
        return np.rint(arr.astype(np.float32) * 255.0).astype(np.uint8)
    if kind in "iu":
        low, high = int(arr.min()), int(arr.max())
        if low >= 0 and high <= 255:
            return arr.astype(np.uint8)
        raise ImageLoadError(
            f"Cannot load image {name}: an integer array of dtype {arr.dtype} must hold values in "
            f"0..255, but this one spans [{low}, {high}]. Pass uint8, uint16 (full 16-bit range), "
            "bool, or float in [0, 1]."
        )
    raise ImageLoadError(
        f"Cannot load image {name}: unsupported dtype {arr.dtype}; expected uint8, uint16, bool, "
        "float in [0, 1], or integers in 0..255."
    )
