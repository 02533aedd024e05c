"""``python -m grounded_sam doctor``: why is it slow, why won't it load.

:func:`collect_report` gathers, without loading any model unless asked: Python, package and
torch versions; the devices torch sees, which one ``auto`` picks and whether bf16 autocast runs
there; whether SAM2's optional CUDA extension is built; where every registry model's weights
are (or the command that downloads them); and whether the Hugging Face hub is reachable.
:func:`format_report` turns the report into a few lines for people; the report itself is plain
JSON-serialisable data for scripts. :func:`report_exit_code` is non-zero when the configured
models (the defaults unless told otherwise) cannot be loaded.

Nothing here touches a GPU at import time, and every probe is guarded: the doctor reports a
broken install rather than crashing on it.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from grounded_sam.errors import GroundedSamError
from grounded_sam.models.registry import DEFAULT_DETECTOR, DEFAULT_SEGMENTER, DETECTORS, SEGMENTERS

logger = logging.getLogger(__name__)

DETECTOR_ENV = "GROUNDED_SAM_DETECTOR"
SEGMENTER_ENV = "GROUNDED_SAM_SEGMENTER"
DEVICE_ENV = "GROUNDED_SAM_DEVICE"
HUB_TIMEOUT_S = 3.0
DEFAULT_HUB_ENDPOINT = "https://huggingface.co"
EXIT_READY, EXIT_NOT_READY = 0, 1

# Distribution names whose versions matter when something is slow or does not load.
_PACKAGES = (
    "torch", "torchvision", "transformers", "sam2", "supervision", "huggingface-hub",
    "numpy", "pillow", "hydra-core", "gradio",
)
_SOURCE_LABELS = {
    "path": "at the given path",
    "models-dir": "in models/",
    "hf-cache": "in the Hugging Face cache",
    "download": "downloaded",
}
SAM2_EXTENSION_NOTE = (
    "SAM2's optional CUDA extension (sam2._C) computes connected components for its mask "
    "post-processing: filling small holes and removing small specks (max_hole_area / "
    "max_sprinkle_area). Without it SAM2 skips that step with a warning; masks are otherwise "
    "the same. It only exists for CUDA, so CPU and Apple machines never have it."
)


def download_command(name: str) -> str:
    """The command that fetches a registry model's weights into ``models/``."""
    return f"python -m grounded_sam download {name}"


def configured_models(detector: str | os.PathLike[str] | None = None,
                      segmenter: str | os.PathLike[str] | None = None) -> tuple[str, str]:
    """The detector and segmenter to check: the arguments, else ``$GROUNDED_SAM_DETECTOR`` /
    ``$GROUNDED_SAM_SEGMENTER``, else the registry defaults."""
    chosen_detector = detector or os.environ.get(DETECTOR_ENV) or DEFAULT_DETECTOR
    chosen_segmenter = segmenter or os.environ.get(SEGMENTER_ENV) or DEFAULT_SEGMENTER
    return os.fspath(chosen_detector), os.fspath(chosen_segmenter)


