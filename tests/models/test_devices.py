"""Tests for grounded_sam.models.devices: device names, chunk sizes, the inference context, lazy torch import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from grounded_sam.errors import DeviceError, GroundedSamError, OptionError
from grounded_sam.models import devices
from grounded_sam.models.devices import (
    auto_precision,
    bf16_supported,
    current_precision,
    default_box_chunk_size,
    inference_context,
    precision_scope,
    resolve_device,
    resolve_precision,
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


@pytest.fixture
def cpu_flags(monkeypatch: pytest.MonkeyPatch):
    """Sets the CPU's feature flags the detection sees (``cpu_flags({"avx512_bf16"})``), whatever this CPU has."""

    monkeypatch.delenv(devices.AUTO_PRECISION_ENV, raising=False)  # the suite pins auto to fp32 (conftest)

    def set_flags(flags: set[str]) -> None:
        monkeypatch.setattr(devices, "_cpu_flags", lambda: set(flags))
        devices.cpu_bf16_feature.cache_clear()

    yield set_flags
    devices.cpu_bf16_feature.cache_clear()


@pytest.mark.parametrize(
    ("flags", "feature"),
    [
        (set(), None),
        ({"avx2", "avx512f"}, None),
        ({"avx512f", "avx512_bf16"}, "avx512_bf16"),
        ({"amx_bf16", "amx_tile", "avx512_bf16"}, "amx_bf16"),
    ],
)
def test_cpu_bf16_detection_and_auto(cpu_flags, flags: set[str], feature: str | None) -> None:
    cpu_flags(flags)
    cpu = torch.device("cpu")
    assert devices.cpu_bf16_feature() == feature
    assert bf16_supported(cpu) is (feature is not None)
    assert auto_precision(cpu) == ("bf16" if feature else "fp32")
    assert resolve_precision("auto", cpu) == auto_precision(cpu)
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("BF16", cpu) == "bf16"  # asked for: runs (emulated where the CPU has no bf16)


def test_cpu_flags_are_read_from_this_machine() -> None:
    # The real detection runs without error and agrees with Linux's own list where there is one.
    devices.cpu_bf16_feature.cache_clear()
    feature = devices.cpu_bf16_feature()
    assert feature in (None, *devices.CPU_BF16_FEATURES)
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next(line for line in lines if line.startswith("flags")).split()
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags to compare with on this OS")
    assert (feature is not None) == any(name in flags for name in devices.CPU_BF16_FEATURES)


@pytest.mark.parametrize("forced", ["fp32", "bf16"])
def test_auto_can_be_pinned_by_the_environment(cpu_flags, monkeypatch: pytest.MonkeyPatch, forced: str) -> None:
    cpu_flags({"avx512_bf16"} if forced == "fp32" else set())
    monkeypatch.setenv(devices.AUTO_PRECISION_ENV, forced)
    assert auto_precision(torch.device("cpu")) == forced
    monkeypatch.setenv(devices.AUTO_PRECISION_ENV, "fp16")
    with pytest.raises(OptionError, match="fp32 or bf16"):
        auto_precision(torch.device("cpu"))


def test_bf16_is_never_auto_on_mps_and_refused_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(devices.AUTO_PRECISION_ENV, raising=False)
    assert auto_precision(torch.device("mps")) == "fp32"
    with pytest.raises(DeviceError, match="fp32 or auto"):
        resolve_precision("bf16", torch.device("mps"))


def test_bf16_refused_on_a_gpu_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(devices.AUTO_PRECISION_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert auto_precision(torch.device("cuda")) == "fp32"
    with pytest.raises(DeviceError, match="no bf16 support"):
        resolve_precision("bf16", torch.device("cuda"))


def test_unknown_precision_is_an_option_error() -> None:
    with pytest.raises(OptionError, match="auto, fp32, bf16"):
        resolve_precision("fp16", torch.device("cpu"))
    with pytest.raises(OptionError):
        with precision_scope("half"):
            pass


@pytest.mark.parametrize(("precision", "autocast"), [("fp32", False), ("bf16", True)])
def test_precision_scope_sets_cpu_autocast(precision: str, autocast: bool) -> None:
    assert current_precision() == "auto"
    with precision_scope(precision):
        assert current_precision() == precision
        with inference_context(torch.device("cpu")):
            assert torch.is_autocast_enabled("cpu") is autocast
            out = torch.ones(4, 3) @ torch.ones(3, 2)
        assert out.dtype == (torch.bfloat16 if autocast else torch.float32)
        with inference_context(torch.device("cpu"), "fp32"):  # an explicit precision wins
            assert not torch.is_autocast_enabled("cpu")
    assert current_precision() == "auto"


def test_precision_scope_is_per_thread() -> None:
    import threading

    seen: list[str] = []
    with precision_scope("bf16"):
        thread = threading.Thread(target=lambda: seen.append(current_precision()))
        thread.start()
        thread.join()
    assert seen == ["auto"]  # another thread (another request) keeps its own


def test_inference_context_cpu_no_grad_no_autocast() -> None:
    weight = torch.ones(3, 3, requires_grad=True)
    with precision_scope("fp32"), inference_context(torch.device("cpu")):
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
