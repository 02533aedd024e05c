"""The web app's settings, read from environment variables once at start.

Every variable is optional; a bad value stops the app at start with a message naming the
variable, what it holds and what it should hold, rather than failing on the first request.

=================================  ==========================================================
``GROUNDED_SAM_DETECTOR``          Florence-2 registry name or local folder (default ``florence-2-base``)
``GROUNDED_SAM_SEGMENTER``         SAM2 registry name or local ``.pt`` (default ``sam2.1-hiera-base-plus``)
``GROUNDED_SAM_DEVICE``            ``auto`` (default), ``cpu``, ``cuda``, ``cuda:N``, ``mps``
``GROUNDED_SAM_BATCH_ROOTS``       Server folders the batch tab may read, separated by ``os.pathsep``
                                   (``:`` on Linux); empty (default) turns server folders off
``GROUNDED_SAM_MAX_UPLOAD_MB``     Largest uploaded file in MB (default 200)
``GROUNDED_SAM_QUEUE_SIZE``        Requests waiting for the models before new ones are refused (default 16)
``GROUNDED_SAM_MAX_BATCH_IMAGES``  Images in one batch job (default 100)
``GROUNDED_SAM_MAX_VIDEO_FRAMES``  Frames one video job may track (default 900: 30 s at 30 fps)
``GROUNDED_SAM_ZIP_MAX_MEMBERS``   Entries in one uploaded zip (default 2000)
``GROUNDED_SAM_ZIP_MAX_MB``        Uncompressed MB extracted from one zip, counted while reading (default 2048)
``GROUNDED_SAM_ZIP_MAX_RATIO``     Largest compression ratio of a zip member (default 200)
``GROUNDED_SAM_RAY_ADDRESS``       Hand batch jobs to this Ray cluster (``auto``, ``HOST:PORT``,
                                   ``ray://HOST:PORT``); empty (default) labels them in this process
``GROUNDED_SAM_DATA_DIR``          Where edits are saved (``edits.sqlite3``); default ``/data/grounded_sam``
                                   on a Hugging Face Space with persistent storage, else
                                   ``$XDG_DATA_HOME/grounded_sam`` (``~/.local/share/grounded_sam``)
``GROUNDED_SAM_EDIT_RETENTION_HOURS``  Hours saved edits are kept after their last change (default 168:
                                   7 days); 0 saves nothing
``GROUNDED_SAM_TORCH_THREADS``     CPU threads of one model call (torch's intra-op threads); default 0:
                                   torch's own choice, one per core (see the README's serving figures)
=================================  ==========================================================

Images and video frames over ``GROUNDED_SAM_MAX_PIXELS`` (read by the package at call time) are refused too.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from grounded_sam.errors import InputError, OptionError
from grounded_sam.inputs.archive import ZipLimits
from grounded_sam.models.registry import DEFAULT_DETECTOR, DEFAULT_SEGMENTER, DETECTORS, SEGMENTERS, ModelKind

__all__ = ["ENV_PREFIX", "AppSettings", "load_settings"]

logger = logging.getLogger(__name__)

ENV_PREFIX = "GROUNDED_SAM_"
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_MB = 1024 * 1024


@dataclass(frozen=True)
class AppSettings:
    """What the operator chose for this server.

    Attributes:
        detector: Default detector: a registry name or a local folder.
        segmenter: Default segmenter: a registry name or a local ``.pt``.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        batch_roots: Resolved folders whose contents the batch tab may read; empty turns that off.
        max_upload_bytes: Largest uploaded file (Gradio's ``max_file_size``).
        queue_size: Requests that may wait for the models (Gradio's queue ``max_size``).
        max_batch_images: Images one batch job may label.
        max_video_frames: Frames one video job may track (after its start, end and frame limit).
        zip_limits: Caps on one uploaded zip.
        ray_address: The Ray cluster batch jobs run on (see :mod:`grounded_sam.runs.ray_engine`); empty: this
            process. Its workers must see the job folders (the system temp folder) at the same path.
        data_dir: Where edits are saved (:mod:`grounded_sam.editing.store`); None saves nothing (the default here:
            :func:`load_settings` fills in the default folder).
        edit_retention_hours: Hours saved edits are kept after their last change; 0 saves nothing.
        torch_threads: torch's intra-op CPU threads; 0 leaves torch's default (one per core).
    """

    detector: str = DEFAULT_DETECTOR
    segmenter: str = DEFAULT_SEGMENTER
    device: str = "auto"
    batch_roots: tuple[Path, ...] = ()
    max_upload_bytes: int = 200 * _MB
    queue_size: int = 16
    max_batch_images: int = 100
    max_video_frames: int = 900
    zip_limits: ZipLimits = field(default_factory=ZipLimits)
    ray_address: str = ""
    data_dir: Path | None = None
    edit_retention_hours: float = 168.0
    torch_threads: int = 0

    @property
    def saves_edits(self) -> bool:
        """True when edits are saved as they happen (a data folder and a retention time)."""
        return self.data_dir is not None and self.edit_retention_hours > 0

    def model_choices(self, kind: ModelKind) -> list[tuple[str, str]]:
        """``(label, value)`` pairs for a model menu: the configured default first, then the registry.

        A default that is a local path is labelled by its file or folder name, so the page does
        not show the server's folder layout.
        """
        default, table = (self.detector, DETECTORS) if kind == "detector" else (self.segmenter, SEGMENTERS)
        choices = [] if default in table else [(f"{Path(default).name} (local)", default)]
        return choices + [(f"{name} - {spec.description}", name) for name, spec in table.items()]

    def check_model(self, kind: ModelKind, value: str | None) -> str:
        """The model to use for a request: ``value`` if it is one of :meth:`model_choices`, the default if empty.

        Raises:
            OptionError: ``value`` is not offered (a client must not point the server at any path).
        """
        default = self.detector if kind == "detector" else self.segmenter
        if not value:
            return default
        allowed = [v for _, v in self.model_choices(kind)]
        if value not in allowed:
            raise OptionError(f"Unknown {kind} {value!r}: expected one of {', '.join(allowed)}.")
        return value

    def resolve_server_folder(self, folder: str) -> Path:
        """The server folder a batch job asked for, checked against :attr:`batch_roots`.

        Args:
            folder: An absolute path, or a path relative to one of the roots (tried in order).

        Returns:
            The resolved folder, inside one of the roots.

        Raises:
            InputError: Server folders are off, or the folder is missing or outside every root.
        """
        if not self.batch_roots:
            raise InputError(
                "Reading folders on the server is turned off. Upload images or a .zip instead; the server's "
                f"operator can allow folders with {ENV_PREFIX}BATCH_ROOTS."
            )
        text = folder.strip()
        raw = Path(text).expanduser()
        candidates = [raw] if raw.is_absolute() else [root / raw for root in self.batch_roots]
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved.is_dir() and self.inside_roots(resolved):
                return resolved
        roots = ", ".join(str(r) for r in self.batch_roots)
        raise InputError(
            f"Server folder {text!r} is not a folder inside the allowed roots ({roots}). "
            "Give a path inside one of them (absolute, or relative to a root)."
        )

    def inside_roots(self, path: Path) -> bool:
        """True if ``path`` (symlinks resolved) lies in one of :attr:`batch_roots`."""
        resolved = path.resolve()
        return any(resolved.is_relative_to(root) for root in self.batch_roots)


def load_settings(environ: Mapping[str, str] | None = None) -> AppSettings:
    """Reads :class:`AppSettings` from environment variables (see this module's table).

    Args:
        environ: The variables; ``os.environ`` when None.

    Raises:
        OptionError: A variable holds a value of the wrong kind or range, or a batch root is
            not an existing folder.
    """
    env = os.environ if environ is None else environ
    defaults = AppSettings()
    limits = ZipLimits(
        max_members=_int(env, "ZIP_MAX_MEMBERS", defaults.zip_limits.max_members),
        max_total_bytes=int(_number(env, "ZIP_MAX_MB", defaults.zip_limits.max_total_bytes / _MB) * _MB),
        max_ratio=_number(env, "ZIP_MAX_RATIO", defaults.zip_limits.max_ratio, minimum=1.0, strict=True),
    )
    device = _text(env, "DEVICE", defaults.device).lower()
    if not _DEVICE.match(device):
        raise OptionError(f"{ENV_PREFIX}DEVICE must be auto, cpu, cuda, cuda:N or mps, but got {device!r}.")
    return AppSettings(
        detector=_text(env, "DETECTOR", defaults.detector),
        segmenter=_text(env, "SEGMENTER", defaults.segmenter),
        device=device,
        batch_roots=_roots(env.get(f"{ENV_PREFIX}BATCH_ROOTS", "")),
        max_upload_bytes=int(_number(env, "MAX_UPLOAD_MB", defaults.max_upload_bytes / _MB) * _MB),
        queue_size=_int(env, "QUEUE_SIZE", defaults.queue_size),
        max_batch_images=_int(env, "MAX_BATCH_IMAGES", defaults.max_batch_images),
        max_video_frames=_int(env, "MAX_VIDEO_FRAMES", defaults.max_video_frames),
        zip_limits=limits,
        ray_address=env.get(f"{ENV_PREFIX}RAY_ADDRESS", "").strip(),
        data_dir=_data_dir(env),
        edit_retention_hours=_number(env, "EDIT_RETENTION_HOURS", defaults.edit_retention_hours, strict=False),
        torch_threads=_int(env, "TORCH_THREADS", defaults.torch_threads, minimum=0),
    )


def _data_dir(env: Mapping[str, str]) -> Path:
    """``GROUNDED_SAM_DATA_DIR``, else a Space's persistent storage (``/data``, when mounted), else the user's data folder."""
    raw = env.get(f"{ENV_PREFIX}DATA_DIR", "").strip()
    if raw:
        path = Path(raw).expanduser()
        if path.exists() and not path.is_dir():
            raise OptionError(f"{ENV_PREFIX}DATA_DIR names {raw!r}, which is not a folder. Name a folder (it is "
                              "created if missing) where the app may keep its saved edits.")
        return path
    spaces_storage = Path("/data")
    if env.get("SPACE_ID") and spaces_storage.is_dir() and os.access(spaces_storage, os.W_OK):
        return spaces_storage / "grounded_sam"
    return Path(env.get("XDG_DATA_HOME") or Path.home() / ".local" / "share").expanduser() / "grounded_sam"


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(ENV_PREFIX + name, "").strip() or default


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(ENV_PREFIX + name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise OptionError(f"{ENV_PREFIX}{name} must be a whole number >= {minimum}, but got {raw!r}.")
    return value


def _number(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0, strict: bool = True) -> float:
    raw = env.get(ENV_PREFIX + name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw.replace("_", ""))
    except ValueError:
        value = float("nan")
    ok = value > minimum if strict else value >= minimum
    if not ok or value != value or value == float("inf"):
        raise OptionError(f"{ENV_PREFIX}{name} must be a number above {minimum:g}, but got {raw!r}.")
    return value


def _roots(raw: str) -> tuple[Path, ...]:
    roots: list[Path] = []
    for part in raw.split(os.pathsep):
        if not part.strip():
            continue
        path = Path(part.strip()).expanduser()
        if not path.is_dir():
            raise OptionError(
                f"{ENV_PREFIX}BATCH_ROOTS names {part.strip()!r}, which is not an existing folder. "
                f"List existing folders separated by {os.pathsep!r}, or leave it empty to turn server folders off."
            )
        resolved = path.resolve()
        if resolved == Path(resolved.anchor):
            raise OptionError(
                f"{ENV_PREFIX}BATCH_ROOTS names the file system root {part.strip()!r}, which would expose every file "
                "on the server. Name the folders that hold images."
            )
        roots.append(resolved)
    return tuple(roots)
