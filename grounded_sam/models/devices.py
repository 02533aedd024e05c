"""Choosing the device and the precision of inference.

Nothing here runs at import time: torch is imported inside the functions, so importing the
package never touches a GPU.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from grounded_sam.errors import DeviceError, OptionError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | None = "auto") -> torch.device:
    """Turns a device name into a ``torch.device``.

    Args:
        device: ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.

    Raises:
        DeviceError: The name is unknown, or names a device this machine does not have.
    """
    import torch

    name = (device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError as exc:
        raise DeviceError(f"Unknown device {device!r}: expected one of {', '.join(DEVICE_CHOICES)} or 'cuda:N'.") from exc
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"Device {device!r} was asked for, but torch sees no CUDA GPU here. Use --device cpu or auto.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(
                f"Device {device!r} was asked for, but only {torch.cuda.device_count()} CUDA device(s) exist."
            )
    elif resolved.type == "mps" and not _mps_available():
        raise DeviceError(f"Device {device!r} was asked for, but Apple MPS is not available. Use --device cpu or auto.")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"Unsupported device {device!r}: expected one of {', '.join(DEVICE_CHOICES)}.")
    return resolved


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


#: ``--precision`` values: ``auto`` (see :func:`auto_precision`), ``fp32``, or ``bf16`` autocast.
PRECISION_CHOICES = ("auto", "fp32", "bf16")

# The precision the models of this thread (or asyncio task) run at, set by :func:`precision_scope` around a
# pipeline call: the loaded models are shared by every pipeline on a device, so the precision cannot live on them.
_PRECISION: contextvars.ContextVar[str] = contextvars.ContextVar("grounded_sam_precision", default="auto")

#: CPU features that run bf16 matrix products natively, best first (names as /proc/cpuinfo and
#: ``torch.cpu.get_capabilities()`` spell them). Without one, bf16 on a CPU is emulated and slower than fp32.
CPU_BF16_FEATURES = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_bf16_feature() -> str | None:
    """The CPU's native bf16 feature (``"amx_bf16"`` or ``"avx512_bf16"``), or None; detected once, at run time."""
    flags = _cpu_flags()
    return next((name for name in CPU_BF16_FEATURES if name in flags), None)


def _cpu_flags() -> set[str]:
    """The CPU's feature names: torch's own detection (cpuinfo, any OS), else Linux's /proc/cpuinfo."""
    import torch

    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is not None:
        try:
            return {name for name, present in get_capabilities().items() if present is True}
        except Exception as exc:  # noqa: BLE001 - a private-ish torch API: fall back rather than fail
            logger.debug("torch.cpu.get_capabilities() failed: %s", exc)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def bf16_supported(device: torch.device) -> bool:
    """True where the hardware runs bf16 natively: a CUDA GPU with bf16 (Ampere or newer), or a CPU with
    AMX or AVX-512 BF16 (:func:`cpu_bf16_feature`)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return device.type == "cpu" and cpu_bf16_feature() is not None


#: Names what ``auto`` runs (``fp32`` or ``bf16``) on every device, for an operator who measured otherwise, and
#: for the test suite, which runs fp32 so its figures are the same on every CPU.
AUTO_PRECISION_ENV = "GROUNDED_SAM_AUTO_PRECISION"


def auto_precision(device: torch.device) -> str:
    """What ``--precision auto`` runs on ``device``: ``"bf16"`` where it is both faster and close to fp32, else ``"fp32"``.

    The rule, from measurements (README "Benchmark"; ``python -m grounded_sam.bench --precision-check``
    prints them): bf16 on CUDA GPUs that support it, and on CPUs with AMX or AVX-512 BF16, where bf16
    autocast ran the real-size Florence-2 and SAM2 2-7x faster with masks within 0.99 IoU of fp32's.
    Elsewhere (MPS, CPUs that would emulate bf16) fp32. ``GROUNDED_SAM_AUTO_PRECISION=fp32|bf16`` overrides it.

    Raises:
        OptionError: The environment variable names another precision.
    """
    forced = os.environ.get(AUTO_PRECISION_ENV, "").strip().lower()
    if forced:
        if forced not in ("fp32", "bf16"):
            raise OptionError(f"{AUTO_PRECISION_ENV} must be fp32 or bf16, but got {forced!r}; unset it to let auto choose.")
        return forced
    return "bf16" if bf16_supported(device) else "fp32"


def check_precision(precision: str | None) -> str:
    """``precision`` in lower case (None is ``"auto"``).

    Raises:
        OptionError: Not one of :data:`PRECISION_CHOICES`.
    """
    name = (precision or "auto").strip().lower()
    if name not in PRECISION_CHOICES:
        raise OptionError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, but got {precision!r}")
    return name


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """The precision a model on ``device`` runs at: ``"fp32"`` or ``"bf16"``.

    Args:
        precision: ``"auto"`` (:func:`auto_precision`), ``"fp32"`` or ``"bf16"``; None is ``"auto"``.
        device: Where the model runs.

    Raises:
        OptionError: An unknown precision.
        DeviceError: ``bf16`` on a device that cannot autocast to it (MPS, a GPU older than Ampere).
    """
    import torch

    name = check_precision(precision)
    if name == "auto":
        name = auto_precision(device)
    if name == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise DeviceError(f"--precision bf16 was asked for, but {device} has no bf16 support. Use fp32 or auto.")
        if device.type not in ("cpu", "cuda"):
            raise DeviceError(f"--precision bf16 runs on CPUs and CUDA GPUs, but the device is {device}. Use fp32 or auto.")
        if device.type == "cpu" and cpu_bf16_feature() is None:
            _warn_emulated_bf16()
    return name


@functools.lru_cache(maxsize=1)
def _warn_emulated_bf16() -> None:
    logger.warning("This CPU has no native bf16 (AMX or AVX-512 BF16): bf16 runs emulated, likely slower than fp32")


@contextlib.contextmanager
def precision_scope(precision: str | None) -> Iterator[None]:
    """Runs the models called inside at ``precision`` (``auto``, ``fp32`` or ``bf16``) in this thread.

    :func:`inference_context` reads it; a pipeline wraps each call in it with its own option.

    Raises:
        OptionError: An unknown precision.
    """
    token = _PRECISION.set(check_precision(precision))
    try:
        yield
    finally:
        _PRECISION.reset(token)


def current_precision() -> str:
    """The precision asked for by the innermost :func:`precision_scope` (``"auto"`` outside any)."""
    return _PRECISION.get()


@contextlib.contextmanager
def inference_context(device: torch.device, precision: str | None = None) -> Iterator[None]:
    """No-grad inference, with bf16 autocast where the precision resolves to bf16 (:func:`resolve_precision`).

    Args:
        device: Where the model runs.
        precision: Overrides the :func:`precision_scope` in force (default: ``auto`` outside any).
    """
    import torch

    resolved = resolve_precision(precision or _PRECISION.get(), device)
    with torch.inference_mode():
        if resolved == "bf16":
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                yield
        else:
            yield


def default_box_chunk_size(device: torch.device) -> int:
    """How many boxes one SAM2 mask-decoder call takes on this device.

    On a 2-core CPU, chunks of 2-4 boxes measured fastest: the decoder copies the image features
    once per box, so big batches thrash the cache. GPUs are the other way round.
    """
    if device.type == "cuda":
        return 64
    if device.type == "mps":
        return 16
    return 4


def set_torch_threads(threads: int) -> int:
    """Sets torch's intra-op CPU threads for this process (0 leaves torch's default); returns the number in use.

    Called once at start by a server (``GROUNDED_SAM_TORCH_THREADS``): changing it while models run is unsafe.
    """
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
