"""The command line, run as users run it: ``python -m grounded_sam ...`` in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import REPO


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "grounded_sam", *args], cwd=REPO, env=full_env, capture_output=True, text=True, timeout=300,
    )


def test_label_the_shared_photos_with_overlays(tiny_models, shared_images, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "label", str(shared_images), "--categories", "truck, tire", "--out", str(out), "--plot",
        "--detector-model", str(tiny_models["florence_scripted"]), "--segmenter-model", str(tiny_models["sam2"]),
        "--nms", "none",
    )
    assert result.returncode == 0, result.stderr
    photos = sorted(p.stem for p in shared_images.glob("*.jpg"))
    assert sorted(p.stem for p in (out / "labels").glob("*.json")) == photos
    assert sorted(p.stem for p in (out / "overlays").glob("*.png")) == photos
    record = json.loads((out / "labels" / "truck.json").read_text())
    assert record["image"]["width"] == Image.open(shared_images / "truck.jpg").width
    assert record["categories"] == ["truck", "tire"]
    assert [d["class_name"] for d in record["detections"]] == ["truck", "truck", "tire", "tire"]
    assert all(d["mask"]["size"] == [record["image"]["height"], record["image"]["width"]] for d in record["detections"])
    assert record["settings"]["categories"] == "truck, tire"
    assert "Labeled 3 of 3 images" in result.stderr


def test_a_corrupt_file_is_reported_and_the_rest_written(tiny_models, shared_images, tmp_path):
    folder = tmp_path / "in"
    shutil.copytree(shared_images, folder)
    (folder / "sub").mkdir()
    shutil.copy(shared_images / "truck.jpg", folder / "sub" / "truck.jpg")  # same name, other folder
    data = (shared_images / "cars.jpg").read_bytes()
    (folder / "corrupt.jpg").write_bytes(data[: len(data) // 3])
    out = tmp_path / "out"
    result = run_cli(
        "label", str(folder), "--categories", "truck", "--out", str(out),
        "--detector-model", str(tiny_models["florence_scripted"]), "--segmenter-model", str(tiny_models["sam2"]),
    )
    assert result.returncode == 1
    assert "corrupt.jpg" in result.stderr and "Failed 1" in result.stderr
    written = sorted(p.name for p in (out / "labels").iterdir())
    assert written == ["cars.json", "groceries.json", "sub__truck.json", "truck.json"]


def test_missing_weights_offline_is_a_clear_error(tmp_path, shared_images):
    result = run_cli(
        "label", str(shared_images / "truck.jpg"), "--categories", "truck", "--out", str(tmp_path / "out"),
        env={"GROUNDED_SAM_MODELS_DIR": str(tmp_path / "models"), "HF_HUB_CACHE": str(tmp_path / "hf")},
    )
    assert result.returncode == 2
    assert "No weights found for detector 'florence-2-base'" in result.stderr
    assert "python -m grounded_sam download florence-2-base" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--categories", " , "], "Expected at least one category"),
        (["--categories", "truck", "--device", "tpu"], "Unknown device"),
    ],
)
def test_user_errors_exit_2_without_traceback(tiny_models, shared_images, tmp_path, args, message):
    result = run_cli(
        "label", str(shared_images / "truck.jpg"), "--out", str(tmp_path / "out"),
        "--detector-model", str(tiny_models["florence"]), "--segmenter-model", str(tiny_models["sam2"]), *args,
    )
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_missing_input_is_a_clear_error(tmp_path):
    result = run_cli("label", str(tmp_path / "nope"), "--categories", "truck", "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_models_lists_the_registry(tmp_path):
    result = run_cli("models", "--json", env={"GROUNDED_SAM_MODELS_DIR": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "hf")})
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["name"] for r in rows} >= {"florence-2-base", "florence-2-large", "sam2.1-hiera-tiny", "sam2.1-hiera-large"}
    assert all("download" in r["weights"] for r in rows)


def test_download_offline_is_refused():
    result = run_cli("download", "sam2.1-hiera-tiny")
    assert result.returncode == 2 and "HF_HUB_OFFLINE" in result.stderr
