"""The doctor: what it reports about devices, the SAM2 extension, weights and the hub, and its exit code.

Every test points the models folder and the Hugging Face cache into tmp_path and sets
HF_HUB_OFFLINE, so nothing real is found or fetched; the hub tests talk to a local server.
"""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from grounded_sam.cli import doctor
from grounded_sam.cli.doctor import collect_report, format_report, report_exit_code
from grounded_sam.models.registry import DEFAULT_DETECTOR, DEFAULT_SEGMENTER, DETECTORS, SEGMENTERS


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    path = tmp_path / "models"
    path.mkdir()
    return path


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, models_dir: Path) -> None:
    monkeypatch.setenv("GROUNDED_SAM_MODELS_DIR", str(models_dir))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("GROUNDED_SAM_DETECTOR", raising=False)
    monkeypatch.delenv("GROUNDED_SAM_SEGMENTER", raising=False)
    monkeypatch.delenv("GROUNDED_SAM_DEVICE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Makes torch see no CUDA and no MPS, so these tests mean the same on any machine."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_without_weights_it_reports_cpu_missing_models_and_fails(no_gpu):
    report = collect_report()
    assert report["device"]["requested"] == "auto"
    assert report["device"]["resolved"] == report["device"]["auto"] == "cpu"
    # bf16 is this CPU's (AVX-512 BF16 or AMX, or not); the suite pins auto to fp32 (tests/conftest.py).
    assert report["device"]["bf16"] is (report["device"]["cpu_bf16"] is not None)
    assert report["device"]["precision"] == "fp32" and report["device"]["box_chunk_size"] >= 1
    assert [d["name"] for d in report["devices"]] == ["cpu"]
    assert report["torch"]["version"] and report["torch"]["cuda_available"] is False
    assert report["hub"] == {**report["hub"], "offline": True, "checked": False, "reachable": None}

    configured = report["configured"]
    assert (configured["detector"]["name"], configured["segmenter"]["name"]) == (DEFAULT_DETECTOR, DEFAULT_SEGMENTER)
    for row in configured.values():
        assert row["found"] is False and row["configured"] is True
        assert row["download"] == f"python -m grounded_sam download {row['name']}"
    # Every registry model gets a row, each saying how to fetch it.
    assert {(r["kind"], r["name"]) for r in report["models"]} == (
        {("detector", n) for n in DETECTORS} | {("segmenter", n) for n in SEGMENTERS}
    )
    assert all(not r["found"] and r["download"].endswith(r["name"]) for r in report["models"])
    rows = {r["name"]: r for r in report["models"]}
    assert (rows["grounding-dino-tiny"]["license"], rows["owlv2-base"]["gated"]) == ("Apache-2.0", False)
    assert len(report["problems"]) == 2 and report["ok"] is False
    assert report_exit_code(report) != 0

    text = format_report(report)
    assert "auto -> cpu" in text and "fp32" in text
    assert f"missing -> python -m grounded_sam download {DEFAULT_DETECTOR}" in text
    assert f"python -m grounded_sam download {DEFAULT_SEGMENTER}" in text
    assert "HF_HUB_OFFLINE is set" in text and "NOT READY" in text
    assert "on the CPU" in text  # the why-is-it-slow hint


def test_report_is_json_serialisable(no_gpu):
    report = collect_report()
    assert json.loads(json.dumps(report)) == report


def test_tiny_models_given_as_paths_are_found_and_loaded(tiny_models):
    report = collect_report(tiny_models["florence"], tiny_models["sam2"], device="cpu", load=True)
    detector, segmenter = report["configured"]["detector"], report["configured"]["segmenter"]
    assert detector["found"] and detector["source"] == "path" and detector["location"] == str(tiny_models["florence"])
    assert segmenter["found"] and segmenter["location"] == str(tiny_models["sam2"])
    assert segmenter["config"] == str(tiny_models["sam2"].with_suffix(".yaml"))
    for row in (detector, segmenter):
        assert row["load"]["ok"] is True and row["load"]["device"] == "cpu" and row["load"]["seconds"] >= 0
        assert row["download"] is None  # a path has no download command
    assert report["problems"] == [] and report["ok"] is True and report_exit_code(report) == 0
    # The configured paths show up as rows beside the registry ones, marked configured.
    configured_rows = [r["name"] for r in report["models"] if r["configured"]]
    assert configured_rows == [str(tiny_models["florence"]), str(tiny_models["sam2"])]
    text = format_report(report)
    assert "loaded on cpu" in text and "Ready" in text and str(tiny_models["sam2"]) in text
    assert json.loads(json.dumps(report)) == report


def test_configured_models_and_device_come_from_the_environment(monkeypatch, tiny_models):
    monkeypatch.setenv("GROUNDED_SAM_DETECTOR", str(tiny_models["florence"]))
    monkeypatch.setenv("GROUNDED_SAM_SEGMENTER", str(tiny_models["sam2"]))
    monkeypatch.setenv("GROUNDED_SAM_DEVICE", "cpu")
    report = collect_report(check_hub=False)
    assert report["configured"]["detector"]["name"] == str(tiny_models["florence"])
    assert report["device"]["requested"] == "cpu"
    assert report["ok"] and report_exit_code(report) == 0
    # An explicit argument wins over the environment.
    explicit = collect_report(detector=DEFAULT_DETECTOR, device="cpu", check_hub=False)
    assert explicit["configured"]["detector"]["name"] == DEFAULT_DETECTOR and not explicit["ok"]


def test_weights_in_models_dir_are_found_and_a_failed_load_is_a_problem(tiny_models, models_dir):
    shutil.copytree(tiny_models["florence"], models_dir / DEFAULT_DETECTOR)
    # A tiny checkpoint under a real checkpoint's name: found, but it cannot load with the real config.
    target = models_dir / "sam2" / SEGMENTERS[DEFAULT_SEGMENTER].filename
    target.parent.mkdir()
    shutil.copy(tiny_models["sam2"], target)

    found = collect_report(device="cpu")
    assert found["configured"]["detector"]["source"] == "models-dir"
    assert found["configured"]["segmenter"]["location"] == str(target)
    assert found["ok"] and report_exit_code(found) == 0
    assert "found in models/" in format_report(found)

    loaded = collect_report(device="cpu", load=True)
    assert loaded["configured"]["detector"]["load"]["ok"] is True
    assert loaded["configured"]["segmenter"]["load"]["ok"] is False
    assert "does not match the model config" in loaded["configured"]["segmenter"]["load"]["error"]
    assert len(loaded["problems"]) == 1 and "failed to load on cpu" in loaded["problems"][0]
    assert report_exit_code(loaded) != 0 and "segmenter sam2.1-hiera-base-plus: not loaded" in format_report(loaded)


def test_unknown_model_name_is_a_problem_without_download_command(no_gpu):
    report = collect_report(detector="florence-9")
    row = report["configured"]["detector"]
    assert row["found"] is False and row["registered"] is False and row["download"] is None
    assert "Unknown detector 'florence-9'" in row["error"]
    assert any("florence-9" in p and "Unknown detector" in p for p in report["problems"])
    assert report_exit_code(report) != 0


def test_unavailable_device_is_a_problem_and_loading_is_skipped(no_gpu, tiny_models):
    report = collect_report(tiny_models["florence"], tiny_models["sam2"], device="cuda", load=True)
    assert report["device"]["resolved"] is None and "no CUDA GPU" in report["device"]["error"]
    assert report["configured"]["detector"]["load"] == {
        "ok": False, "seconds": None, "device": None, "error": "skipped: no usable device",
    }
    assert report_exit_code(report) != 0 and "no CUDA GPU" in format_report(report)


def test_sam2_extension_reported_as_it_imports(monkeypatch, no_gpu):
    monkeypatch.setitem(sys.modules, "sam2._C", types.ModuleType("sam2._C"))
    assert collect_report(check_hub=False)["sam2_extension"]["built"] is True

    monkeypatch.setitem(sys.modules, "sam2._C", None)  # importing it now raises ImportError(name="sam2._C")
    ext = collect_report(check_hub=False)["sam2_extension"]
    assert ext["built"] is False and ext["error"] == "not compiled"
    assert "CUDA-only" in ext["impact"] and "hole" in ext["note"]


# --------------------------------------------------------------------------- hub


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:  # noqa: N802 - the stdlib's naming
        self.send_response(404)  # any answer means the network path works
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_hub() -> Iterator[str]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_hub_reachable_when_it_answers(monkeypatch, local_hub, no_gpu):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", local_hub)
    hub = collect_report(hub_timeout=3.0)["hub"]
    assert hub["endpoint"] == local_hub and hub["checked"] and hub["reachable"] is True and hub["error"] is None
    assert f"{local_hub} reachable" in format_report(collect_report(hub_timeout=3.0))


def test_hub_unreachable_is_a_note_not_a_failure(monkeypatch, tiny_models):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    report = collect_report(tiny_models["florence"], tiny_models["sam2"], device="cpu", hub_timeout=3.0)
    assert report["hub"]["checked"] and report["hub"]["reachable"] is False and report["hub"]["error"]
    assert any("unreachable" in note for note in report["notes"])
    assert report_exit_code(report) == 0
    assert "unreachable" in format_report(report)


def test_hub_is_not_contacted_when_offline(monkeypatch, no_gpu):
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the doctor contacted the hub although HF_HUB_OFFLINE is set")

    monkeypatch.setattr(doctor, "check_hub_reachable", refuse)
    assert collect_report()["hub"]["checked"] is False
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert collect_report(check_hub=False)["hub"]["checked"] is False


# --------------------------------------------------------------------------- GPU branches, with a faked torch.cuda


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """One Hopper-class CUDA device, as far as torch's queries go (no CUDA call reaches a driver)."""
    import torch

    props = types.SimpleNamespace(name="Fake H100", total_memory=80 * 2**30, major=9, minor=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setitem(sys.modules, "sam2._C", None)
    monkeypatch.delenv("GROUNDED_SAM_AUTO_PRECISION", raising=False)  # the suite pins auto to fp32


def test_gpu_is_listed_and_picked_by_auto_with_bf16(fake_gpu):
    report = collect_report(check_hub=False)
    assert report["devices"][1] == {
        "name": "cuda:0", "description": "Fake H100", "memory_gib": 80.0, "compute_capability": "9.0", "bf16": True,
    }
    device = report["device"]
    assert (device["resolved"], device["auto"], device["bf16"]) == ("cuda", "cuda", True)
    assert device["precision"] == "bf16 autocast"
    assert device["box_chunk_size"] == 64
    # On a GPU a missing sam2._C matters a little, and the notes say what is lost.
    assert "skips filling small mask holes" in report["sam2_extension"]["impact"]
    assert any("sam2._C is not built" in note for note in report["notes"])
    assert not any("on the CPU" in note for note in report["notes"])
    text = format_report(report)
    assert "cuda:0 Fake H100 (80.0 GiB, compute 9.0, bf16 yes)" in text and "auto -> cuda, bf16 autocast" in text

    on_cpu = collect_report(device="cpu", check_hub=False)
    assert "cpu -> cpu (auto would pick cuda)" in format_report(on_cpu)


def test_cpu_only_torch_beside_an_nvidia_driver_is_pointed_out(monkeypatch, no_gpu):
    import torch

    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(doctor.shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    report = collect_report(check_hub=False)
    assert any("torch build is CPU-only" in note for note in report["notes"])
    assert "CPU-only build" in format_report(report)


def test_a_one_model_detector_is_checked_without_the_segmenter(no_gpu, tiny_models, tmp_path):
    # SAM 3 makes the masks itself: a missing SAM2 is no problem, and it is not loaded.
    missing_sam2 = tmp_path / "absent.pt"
    report = collect_report(tiny_models["sam3_scripted"], missing_sam2, device="cpu", load=True)
    assert set(report["configured"]) == {"detector"} and report["segmenter_used"] is False
    assert report["configured"]["detector"]["load"]["ok"] is True
    assert report["problems"] == [] and report["ok"] is True
    assert not any(r["name"] == str(missing_sam2) for r in report["models"])
    assert any("segments by itself" in note and str(missing_sam2) in note for note in report["notes"])
    assert "segments by itself" in format_report(report) and json.loads(json.dumps(report)) == report


def test_the_registry_sam3_without_weights_is_the_only_problem(no_gpu):
    report = collect_report("sam3")
    assert set(report["configured"]) == {"detector"} and not report["ok"]
    (problem,) = report["problems"]
    assert "'sam3'" in problem and "download sam3" in problem
    assert "gated" in format_report(report)


def test_a_detector_with_sam2_still_checks_the_segmenter(no_gpu, tiny_models, tmp_path):
    report = collect_report(tiny_models["grounding_dino"], tmp_path / "absent.pt")
    assert set(report["configured"]) == {"detector", "segmenter"} and report["segmenter_used"] is True
    assert not report["ok"] and any("segmenter" in p for p in report["problems"])


@pytest.mark.parametrize(("flags", "line", "precision"), [
    ({"avx512f", "avx512_bf16"}, "CPU bf16   yes (avx512_bf16)", "bf16 autocast"),
    ({"amx_bf16", "avx512_bf16"}, "CPU bf16   yes (amx_bf16)", "bf16 autocast"),
    ({"avx2"}, "CPU bf16   no AMX or AVX-512 BF16", "fp32"),
])
def test_cpu_bf16_support_and_what_auto_picks(no_gpu, monkeypatch: pytest.MonkeyPatch, flags, line, precision):
    from grounded_sam.models import devices

    monkeypatch.delenv("GROUNDED_SAM_AUTO_PRECISION", raising=False)
    monkeypatch.setattr(devices, "_cpu_flags", lambda: set(flags))
    devices.cpu_bf16_feature.cache_clear()
    try:
        report = collect_report(check_hub=False)
    finally:
        devices.cpu_bf16_feature.cache_clear()
    assert report["device"]["precision"] == precision
    text = format_report(report)
    assert line in text and f"cpu -> cpu, {precision} (--precision auto)" in text.replace("auto -> cpu", "cpu -> cpu")
