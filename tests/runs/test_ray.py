"""The Ray engine: the local engine's files byte for byte, a killed worker loses nothing, an image that kills
every worker fails alone, and a run resumes across engines.

One local Ray (``num_cpus=2``) serves the module. Each Ray run starts its own actor pool, which imports torch
and loads the tiny models (about 10-20 s on a shared 2-core CPU), so the runs are few and each checks a lot.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from grounded_sam.errors import EngineError, ModelNotFoundError, OptionError
from grounded_sam.runs.batch import LocalEngine, run_labeling
from grounded_sam.runs.ray_engine import (
    KILL_ENV,
    KillSwitch,
    RayEngine,
    WorkerPlan,
    pack_detections,
    pack_labeled,
    plan_workers,
    unpack_detections,
    unpack_labeled,
)
from tests.factories import make_detections
from tests.fakes import ShapesPipe, image_key, shapes, write_image
from tests.readers import manifest_lines, run_files

CATEGORIES = "truck, tire"
#: Every dataset format and the overlays: everything a run can write is compared.
RUN = {"formats": "all", "plot": True}


# ------------------------------------------------------------------------------------ without Ray


@pytest.mark.parametrize(
    ("resources", "kwargs", "plan"),
    [
        # 2 CPUs, no GPU: a quarter (at least half a CPU) is left to Ray Data, one worker per 2 cores left.
        ({"CPU": 2}, {}, WorkerPlan(1, 1.5, 0.0, 1)),
        ({"CPU": 2}, {"workers": 2}, WorkerPlan(2, 0.75, 0.0, 1)),
        ({"CPU": 16}, {}, WorkerPlan(6, 2.0, 0.0, 2)),
        # GPUs: one worker per GPU, up to 2 CPUs each; a CPU device takes none.
        ({"CPU": 32, "GPU": 4}, {}, WorkerPlan(4, 2.0, 1.0, 2)),
        ({"CPU": 32, "GPU": 4}, {"gpus_per_worker": 2}, WorkerPlan(2, 2.0, 2.0, 2)),
        ({"CPU": 8, "GPU": 2}, {"device": "cpu"}, WorkerPlan(3, 2.0, 0.0, 2)),
        ({"CPU": 4, "GPU": 1}, {"workers": 1, "threads_per_worker": 3}, WorkerPlan(1, 2.0, 1.0, 3)),
        # Two 4-CPU nodes: one worker still fits on one node.
        ({"CPU": 8}, {"workers": 1, "nodes": [{"CPU": 4}, {"CPU": 4}]}, WorkerPlan(1, 3.0, 0.0, 3)),
    ],
)
def test_plan_workers_sizes_the_pool_from_the_cluster(resources, kwargs, plan):
    assert plan_workers(resources, **kwargs) == plan


@pytest.mark.parametrize(
    ("resources", "kwargs", "error", "message"),
    [
        ({"CPU": 8, "GPU": 1}, {"workers": 2}, EngineError, "need 2 GPUs, but the Ray cluster has 1"),
        # Two GPUs per worker on nodes of three: one such worker per node, not three.
        ({"CPU": 16, "GPU": 6}, {"workers": 3, "gpus_per_worker": 2,
                                 "nodes": [{"CPU": 8, "GPU": 3}, {"CPU": 8, "GPU": 3}]}, EngineError, r"\(2 such"),
        ({"CPU": 8}, {"gpus_per_worker": 1}, EngineError, "the Ray cluster has 0"),
        ({"GPU": 1}, {}, EngineError, "has no CPUs"),
        ({"CPU": 8}, {"workers": 0}, OptionError, "--workers must be >= 1"),
        ({"CPU": 8}, {"gpus_per_worker": -1}, OptionError, "--gpus-per-worker must be >= 0"),
    ],
)
def test_plan_workers_refuses_what_would_wait_for_ever(resources, kwargs, error, message):
    with pytest.raises(error, match=message):
        plan_workers(resources, **kwargs)


def test_detections_travel_as_rle_and_come_back_identical():
    masks, class_ids, scores = shapes(60, 80)
    detections = make_detections([[1.25, 2.5, 40.125, 50.0], [3, 4, 70, 55], [0.1, 0.2, 79.9, 59.9]], mask=masks,
                                  class_id=class_ids, confidence=scores, class_name=["truck", "tire", "tire"])
    detections.data["detector_score"] = np.array([0.5, np.nan, 0.25], dtype=np.float32)
    detections.metadata.update(class_names=["truck", "tire"], image_size=(80, 60))
    packed = pack_detections(detections)
    assert all(isinstance(rle["counts"], str) for rle in packed["masks"])  # RLE, not the (3, 60, 80) masks
    back = unpack_detections(packed)
    assert back.mask.dtype == bool and np.array_equal(back.mask, detections.mask)
    for name in ("xyxy", "confidence", "class_id"):
        assert getattr(back, name).dtype == getattr(detections, name).dtype
        assert np.array_equal(getattr(back, name), getattr(detections, name))
    assert np.array_equal(back.data["detector_score"], detections.data["detector_score"], equal_nan=True)
    assert list(back.data["class_name"]) == ["truck", "tire", "tire"] and back.metadata == detections.metadata


def test_an_empty_result_and_a_failure_travel_too():
    from grounded_sam.detections import empty_detections
    from grounded_sam.runs.batch import Labeled

    empty = unpack_labeled(pack_labeled(Labeled(detections=empty_detections((80, 60)), size=(80, 60), worker="w")))
    assert empty.detections.mask.shape == (0, 60, 80) and empty.size == (80, 60) and empty.worker == "w"
    failed = unpack_labeled(pack_labeled(Labeled(size=(8, 6), error="RuntimeError: boom", trace="Traceback ...")))
    assert failed.detections is None and (failed.error, failed.trace, failed.size) == ("RuntimeError: boom",
                                                                                        "Traceback ...", (8, 6))


def test_the_kill_hook_fires_once_across_workers(tmp_path):
    switch = KillSwitch.from_env({KILL_ENV: f"2:{tmp_path / 'marker'}"})
    assert switch == KillSwitch(2, tmp_path / "marker")
    assert [switch.fires(n) for n in (1, 2, 3)] == [False, True, False]
    assert not switch.fires(2)  # the restarted worker, or another one, reaching its 2nd image
    assert KillSwitch.from_env({}) is None
    with pytest.raises(OptionError, match="N:MARKER_FILE"):
        KillSwitch.from_env({KILL_ENV: "soon"})


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(EngineError, match=r"pip install -r requirements-ray.txt"):
        RayEngine()


@pytest.mark.timeout(60)
def test_an_address_where_nothing_listens_fails_fast_with_the_fix(monkeypatch):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install -r requirements-ray.txt")
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray is already running in this process; the engine would use it instead")
    with pytest.raises(EngineError, match=r"nothing answers at 127.0.0.1:9.*ray start --head"):
        RayEngine("ray://127.0.0.1:9").start(None)


def test_the_app_hands_a_batch_job_to_the_engine_when_a_ray_address_is_set(tiny_models, photos, monkeypatch,
                                                                              tmp_path_factory):
    """The wiring only (the engine itself is tested below): the batch tab builds a RayEngine for the address."""
    import tempfile

    from grounded_sam.app.batch_tab import run_batch
    from grounded_sam.app.options import LabelOptions
    from grounded_sam.app.settings import AppSettings
    from grounded_sam.runs import ray_engine

    made: list[str] = []

    class RecordingEngine(LocalEngine):
        def __init__(self, address: str) -> None:
            made.append(address)

    monkeypatch.setattr(ray_engine, "RayEngine", RecordingEngine)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("app-jobs")))
    settings = AppSettings(detector=str(tiny_models["florence_scripted"]), segmenter=str(tiny_models["sam2"]),
                           device="cpu", ray_address="ray://head:10001")
    updates = list(run_batch(settings, [str(photos / "groceries.jpg")], LabelOptions(categories=CATEGORIES)))
    assert made == ["ray://head:10001"]
    assert "starting the Ray workers" in updates[0].progress_html
    assert updates[-1].results is not None and "Labeled 1 of 1 images" in updates[-1].summary


# ------------------------------------------------------------------------------------ with a local Ray


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """One local Ray for the module: 2 CPUs, no dashboard, no usage reports, quiet."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -r requirements-ray.txt")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        try:
            yield ray
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def awkward_inputs(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example photos plus an EXIF-rotated JPEG, a grayscale PNG and a corrupt JPEG."""
    folder = tmp_path_factory.mktemp("ray-inputs")
    for photo in sorted(photos.glob("*.jpg")):
        shutil.copy(photo, folder / photo.name)
    write_image(folder / "rotated.jpg", key=40, size=(320, 240), exif_orientation=6)
    gray = np.random.default_rng(7).integers(0, 256, (150, 200), dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(folder / "gray.png")
    data = (photos / "truck.jpg").read_bytes()
    (folder / "corrupt.jpg").write_bytes(data[: len(data) // 4])
    return folder


@pytest.fixture(scope="module")
def local_reference(scripted_pipe: Any, awkward_inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local engine's run over the awkward inputs, with one torch thread as each Ray worker has."""
    import torch

    out = tmp_path_factory.mktemp("ray-reference") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run_labeling(scripted_pipe, [awkward_inputs], CATEGORIES, out, **RUN)
    finally:
        torch.set_num_threads(threads)
    assert [Path(o.source).name for o in summary.failed] == ["corrupt.jpg"]
    return out


def assert_same_outputs(out: Path, reference: Path) -> None:
    got, expected = run_files(out), run_files(reference)
    assert sorted(got) == sorted(expected)
    different = [name for name in expected if got[name] != expected[name]]
    assert not different, f"differ from the local engine's: {different}"


@pytest.mark.timeout(300)
def test_ray_outputs_match_the_local_engine_byte_for_byte(local_ray, scripted_pipe, awkward_inputs, local_reference,
                                                          tmp_path):
    progress: list[tuple[int, int, str]] = []
    summary = run_labeling(scripted_pipe, [awkward_inputs], CATEGORIES, tmp_path / "out", **RUN,
                           engine=RayEngine(workers=2),
                           on_progress=lambda done, total, outcome: progress.append((done, total, outcome.stem)))
    assert_same_outputs(tmp_path / "out", local_reference)
    assert manifest_lines(tmp_path / "out") == manifest_lines(local_reference)  # the same lines in the same order
    stems = ["cars", "corrupt", "gray", "groceries", "rotated", "truck"]
    assert [stem for _, _, stem in progress] == stems and [d for d, _, _ in progress] == list(range(1, 7))
    assert [o.stem for o in summary.outcomes] == stems
    failed = summary.failed
    assert [o.stem for o in failed] == ["corrupt"] and "truncated" in failed[0].error and failed[0].worker
    # Two workers shared the five good images, and the summary says who did what.
    assert sum(summary.per_worker.values()) == 5 and all(o.worker for o in summary.labeled)
    assert "Labeled per worker: " in summary.as_text()
    rotated = json.loads((tmp_path / "out" / "labels" / "rotated.json").read_text())["image"]
    assert (rotated["width"], rotated["height"]) == (240, 320)  # loaded upright on the worker and here


@pytest.fixture(scope="module")
def small_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small images for :class:`ShapesPipe` (its masks shift with each image's key)."""
    folder = tmp_path_factory.mktemp("ray-small")
    for key in range(1, 7):
        write_image(folder / f"image{key}.{'jpg' if key % 2 else 'png'}", key, size=(96, 64))
    return folder


@pytest.fixture(scope="module")
def small_reference(small_inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local engine's run of :class:`ShapesPipe` over :func:`small_inputs`."""
    out = tmp_path_factory.mktemp("ray-small-reference") / "out"
    assert len(run_labeling(ShapesPipe(), [small_inputs], "a, b", out, **RUN).labeled) == 6
    return out


@pytest.mark.timeout(180)
def test_a_worker_killed_mid_run_loses_nothing(local_ray, small_inputs, small_reference, tmp_path):
    marker = tmp_path / "killed"
    summary = run_labeling(ShapesPipe(), [small_inputs], "a, b", tmp_path / "out", **RUN,
                           engine=RayEngine(workers=2, kill=KillSwitch(2, marker)))
    assert marker.is_file(), "the test hook did not kill a worker"
    assert len(summary.labeled) == 6 and not summary.failed
    assert_same_outputs(tmp_path / "out", small_reference)


@pytest.mark.timeout(180)
def test_a_ray_run_stopped_mid_way_then_finished_locally_ends_with_the_same_files(
    local_ray, small_inputs, small_reference, tmp_path
):
    out = tmp_path / "out"
    done: list[str] = []
    first = run_labeling(ShapesPipe(), [small_inputs], "a, b", out, **RUN, engine=RayEngine(workers=2),
                         on_progress=lambda d, t, outcome: done.append(outcome.stem), should_stop=lambda: len(done) >= 2)
    assert first.interrupted and [o.stem for o in first.outcomes] == ["image1", "image2"]
    assert (out / "coco" / "annotations.json").is_file()  # the dataset files of the two images done
    second = run_labeling(ShapesPipe(), [small_inputs], "a, b", out, **RUN)  # the local engine
    assert [o.stem for o in second.skipped] == ["image1", "image2"] and len(second.labeled) == 4
    assert_same_outputs(out, small_reference)
    assert manifest_lines(out) == manifest_lines(small_reference)


class ExitingPipe(ShapesPipe):
    """:class:`ShapesPipe` whose process exits (as one killed by the OOM killer) on the image with ``key``."""

    def __init__(self, key: int) -> None:
        super().__init__()
        self.key = key

    def __call__(self, rgb: np.ndarray, categories: Any) -> Any:
        if image_key(rgb) == self.key:
            os._exit(1)
        return super().__call__(rgb, categories)


@pytest.mark.timeout(240)
def test_an_image_that_kills_every_worker_fails_alone_after_the_retries(local_ray, tmp_path):
    folder = tmp_path / "in"
    for key in (1, 2, 3, 4):
        write_image(folder / f"image{key}.png", key, size=(48, 32))
    summary = run_labeling(ExitingPipe(key=3), [folder], "a, b", tmp_path / "out",
                           engine=RayEngine(workers=2, retries=1))
    assert [o.stem for o in summary.labeled] == ["image1", "image2", "image4"]
    [failed] = summary.failed
    assert failed.stem == "image3" and "died 2 times" in failed.error
    manifest = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[1:]]
    assert [(Path(r["source"]).name, r["status"]) for r in manifest][-1] == ("image3.png", "failed")
    # Labeled here by the local engine, image3 would end the run; the Ray run wrote the other three in full.
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == ["image1.json", "image2.json",
                                                                             "image4.json"]


@pytest.mark.timeout(180)
def test_missing_weights_on_the_workers_stop_the_run_with_the_loaders_message(local_ray, tiny_models, photos, tmp_path):
    from grounded_sam.pipeline import GroundedSAM2

    pipe = GroundedSAM2(tmp_path / "no-such-florence", tiny_models["sam2"], device="cpu")
    with pytest.raises(ModelNotFoundError, match="no-such-florence"):
        run_labeling(pipe, [photos / "groceries.jpg"], CATEGORIES, tmp_path / "out", engine=RayEngine(workers=1))