def collect_report(
    detector: str | os.PathLike[str] | None = None,
    segmenter: str | os.PathLike[str] | None = None,
    device: str | None = None,
    *,
    check_hub: bool = True,
    load: bool = False,
    models_dir: Path | None = None,
    hub_timeout: float = HUB_TIMEOUT_S,
) -> dict[str, Any]:
    """Checks this machine's set-up for labeling.

    Args:
        detector: Registry name or folder of the detector to check; ``None`` means
            ``$GROUNDED_SAM_DETECTOR``, else the registry default.
        segmenter: Registry name or ``.pt`` of the segmenter to check; ``None`` means
            ``$GROUNDED_SAM_SEGMENTER``, else the registry default.
        device: The device to report on (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``); ``None``
            means ``$GROUNDED_SAM_DEVICE`` (as the app reads it), else ``auto``.
        check_hub: Try to reach the Hugging Face hub (skipped when ``HF_HUB_OFFLINE`` is set).
        load: Also load the configured models on ``device`` and time it.
        models_dir: The project's models folder; defaults to ``models/`` (or ``$GROUNDED_SAM_MODELS_DIR``).
        hub_timeout: Seconds to wait for the hub.

    Returns:
        A JSON-serialisable dict with the keys ``python``, ``packages``, ``torch``, ``devices``,
        ``device``, ``sam2_extension``, ``paths``, ``hub``, ``models`` (one row per registry
        model, plus configured paths), ``configured`` (``detector`` and ``segmenter`` rows, with
        ``load`` results when asked; no ``segmenter`` when the detector segments by itself, as
        ``sam3`` does), ``segmenter_used``, ``problems`` (why the configured models cannot be used),
        ``notes`` (what makes it slow or may surprise) and ``ok``.
    """
    from grounded_sam.models.weights import hf_cache_dir, hub_offline, project_models_dir

    detector_name, segmenter_name = configured_models(detector, segmenter)
    device = device or os.environ.get(DEVICE_ENV) or "auto"
    models_dir = models_dir or project_models_dir()
    problems: list[str] = []
    notes: list[str] = []

    torch_info, devices = _torch_report()
    device_info = _device_report(device, torch_info)
    offline = hub_offline()
    report: dict[str, Any] = {
        "python": {"version": platform.python_version(), "executable": sys.executable, "platform": platform.platform()},
        "packages": _package_versions(),
        "torch": torch_info,
        "devices": devices,
        "device": device_info,
        "sam2_extension": _sam2_extension_report(torch_info),
        "paths": {"models_dir": str(models_dir), "hf_cache": hf_cache_dir()},
        "hub": _hub_report(offline, check_hub, hub_timeout),
    }
    one_model = _segments_by_itself(detector_name)
    rows, configured = _model_rows(detector_name, None if one_model else segmenter_name, models_dir)
    report["models"] = rows
    report["configured"] = configured
    report["segmenter_used"] = not one_model
    if one_model:
        notes.append(
            f"The detector {detector_name!r} segments by itself (a one-model pipeline): the segmenter "
            f"{segmenter_name!r} is not used, so it is not checked. Clicks on its masks are refined by SAM 3's "
            "tracker from the same weights."
        )

    if torch_info["error"]:
        problems.append(
            f"torch cannot be imported ({torch_info['error']}): "
            "install the requirements (pip install -r requirements.txt)."
        )
    if device_info["error"]:
        problems.append(device_info["error"])
    for kind, row in configured.items():
        if not row["found"]:
            first_line = (row["error"] or "not found").splitlines()[0]
            fix = f"download them with: {row['download']}" if row["download"] else first_line
            problems.append(f"The {kind} {row['name']!r} has no usable weights; {fix}")
    if load:
        _load_configured(configured, device, models_dir, device_info, problems)

    notes.extend(_speed_notes(torch_info, device_info, report["sam2_extension"]))
    hub = report["hub"]
    if hub["checked"] and not hub["reachable"]:
        notes.append(
            f"The Hugging Face hub ({hub['endpoint']}) is unreachable ({hub['error']}): missing weights cannot be "
            "downloaded. Copy them into the models folder, or set HF_HUB_OFFLINE=1 to stop trying."
        )
    report["problems"] = problems
    report["notes"] = notes
    report["ok"] = not problems
    return report


def report_exit_code(report: dict[str, Any]) -> int:
    """0 when the configured models can be loaded (and loaded, when ``load`` was asked), else 1."""
    return EXIT_READY if report.get("ok") else EXIT_NOT_READY


