"""Zip archives in and out: safe extraction of uploaded images, and the results zip of a job.

An uploaded zip is untrusted. :func:`extract_images` writes only image files, only inside the
folder it is given, and refuses the whole archive (:class:`~grounded_sam.errors.ArchiveError`)
before writing anything when a member's path would leave that folder (``../x.jpg``, ``/etc/x``,
``C:\\x``). While it reads it counts the bytes that really come out of the decompressor (the
sizes in a zip's headers are whatever its author wrote) and stops at a cap on the total and
on the compression ratio, so a zip bomb costs at most the cap. Everything it does not extract
(``__MACOSX/``, dotfiles, non-images, links, encrypted members) is listed with a reason.

Example:
    >>> extracted = extract_images("upload.zip", job_dir / "input")   # doctest: +SKIP
    >>> extracted.images, extracted.skipped                            # doctest: +SKIP
    ([PosixPath('.../input/a.jpg')], [SkippedMember(name='notes.txt', reason='not an image')])
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from grounded_sam.errors import ArchiveError
from grounded_sam.inputs.images import IMAGE_EXTENSIONS, is_image_path

__all__ = ["ExtractedArchive", "SkippedMember", "ZipLimits", "extract_images", "member_path", "write_zip"]

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
# A member is judged on its compression ratio only past this many bytes: tiny files (a 2 KB text
# of spaces) compress 100x and more without being bombs.
_RATIO_GRACE_BYTES = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
# Already-compressed formats gain nothing from deflate; storing them keeps the results zip fast.
_STORED_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".zip"})


@dataclass(frozen=True)
class ZipLimits:
    """Caps on what one uploaded zip may hold.

    Attributes:
        max_members: Entries in the archive (files and folders, images or not).
        max_total_bytes: Uncompressed bytes extracted, counted while reading.
        max_ratio: Uncompressed / compressed size of one member (checked past 1 MiB).
    """

    max_members: int = 2_000
    max_total_bytes: int = 2 * 1024**3
    max_ratio: float = 200.0

    def __post_init__(self) -> None:
        if self.max_members < 1 or self.max_total_bytes < 1 or self.max_ratio <= 1:
            raise ValueError(
                "ZipLimits need max_members >= 1, max_total_bytes >= 1 and max_ratio > 1, but got "
                f"{self.max_members}, {self.max_total_bytes}, {self.max_ratio}"
            )


@dataclass(frozen=True)
class SkippedMember:
    """An archive entry that was not extracted, and why (shown to the user)."""

    name: str
    reason: str


@dataclass
class ExtractedArchive:
    """What :func:`extract_images` wrote.

    Attributes:
        root: The folder the images were written under.
        images: Extracted image files, in archive order; ``image.relative_to(root)`` is the
            member's (cleaned) path inside the zip.
        skipped: Entries not extracted, in archive order (folders are not listed).
    """

    root: Path
    images: list[Path] = field(default_factory=list)
    skipped: list[SkippedMember] = field(default_factory=list)


def member_path(name: str) -> PurePosixPath:
    """The relative path a zip member would be written to, or an error if it leaves its folder.

    Backslashes count as separators (zips made on Windows use them), and ``.`` parts are dropped.

    Args:
        name: The member's name as stored in the archive.

    Returns:
        A relative path with no ``..`` part (empty for names such as ``./``).

    Raises:
        ArchiveError: The name is absolute (``/x``, ``\\\\server\\x``), has a drive (``C:x``)
            or a ``..`` part.
    """
    cleaned = name.replace("\\", "/")
    if cleaned.startswith("/") or _DRIVE.match(cleaned):
        raise ArchiveError(
            f"The zip holds an absolute path {name!r}; only relative paths are accepted. "
            "Re-create the archive from inside the folder of images (e.g. `cd photos && zip -r ../photos.zip .`)."
        )
    parts = [part for part in cleaned.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(
            f"The zip holds a path that leaves its folder, {name!r}; entries with '..' are refused. "
            "Re-create the archive from inside the folder of images."
        )
    return PurePosixPath(*parts)


def _skip_reason(info: zipfile.ZipInfo, path: PurePosixPath) -> str | None:
    """Why a (safe) member is not extracted, or None to extract it."""
    if any(part == "__MACOSX" for part in path.parts):
        return "macOS metadata (__MACOSX)"
    if any(part.startswith(".") for part in path.parts):
        return "hidden file"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    if not is_image_path(path.name):
        return f"not an image (expected {', '.join(sorted(IMAGE_EXTENSIONS))})"
    if info.flag_bits & 0x1:
        return "encrypted"
    return None


def extract_images(
    zip_path: str | os.PathLike[str], dest: str | os.PathLike[str], limits: ZipLimits = ZipLimits()
) -> ExtractedArchive:
    """Extracts the image files of an untrusted zip into a new folder.

    Every member's path is checked before anything is written, so an unsafe archive leaves no
    file behind. Then image members are copied out in chunks, counting real bytes against
    ``limits``; on any error the folder is removed again.

    Args:
        zip_path: The uploaded archive.
        dest: A folder that does not exist yet (or is empty); created here.
        limits: Caps on members, total uncompressed bytes and compression ratio.

    Returns:
        The extracted images and the skipped members.

    Raises:
        ArchiveError: Not a readable zip, an unsafe path, or a cap exceeded.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    label = zip_path.name
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"Cannot open {label} as a zip archive ({exc}). Upload a .zip file of images.") from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            raise ArchiveError(
                f"{label} holds {len(infos):_} entries, over the cap of {limits.max_members:_}. "
                "Split it into smaller archives (the server's operator sets the cap)."
            )
        planned = [(info, member_path(info.filename)) for info in infos]  # raises before any write
        dest.mkdir(parents=True, exist_ok=True)
        if any(dest.iterdir()):
            raise ArchiveError(f"Refusing to extract {label} into {dest}: the folder is not empty.")
        result = ExtractedArchive(root=dest)
        try:
            _extract(archive, planned, dest, limits, label, result)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    logger.info("Extracted %d images from %s (%d entries skipped)", len(result.images), label, len(result.skipped))
    return result


