"""Tests for grounded_sam.models.devices: device names, chunk sizes, the inference context, lazy torch import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from grounded_sam.errors import DeviceError, GroundedSamError
from grounded_sam.models import devices
from grounded_sam.models.devices import (
    bf16_supported,
    default_box_chunk_size,
    inference_context,
    resolve_device,
)


@pytest.fixture
def no_accelerators(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the machine look CPU-only whatever it really has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)


# --------------------------------------------------------------------------- resolve_device


def test_auto_is_cpu_on_this_machine() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU, so 'auto' rightly picks cuda")
    if devices._mps_available():
        pytest.skip("this machine has Apple MPS, so 'auto' rightly picks mps")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.usefixtures("no_accelerators")
@pytest.mark.parametrize("name", ["auto", None, "", "  AUTO  "])
def test_auto_without_accelerators_is_cpu(name: str | None) -> None:
    assert resolve_device(name) == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("mps")


@pytest.mark.parametrize("name", ["cpu", "CPU", " cpu "])
def test_cpu(name: str) -> None:
    assert resolve_device(name) == torch.device("cpu")


@pytest.mark.usefixtures("no_accelerators")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_gpu(name: str) -> None:
    with pytest.raises(DeviceError) as info:
        resolve_device(name)
    message = str(info.value)
    assert repr(name) in message
    assert "no CUDA GPU" in message
    assert "--device cpu" in message
    assert isinstance(info.value, GroundedSamError) and isinstance(info.value, ValueError)


def test_cuda_index_out_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(DeviceError, match=r"only 1 CUDA device\(s\) exist"):
        resolve_device("cuda:3")


@pytest.mark.usefixtures("no_accelerators")
def test_mps_without_mps() -> None:
    with pytest.raises(DeviceError, match="Apple MPS is not available"):
        resolve_device("mps")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("tpu", "Unknown device 'tpu': expected one of auto, cpu, cuda, mps"),
        ("banana", "Unknown device 'banana': expected one of auto, cpu, cuda, mps"),
        ("meta", "Unsupported device 'meta': expected one of auto, cpu, cuda, mps"),
        ("xla", "Unsupported device 'xla'"),
    ],
)
def test_unknown_or_unsupported_devices(name: str, expected: str) -> None:
    with pytest.raises(DeviceError) as info:
        resolve_device(name)
    assert expected in str(info.value)


# --------------------------------------------------------------------------- chunk size and precision


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        (torch.device("cpu"), 4),
        (torch.device("cuda"), 64),
        (torch.device("cuda:1"), 64),
        (torch.device("mps"), 16),
    ],
)
def test_default_box_chunk_size(device: torch.device, expected: int) -> None:
    assert default_box_chunk_size(device) == expected


def test_bf16_not_supported_on_cpu() -> None:
    assert bf16_supported(torch.device("cpu")) is False


def test_inference_context_cpu_no_grad_no_autocast() -> None:
    weight = torch.ones(3, 3, requires_grad=True)
    with inference_context(torch.device("cpu")):
        assert not torch.is_grad_enabled()
        assert torch.is_inference_mode_enabled()
        assert not torch.is_autocast_enabled("cpu")
        assert not torch.is_autocast_enabled("cuda")
        out = weight @ torch.ones(3, 2)
    assert out.dtype == torch.float32
    assert not out.requires_grad
    assert torch.is_grad_enabled()  # restored on exit


def test_inference_context_restores_state_after_error() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with inference_context(torch.device("cpu")):
            raise RuntimeError("boom")
    assert torch.is_grad_enabled()
    assert not torch.is_inference_mode_enabled()


# --------------------------------------------------------------------------- lazy imports


@pytest.mark.parametrize(
    "module",
    ["grounded_sam", "grounded_sam.models.devices", "grounded_sam.models.weights", "grounded_sam.models.registry", "grounded_sam.errors"],
)
def test_import_does_not_import_torch(module: str) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import {module}
        heavy = [m for m in ("torch", "transformers", "sam2") if m in sys.modules]
        assert not heavy, f"importing {module} pulled in {{heavy}}"
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
