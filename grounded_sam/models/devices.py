"""Choosing the device and the precision of inference.

Nothing here runs at import time: torch is imported inside the functions, so importing the
package never touches a GPU.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from grounded_sam.errors import DeviceError

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


def bf16_supported(device: torch.device) -> bool:
    """True where bf16 autocast pays off: a CUDA GPU that supports bf16 (Ampere or newer)."""
    import torch

    return device.type == "cuda" and torch.cuda.is_bf16_supported()


@contextlib.contextmanager
def inference_context(device: torch.device) -> Iterator[None]:
    """No-grad inference, with bf16 autocast on GPUs that support it and fp32 everywhere else."""
    import torch

    with torch.inference_mode():
        if bf16_supported(device):
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
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