def format_report(report: dict[str, Any]) -> str:
    """The report as a few lines of plain text."""
    python, torch_info, device = report["python"], report["torch"], report["device"]
    packages = ", ".join(f"{name} {version}" for name, version in report["packages"].items() if version)
    lines = [
        f"Python     {python['version']} ({python['executable']}) on {python['platform']}",
        f"Packages   {packages or 'none found'}",
    ]
    if torch_info["error"]:
        lines.append(f"torch      cannot be imported: {torch_info['error']}")
    else:
        cuda = f"built for CUDA {torch_info['cuda_build']}" if torch_info["cuda_build"] else "CPU-only build"
        lines.append(f"torch      {torch_info['version']}, {cuda}; "
                     f"CUDA available: {_yes(torch_info['cuda_available'])}, "
                     f"MPS available: {_yes(torch_info['mps_available'])}")
    lines.append("Devices    " + "; ".join(_device_line(d) for d in report["devices"]))
    if device["error"]:
        lines.append(f"Device     {device['requested']}: {device['error']}")
    else:
        auto = f" (auto would pick {device['auto']})" if device["auto"] not in (None, device["resolved"]) else ""
        lines.append(f"Device     {device['requested']} -> {device['resolved']}{auto}, {device['precision']} "
                     f"(--precision auto), SAM2 boxes per decoder call: {device['box_chunk_size']}")
    if not torch_info["error"]:
        cpu_bf16 = device.get("cpu_bf16")
        lines.append("CPU bf16   " + (f"yes ({cpu_bf16}): bf16 autocast runs natively on this CPU" if cpu_bf16 else
                                      "no AMX or AVX-512 BF16: the CPU runs fp32 (bf16 would be emulated, slower)"))
    ext = report["sam2_extension"]
    lines.append(f"SAM2 ext   sam2._C {'built' if ext['built'] else 'not built'}"
                 + ("" if ext["built"] else f" ({ext['error']}); {ext['impact']}"))
    lines.append(f"Hub        {_hub_line(report['hub'])}")
    lines.append(f"Models     folder {report['paths']['models_dir']}; HF cache {report['paths']['hf_cache']}")
    for row in report["models"]:
        mark = "*" if row["configured"] else " "
        lines.append(f"  {mark} {row['kind']:<9} {row['name']:<24} {_model_state(row)}")
    lines.append("  (* = configured: --detector-model / --segmenter-model, "
                 "else GROUNDED_SAM_DETECTOR / GROUNDED_SAM_SEGMENTER, else the defaults)")
    for kind, row in report["configured"].items():
        loaded = row.get("load")
        if loaded:
            if loaded["ok"]:
                state = f"loaded on {loaded['device']} in {loaded['seconds']:.1f} s"
            else:
                state = f"not loaded: {loaded['error'].splitlines()[0][:200]}"
            lines.append(f"Load       {kind} {row['name']}: {state}")
    for note in report["notes"]:
        lines.append(f"Note       {note}")
    if report["problems"]:
        lines.append("Problems")
        lines.extend(f"  - {problem}" for problem in report["problems"])
    lines.append("Ready: the configured models can be used." if report["ok"] else "NOT READY: fix the problems above.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- torch and devices


def _package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _torch_report() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    info: dict[str, Any] = {
        "version": None, "cuda_build": None, "cuda_available": False, "cudnn": None, "mps_available": False,
        "cpu_threads": None, "error": None, "error_cuda": None, "error_mps": None,
    }
    devices: list[dict[str, Any]] = []
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken torch install shows as ImportError, OSError (DLLs) and more
        info["error"] = f"{type(exc).__name__}: {exc}"
        return info, devices
    info["version"] = torch.__version__
    info["cuda_build"] = torch.version.cuda
    info["cpu_threads"] = torch.get_num_threads()
    devices.append({"name": "cpu", "description": platform.processor() or platform.machine(),
                    "threads": torch.get_num_threads(), "bf16": False})
    try:
        info["cuda_available"] = bool(torch.cuda.is_available())
        if info["cuda_available"]:
            info["cudnn"] = torch.backends.cudnn.version()
            for index in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(index)
                devices.append({
                    "name": f"cuda:{index}", "description": props.name,
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "compute_capability": f"{props.major}.{props.minor}",
                    # bf16 autocast pays off from Ampere (compute capability 8) on.
                    "bf16": props.major >= 8,
                })
    except Exception as exc:  # noqa: BLE001 - a driver mismatch raises RuntimeError from deep inside torch
        info["error_cuda"] = f"{type(exc).__name__}: {exc}"
    try:
        backend = getattr(torch.backends, "mps", None)
        info["mps_available"] = bool(backend is not None and backend.is_available())
        if info["mps_available"]:
            devices.append({"name": "mps", "description": "Apple Metal (MPS)", "bf16": False})
    except Exception as exc:  # noqa: BLE001 - reported, never fatal
        info["error_mps"] = f"{type(exc).__name__}: {exc}"
    return info, devices


def _device_report(device: str, torch_info: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {"requested": device, "resolved": None, "auto": None, "bf16": False, "precision": None,
                            "cpu_bf16": None, "box_chunk_size": None, "error": None}
    if torch_info["error"]:
        info["error"] = "no device can be chosen without torch."
        return info
    from grounded_sam.models.devices import (
        auto_precision,
        bf16_supported,
        cpu_bf16_feature,
        default_box_chunk_size,
        resolve_device,
    )

    try:
        info["auto"] = str(resolve_device("auto"))
    except Exception as exc:  # noqa: BLE001 - CUDA initialisation errors surface here; reported below if they matter
        logger.debug("resolve_device('auto') failed: %s", exc)
    try:
        info["cpu_bf16"] = cpu_bf16_feature()
    except Exception as exc:  # noqa: BLE001 - feature detection must never stop the report
        logger.debug("CPU bf16 detection failed: %s", exc)
    try:
        resolved = resolve_device(device)
        info["bf16"] = bool(bf16_supported(resolved))
        picked = auto_precision(resolved)
    except GroundedSamError as exc:
        info["error"] = str(exc)
        return info
    except Exception as exc:  # noqa: BLE001 - CUDA initialisation errors surface here
        info["error"] = f"Device {device!r} cannot be used: {type(exc).__name__}: {exc}"
        return info
    info["resolved"] = str(resolved)
    info["precision"] = "bf16 autocast" if picked == "bf16" else "fp32"
    info["box_chunk_size"] = default_box_chunk_size(resolved)
    return info


def _sam2_extension_report(torch_info: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {"built": False, "error": None, "impact": "", "note": SAM2_EXTENSION_NOTE}
    if torch_info["error"]:
        info["error"] = "torch cannot be imported"
    else:
        try:
            importlib.import_module("sam2._C")
            info["built"] = True
        except ImportError as exc:
            # A missing module is the usual CPU install; a failing one is an ABI mismatch worth its message.
            missing = getattr(exc, "name", None) == "sam2._C"
            info["error"] = "not compiled" if missing else f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - a compiled extension can fail to load in many ways
            info["error"] = f"{type(exc).__name__}: {exc}"
    if not info["built"]:
        info["impact"] = ("SAM2 skips filling small mask holes and removing small specks (with a warning); "
                          "masks are otherwise the same" if torch_info["cuda_available"]
                          else "not needed here (it is CUDA-only)")
    return info


def _speed_notes(torch_info: dict[str, Any], device: dict[str, Any], ext: dict[str, Any]) -> list[str]:
    if torch_info["error"] or device["error"]:
        return []
    notes: list[str] = []
    nvidia_present = shutil.which("nvidia-smi") is not None or Path("/dev/nvidia0").exists()
    if not torch_info["cuda_available"] and nvidia_present:
        if torch_info["cuda_build"] is None:
            notes.append("An NVIDIA GPU driver is installed but this torch build is CPU-only: install a CUDA build "
                         "of torch (https://pytorch.org/get-started/locally/) to use the GPU.")
        else:
            notes.append(f"torch is built for CUDA {torch_info['cuda_build']} and an NVIDIA driver is installed, but "
                         "torch sees no GPU: check nvidia-smi, the driver version and CUDA_VISIBLE_DEVICES. "
                         + (torch_info["error_cuda"] or ""))
    if device["resolved"] == "cpu":
        threads = torch_info["cpu_threads"]
        notes.append(f"Models run on the CPU ({threads} threads): expect seconds to minutes per image. "
                     "florence-2-base with sam2.1-hiera-tiny is the fastest pair.")
    elif device["resolved"] and device["resolved"].startswith("cuda") and not device["bf16"]:
        notes.append("This GPU lacks bf16 (older than Ampere): inference runs in fp32, slower and using more memory.")
    if device["resolved"] and device["resolved"].startswith("cuda") and not ext["built"]:
        notes.append(f"sam2._C is not built: {ext['impact']}.")
    return notes


def _device_line(device: dict[str, Any]) -> str:
    if device["name"] == "cpu":
        return f"cpu ({device['description'] or 'unknown'}, {device['threads']} threads)"
    if device["name"].startswith("cuda"):
        return (f"{device['name']} {device['description']} ({device['memory_gib']} GiB, "
                f"compute {device['compute_capability']}, bf16 {_yes(device['bf16'])})")
    return f"{device['name']} ({device['description']})"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


# --------------------------------------------------------------------------- hub


def hub_endpoint() -> str:
    """The hub address ``huggingface_hub`` uses (``$HF_ENDPOINT``, read now)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_HUB_ENDPOINT).rstrip("/")


def check_hub_reachable(endpoint: str, timeout: float = HUB_TIMEOUT_S) -> dict[str, Any]:
    """Tries one HEAD request to the hub.

    Any HTTP answer, an error status included, counts as reachable: the question is whether the
    network path works. The request runs in a daemon thread so a hanging DNS look-up (which the
    socket timeout does not cover) cannot hold the doctor past ``timeout`` plus a second.

    Returns:
        ``{"reachable": bool, "seconds": float | None, "error": str | None}``.
    """
    result: dict[str, Any] = {"reachable": False, "seconds": None, "error": "timed out"}

    def probe() -> None:
        started = time.perf_counter()
        try:
            request = urllib.request.Request(endpoint, method="HEAD", headers={"User-Agent": "grounded-sam-doctor"})
            with urllib.request.urlopen(request, timeout=timeout):  # noqa: S310 - the URL is the configured hub
                pass
            result.update(reachable=True, error=None)
        except urllib.error.HTTPError:
            result.update(reachable=True, error=None)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            result.update(error=f"{type(exc).__name__}: {reason}")
        result["seconds"] = round(time.perf_counter() - started, 3)

    thread = threading.Thread(target=probe, name="hub-check", daemon=True)
    thread.start()
    thread.join(timeout + 1.0)
    return dict(result)


def _hub_report(offline: bool, check: bool, timeout: float) -> dict[str, Any]:
    info: dict[str, Any] = {"endpoint": hub_endpoint(), "offline": offline, "checked": False, "reachable": None,
                            "seconds": None, "error": None}
    if offline or not check:
        return info
    info.update(check_hub_reachable(info["endpoint"], timeout), checked=True)
    return info


def _hub_line(hub: dict[str, Any]) -> str:
    if hub["offline"]:
        return f"offline (HF_HUB_OFFLINE is set): {hub['endpoint']} not tried, weights only from models/ and the cache"
    if not hub["checked"]:
        return f"{hub['endpoint']} not checked"
    if hub["reachable"]:
        return f"{hub['endpoint']} reachable ({hub['seconds']:.2f} s)"
    return f"{hub['endpoint']} unreachable: {hub['error']}"


# --------------------------------------------------------------------------- models


def _segments_by_itself(detector: str) -> bool:
    """True when the detector makes the masks itself (SAM 3), so no segmenter is used; False when unknown."""
    from grounded_sam.models.weights import detector_family

    try:
        return detector_family(detector) == "sam3"
    except GroundedSamError:
        return False  # an unknown or unreadable detector is reported by its own row


def _model_rows(
    detector: str, segmenter: str | None, models_dir: Path
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every registry model's row, plus a row per configured path; ``segmenter`` None: none is configured."""
    from grounded_sam.models.weights import looks_like_path

    rows: list[dict[str, Any]] = []
    tables = (("detector", DETECTORS, DEFAULT_DETECTOR), ("segmenter", SEGMENTERS, DEFAULT_SEGMENTER))
    for kind, table, default in tables:
        for name in table:
            rows.append(_model_row(kind, name, models_dir, default=name == default))
    configured: dict[str, dict[str, Any]] = {}
    for kind, name in (("detector", detector), ("segmenter", segmenter)):
        if name is None:
            continue
        row = next((r for r in rows if r["kind"] == kind and r["name"] == name and not looks_like_path(name)), None)
        if row is None:
            row = _model_row(kind, name, models_dir, default=False)
            rows.append(row)
        row["configured"] = True
        configured[kind] = row
    return rows, configured


def _model_row(kind: str, name: str, models_dir: Path, *, default: bool) -> dict[str, Any]:
    from grounded_sam.models.weights import looks_like_path, resolve_detector, resolve_segmenter

    table = DETECTORS if kind == "detector" else SEGMENTERS
    registered = not looks_like_path(name) and name in table
    spec = table[name] if registered else None
    row: dict[str, Any] = {
        "kind": kind, "name": name, "registered": registered, "default": default, "configured": False,
        "found": False, "source": None, "location": None, "config": None, "error": None,
        "download": download_command(name) if registered else None,
        "license": spec.license if spec else None, "gated": bool(spec and spec.gated),
    }
    try:
        if kind == "detector":
            weights = resolve_detector(name, models_dir=models_dir, allow_download=False)
            row["location"] = str(weights.path)
        else:
            weights = resolve_segmenter(name, models_dir=models_dir, allow_download=False)
            row["location"], row["config"] = str(weights.checkpoint), str(weights.config)
        row.update(found=True, source=weights.source)
    except GroundedSamError as exc:
        row["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - a corrupt cache can raise anything from huggingface_hub
        row["error"] = f"{type(exc).__name__}: {exc}"
    return row


def _model_state(row: dict[str, Any]) -> str:
    if row["found"] and row["source"] == "path":
        return "found" + (f" (config {row['config']})" if row["config"] else "")
    if row["found"]:
        return f"found {_SOURCE_LABELS.get(row['source'], row['source'])}: {row['location']}"
    if row["download"]:
        gated = " (gated: accept its licence on the hub and log in first)" if row["gated"] else ""
        return f"missing -> {row['download']}{gated}"
    first_line = (row["error"] or "not found").splitlines()[0]
    return f"not usable: {first_line}"


def _load_configured(
    configured: dict[str, dict[str, Any]],
    device: str,
    models_dir: Path,
    device_info: dict[str, Any],
    problems: list[str],
) -> None:
    from grounded_sam.models.loading import load_detector, load_segmenter

    loaders = {"detector": load_detector, "segmenter": load_segmenter}
    for kind, row in configured.items():
        if not row["found"] or device_info["error"]:
            row["load"] = {"ok": False, "seconds": None, "device": device_info["resolved"],
                           "error": "skipped: " + ("no weights" if not row["found"] else "no usable device")}
            continue
        started = time.perf_counter()
        try:
            loaders[kind](row["name"], device, models_dir=models_dir)
            row["load"] = {"ok": True, "seconds": round(time.perf_counter() - started, 3),
                           "device": device_info["resolved"], "error": None}
        except Exception as exc:  # noqa: BLE001 - the doctor reports every load failure instead of dying on it
            message = str(exc) if isinstance(exc, GroundedSamError) else f"{type(exc).__name__}: {exc}"
            row["load"] = {"ok": False, "seconds": round(time.perf_counter() - started, 3),
                           "device": device_info["resolved"], "error": message}
            problems.append(
                f"The {kind} {row['name']!r} was found but failed to load on {device_info['resolved']}: {message}"
            )
            logger.debug("Loading %s %s failed", kind, row["name"], exc_info=True)


def add_parser(commands: Any) -> None:
    """Adds the ``doctor`` command to ``commands`` (an argparse subparsers object)."""
    doctor = commands.add_parser("doctor", help="Explain this machine: versions, devices, weights, hub.")
    doctor.add_argument("--detector-model", default=None, metavar="NAME_OR_PATH",
                        help="Detector to check (default: $GROUNDED_SAM_DETECTOR, else the default).")
    doctor.add_argument("--segmenter-model", default=None, metavar="NAME_OR_PATH",
                        help="Segmenter to check (default: $GROUNDED_SAM_SEGMENTER, else the default).")
    doctor.add_argument("--device", default=None, help="Device to check (default: $GROUNDED_SAM_DEVICE, else auto).")
    doctor.add_argument("--load", action="store_true", help="Also load the models on the device and time it.")
    doctor.add_argument("--no-hub", action="store_true", help="Skip the Hugging Face hub reachability check.")
    doctor.add_argument("--json", action="store_true", help="Machine-readable output.")
    doctor.set_defaults(run=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    report = collect_report(args.detector_model, args.segmenter_model, args.device,
                            check_hub=not args.no_hub, load=args.load)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return report_exit_code(report)