def _extract(
    archive: zipfile.ZipFile, planned: list[tuple[zipfile.ZipInfo, PurePosixPath]], dest: Path,
    limits: ZipLimits, label: str, result: ExtractedArchive,
) -> None:
    root = dest.resolve()
    total = 0
    for info, relative in planned:
        if info.is_dir() or not relative.parts:
            continue
        reason = _skip_reason(info, relative)
        if reason is not None:
            result.skipped.append(SkippedMember(info.filename, reason))
            continue
        target = dest.joinpath(*relative.parts)
        # member_path already refused '..' and absolute names; this also catches a folder that
        # is a symlink, which nothing in this function creates.
        if not target.resolve().is_relative_to(root):
            raise ArchiveError(f"The zip entry {info.filename!r} would be written outside its folder; refused.")
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = open(target, "xb")  # noqa: SIM115 - closed below; 'x' keeps the first of two equal names
        except FileExistsError:
            result.skipped.append(SkippedMember(info.filename, "duplicate name (the first one was kept)"))
            continue
        except OSError as exc:
            result.skipped.append(SkippedMember(info.filename, f"cannot be written here ({exc.strerror or exc})"))
            continue
        written = 0
        try:
            with handle, archive.open(info) as source:
                while chunk := source.read(_CHUNK):
                    written += len(chunk)
                    total += len(chunk)
                    if total > limits.max_total_bytes:
                        raise ArchiveError(
                            f"{label} unpacks to more than {limits.max_total_bytes:_} bytes, the cap on one upload "
                            "(counted while reading). Upload fewer or smaller images per archive."
                        )
                    if written > _RATIO_GRACE_BYTES and written > limits.max_ratio * max(info.compress_size, 1):
                        raise ArchiveError(
                            f"The zip entry {info.filename!r} expands more than {limits.max_ratio:g} times its "
                            "compressed size, which images never do; the archive looks like a zip bomb and was refused."
                        )
                    handle.write(chunk)
        except ArchiveError:
            raise
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError, OSError) as exc:
            # A damaged or unsupported member (bad CRC, unknown compression) is this entry's
            # problem only: report it and go on with the others.
            target.unlink(missing_ok=True)
            result.skipped.append(SkippedMember(info.filename, f"unreadable ({exc})"))
            continue
        result.images.append(target)


def write_zip(folder: str | os.PathLike[str], zip_path: str | os.PathLike[str], *, exclude: Collection[str] = ()) -> Path:
    """Zips every file under ``folder`` (paths relative to it, sorted) into ``zip_path``, atomically.

    PNG and JPEG files are stored as they are (they are compressed already); the rest is deflated.
    ``zip_path`` itself is never included, even when it lies inside ``folder``; nor are the entries
    of ``folder`` (files, or folders with all they hold) named in ``exclude``.

    Returns:
        ``zip_path`` as a Path.
    """
    folder, zip_path = Path(folder), Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.resolve() != zip_path.resolve()
                   and p.relative_to(folder).parts[0] not in exclude)
    fd, tmp = tempfile.mkstemp(prefix=f".{zip_path.name}.", suffix=".tmp", dir=zip_path.parent)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for file in files:
                compression = zipfile.ZIP_STORED if file.suffix.lower() in _STORED_SUFFIXES else zipfile.ZIP_DEFLATED
                archive.write(file, file.relative_to(folder).as_posix(), compress_type=compression)
        os.replace(tmp, zip_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return zip_path
