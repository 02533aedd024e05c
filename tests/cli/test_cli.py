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
from tests.readers import check_coco, check_masks, check_voc, check_yolo


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "grounded_sam", *args], cwd=REPO, env=full_env, capture_output=True, text=True, timeout=300, check=False,
    )


def test_a_folder_with_subfolders_a_repeated_name_and_a_corrupt_file_gives_datasets_readers_accept(
    tiny_models, photos, tmp_path
):
    folder = tmp_path / "in"
    shutil.copytree(photos, folder)
    (folder / "sub").mkdir()
    shutil.copy(photos / "truck.jpg", folder / "sub" / "truck.jpg")  # same name, other folder
    data = (photos / "cars.jpg").read_bytes()
    (folder / "corrupt.jpg").write_bytes(data[: len(data) // 3])
    out = tmp_path / "out"
    result = run_cli(
        "label", str(folder), "--categories", "truck, tire", "--out", str(out), "--format", "coco,yolo,voc,masks",
        "--plot", "--detector-model", str(tiny_models["florence_scripted"]), "--segmenter-model", str(tiny_models["sam2"]),
    )
    assert result.returncode == 1, result.stderr
    assert "Labeled 4 of 5 images" in result.stderr and "Failed 1" in result.stderr and "corrupt.jpg" in result.stderr
    assert "coco/annotations.json" in result.stderr and "yolo/detect/data.yaml" in result.stderr
    stems = ["cars", "groceries", "sub__truck", "truck"]
    for folder_name in ("labels", "images", "overlays"):
        assert sorted(p.stem for p in (out / folder_name).iterdir()) == stems
    record = json.loads((out / "labels" / "truck.json").read_text())
    assert record["image"]["width"] == Image.open(photos / "truck.jpg").width
    assert record["categories"] == ["truck", "tire"] and record["settings"]["categories"] == "truck, tire"
    assert record["detections"] and {d["class_name"] for d in record["detections"]} <= {"truck", "tire"}
    assert all(d["mask"]["size"] == [record["image"]["height"], record["image"]["width"]] for d in record["detections"])
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert lines[0]["settings"]["formats"] == ["coco", "yolo", "voc", "masks"]
    failed = [line for line in lines[1:] if line["status"] == "failed"]
    assert [Path(line["source"]).name for line in failed] == ["corrupt.jpg"] and "truncated" in failed[0]["error"]
    assert all(not p.is_symlink() and p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))

    classes = ["truck", "tire"]
    check_coco(out, classes)
    check_yolo(out, classes, "detect")
    # The tiny random SAM2 paints speckle noise: thousands of specks and holes per mask. A YOLO line is
    # one outline per object, so the cuts joining 2000 specks cost their length in pixels (IoU ~0.92
    # here); realistic masks reach 0.98 (tests/test_formats.py). COCO and VOC keep parts apart.
    check_yolo(out, classes, "segment", min_iou=0.9)
    check_voc(out, classes)
    check_masks(out, classes)


def test_missing_weights_offline_is_a_clear_error(tmp_path, photos):
    result = run_cli(
        "label", str(photos / "truck.jpg"), "--categories", "truck", "--out", str(tmp_path / "out"),
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
        (["--categories", "truck", "--min-score", "2"], "min_score must be within"),
        (["--categories", "truck", "--format", "coco,json"], "Unknown format json"),
    ],
)
def test_user_errors_exit_2_without_traceback(tiny_models, photos, tmp_path, args, message):
    result = run_cli(
        "label", str(photos / "truck.jpg"), "--out", str(tmp_path / "out"),
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


# ------------------------------------------------------------------------------------ kill and resume

NUM_SYNTHETIC = 8


@pytest.fixture(scope="module")
def synthetic_folder(tmp_path_factory) -> Path:
    """Small synthetic photos in two folders (one name repeated) and one corrupt file."""
    from tests.fakes import write_image

    folder = tmp_path_factory.mktemp("synthetic")
    for key in range(NUM_SYNTHETIC):
        write_image(folder / ("a" if key % 2 else "b") / f"img{key // 2}.png", key, size=(160, 120))
    (folder / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder


def label_args(tiny_models, folder: Path, out: Path) -> list[str]:
    return ["label", str(folder), "--categories", "truck, tire", "--out", str(out), "--format", "all", "--plot",
            "--detector-model", str(tiny_models["florence_scripted"]), "--segmenter-model", str(tiny_models["sam2"])]


@pytest.fixture(scope="module")
def uninterrupted(tiny_models, synthetic_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "out"
    result = run_cli(*label_args(tiny_models, synthetic_folder, out))
    assert result.returncode == 1, result.stderr  # the broken file
    return out


def _default_sigint() -> None:
    """In the child: Ctrl-C's default, even where this suite was started in the background (where shells ignore SIGINT)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_and_signal(args: list[str], out: Path, sig: int, after_lines: int, log: Path) -> tuple[int, int]:
    """Starts the CLI, sends ``sig`` once the manifest holds ``after_lines`` image lines; returns (exit code, lines then)."""
    import time

    manifest = out / "manifest.jsonl"
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "grounded_sam", *args], cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"},
            stdout=subprocess.DEVNULL, stderr=stderr, preexec_fn=_default_sigint,
        )
        lines, deadline = 0, time.monotonic() + 240
        while process.poll() is None and time.monotonic() < deadline:
            lines = manifest.read_text().count('"kind": "image"') if manifest.is_file() else 0
            if lines >= after_lines:
                process.send_signal(sig)
                break
            time.sleep(0.01)
        return process.wait(timeout=240), lines


def snapshot(out: Path) -> dict[str, bytes]:
    """Every output file but the manifest; data.yaml's absolute path made neutral."""
    files = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and path.name != "manifest.jsonl":
            data = path.read_bytes()
            if path.name == "data.yaml":
                data = data.replace(str(out.resolve()).encode(), b"<out>")
            files[path.relative_to(out).as_posix()] = data
    return files


def assert_same_outputs(out: Path, reference: Path) -> None:
    got, expected = snapshot(out), snapshot(reference)
    assert sorted(got) == sorted(expected)
    assert [name for name in got if got[name] != expected[name]] == []
    assert not list(out.rglob(".*.tmp"))


def ok_lines_per_source(out: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in (out / "manifest.jsonl").read_text().splitlines()[1:]:
        entry = json.loads(line)
        counts[entry["source"]] = counts.get(entry["source"], 0) + (entry["status"] == "ok")
    return counts


def test_ctrl_c_then_kill_9_then_a_rerun_ends_as_an_uninterrupted_run(tiny_models, synthetic_folder, uninterrupted, tmp_path):
    import signal

    out = tmp_path / "out"
    args = label_args(tiny_models, synthetic_folder, out)

    # Ctrl-C: the image in progress is abandoned, the datasets hold the images done, exit 130.
    code, _ = start_and_signal(args, out, signal.SIGINT, 2, tmp_path / "interrupted.log")
    log = (tmp_path / "interrupted.log").read_text()
    assert code == 130, log
    assert "Interrupted after" in log and "run the same command again to resume" in log
    assert not list(out.rglob(".*.tmp"))
    done = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()[1:]]
    coco = json.loads((out / "coco" / "annotations.json").read_text())
    assert len(coco["images"]) == sum(line["status"] == "ok" for line in done) < NUM_SYNTHETIC

    # kill -9 while resuming: whatever was half done is left as temporary files or without a manifest line.
    code, lines = start_and_signal(args, out, signal.SIGKILL, len(done) + 2, tmp_path / "killed.log")
    assert code == -signal.SIGKILL and lines < NUM_SYNTHETIC + 1, (code, lines)

    result = run_cli(*args)
    assert result.returncode == 1, result.stderr  # the broken file
    assert "Skipped" in result.stderr
    assert_same_outputs(out, uninterrupted)
    # No image labeled twice: one ok line per source (none for the broken one).
    assert sorted(ok_lines_per_source(out).values()) == [0] + [1] * NUM_SYNTHETIC

    # The same folder with other settings is refused, naming what differs.
    refused = run_cli(*args[:3], "truck", *args[4:])
    assert refused.returncode == 2 and 'categories: "truck, tire" -> "truck"' in refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr


def test_label_parser_options():
    from grounded_sam.cli import build_parser

    args = build_parser().parse_args(["label", "in", "-c", "truck", "-o", "out"])
    assert (args.format, args.overlap, args.coco_masks, args.force, args.plot) == ("", "auto", "rle", False, False)
    args = build_parser().parse_args(["label", "in", "-c", "truck", "-o", "out", "-f", "coco,voc", "--overlap", "order",
                                      "--coco-masks", "polygon", "--force"])
    assert (args.format, args.overlap, args.coco_masks, args.force) == ("coco,voc", "order", "polygon", True)


def test_preprocess_writes_rgba_cutouts_with_the_mask_as_alpha(tiny_models, photos, tmp_path):
    import numpy as np

    from grounded_sam.export.crops import crop_region
    from grounded_sam.export.rle import decode_rle

    out = tmp_path / "out"
    result = run_cli(
        "label", str(photos / "truck.jpg"), "--categories", "truck", "--out", str(out), "--preprocess", "--plot",
        "--nms", "none", "--detector-model", str(tiny_models["florence_scripted"]),
        "--segmenter-model", str(tiny_models["sam2"]),
    )
    assert result.returncode == 0, result.stderr
    crops = sorted((out / "crops" / "truck").glob("*.png"))
    record = json.loads((out / "labels" / "truck.json").read_text())
    assert len(crops) == len(record["detections"]) == 2
    for crop_path in crops:
        crop = Image.open(crop_path)
        assert crop.mode == "RGBA"
        alpha = np.asarray(crop)[..., 3]
        assert set(np.unique(alpha)) <= {0, 255} and (alpha == 255).any()
        index = int(crop_path.stem.rsplit("_", 1)[1])
        detection = record["detections"][index]
        mask = decode_rle(detection["mask"])
        left, top, right, bottom = crop_region(detection["bbox_xyxy"], (mask.shape[1], mask.shape[0]), 0.1)
        np.testing.assert_array_equal(alpha == 255, mask[top:bottom, left:right])
    assert (out / "overlays" / "truck.png").is_file()
    assert "crops/truck/truck_0.png" in (out / "manifest.jsonl").read_text()


def test_preprocess_bad_option_is_a_clear_error(tiny_models, photos, tmp_path):
    result = run_cli(
        "label", str(photos / "truck.jpg"), "--categories", "truck", "--out", str(tmp_path / "o"),
        "--preprocess", "--preprocess-background", "plaid",
        "--detector-model", str(tiny_models["florence"]), "--segmenter-model", str(tiny_models["sam2"]),
    )
    assert result.returncode == 2 and "plaid" in result.stderr and "Traceback" not in result.stderr


def test_doctor_without_weights_explains_and_exits_nonzero(tmp_path):
    env = {"GROUNDED_SAM_MODELS_DIR": str(tmp_path / "models"), "HF_HUB_CACHE": str(tmp_path / "hf"),
           "GROUNDED_SAM_DETECTOR": "", "GROUNDED_SAM_SEGMENTER": ""}
    result = run_cli("doctor", env=env)
    assert result.returncode != 0
    assert "python -m grounded_sam download florence-2-base" in result.stdout
    assert "cpu" in result.stdout.lower()
    report = json.loads(run_cli("doctor", "--json", env=env).stdout)
    assert report["ok"] is False


def test_doctor_with_the_tiny_models_finds_and_loads_them(tiny_models, tmp_path):
    result = run_cli(
        "doctor", "--load", "--detector-model", str(tiny_models["florence"]),
        "--segmenter-model", str(tiny_models["sam2"]),
        env={"GROUNDED_SAM_MODELS_DIR": str(tmp_path / "models"), "HF_HUB_CACHE": str(tmp_path / "hf")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(tiny_models["sam2"]) in result.stdout


# ------------------------------------------------------------------------------------ track


def track_args(tiny_models, video: Path, out: Path, *extra: str) -> list[str]:
    return ["track", str(video), "--categories", "person, bed", "--out", str(out), "--detector-model",
            str(tiny_models["florence_scripted"]), "--segmenter-model", str(tiny_models["sam2"]), *extra]


def test_track_the_example_clip_writes_frames_mot_coco_and_a_playable_overlay(tiny_models, photos, tmp_path):
    import av

    from tests.readers import check_mot

    out = tmp_path / "out"
    result = run_cli(*track_args(tiny_models, photos / "bedroom.mp4", out, "--max-frames", "5", "--every", "2",
                                 "--format", "coco,mot", "--plot"))
    assert result.returncode == 0, result.stderr
    assert "Labeled 5 of 5 frames" in result.stderr and "mot.txt" in result.stderr and "overlay.mp4" in result.stderr
    assert sorted(p.name for p in (out / "labels").iterdir()) == [f"frame_{i:06d}.json" for i in range(5)]
    assert check_mot(out) == 1.0
    check_coco(out, ["person", "bed"])
    with av.open(str(out / "overlay.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (960, 540)
        assert sum(1 for _ in container.decode(stream)) == 5


@pytest.fixture(scope="module")
def squares_clip(tmp_path_factory) -> Path:
    from tests.fakes import MovingSquares, write_clip

    scene = MovingSquares(frames=10)
    return write_clip(tmp_path_factory.mktemp("squares") / "squares.mp4", [scene.frame(i) for i in range(10)])


def test_track_killed_with_kill_9_resumes_to_the_same_files(tiny_models, squares_clip, tmp_path):
    import signal

    reference = tmp_path / "reference"
    args = ["--every", "3", "--format", "all"]
    assert run_cli(*track_args(tiny_models, squares_clip, reference, *args)).returncode == 0

    out = tmp_path / "out"
    code, lines = start_and_signal(track_args(tiny_models, squares_clip, out, *args), out, signal.SIGKILL, 5,
                                   tmp_path / "killed.log")
    assert code == -signal.SIGKILL and 5 <= lines < 10, (code, lines)
    result = run_cli(*track_args(tiny_models, squares_clip, out, *args))
    assert result.returncode == 0, result.stderr
    assert "Skipped 3 already labeled" in result.stderr  # resumed at the key frame 3
    assert_same_outputs(out, reference)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: (d / "notes.mp4").write_text("not a video") and d / "notes.mp4", "notes.mp4 is not a video"),
        (lambda d: d / "missing.mp4", "does not exist"),
    ],
    ids=["text", "missing"],
)
def test_track_bad_video_exits_2_with_the_reason(tiny_models, tmp_path, make, message):
    result = run_cli(*track_args(tiny_models, make(tmp_path), tmp_path / "out"))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "2"], "--workers only apply with --engine ray"),
        (["--ray-address", "auto", "--gpus-per-worker", "1"], "--ray-address, --gpus-per-worker only apply"),
        (["--engine", "ray", "--workers", "0"], "--workers must be >= 1"),
    ],
)
def test_ray_options_are_checked_before_anything_runs(argv, message):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install -r requirements-ray.txt")
    from grounded_sam.cli import build_parser
    from grounded_sam.cli.label import engine_from_args
    from grounded_sam.errors import OptionError

    args = build_parser().parse_args(["label", "in", "-c", "truck", "-o", "out", *argv])
    with pytest.raises(OptionError, match=message):
        engine_from_args(args)


def test_track_refuses_the_ray_engine(tmp_path):
    result = run_cli("track", str(tmp_path / "clip.mp4"), "-c", "person", "-o", str(tmp_path / "out"), "--engine", "ray")
    assert result.returncode == 2 and "track runs on the local engine only" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(300)
def test_label_engine_ray_writes_what_the_local_engine_writes(tiny_models, photos, tmp_path):
    """The issue's acceptance command (on two images): a local Ray started and stopped by the CLI, two workers."""
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install -r requirements-ray.txt")
    from tests.fakes import write_image
    from tests.readers import manifest_lines, run_files

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos / "groceries.jpg", folder / "groceries.jpg")
    write_image(folder / "small.png", key=9, size=(160, 120))
    common = ["label", str(folder), "--categories", "truck, tire", "--format", "all", "--detector-model",
              str(tiny_models["florence_scripted"]), "--segmenter-model", str(tiny_models["sam2"]), "--device", "cpu"]
    ray_run = run_cli(*common, "--out", str(tmp_path / "A"), "--engine", "ray", "--workers", "2",
                      env={"RAY_USAGE_STATS_ENABLED": "0"})
    assert ray_run.returncode == 0, ray_run.stderr
    assert "Labeled 2 of 2 images" in ray_run.stderr and "Labeled per worker: " in ray_run.stderr
    local_run = run_cli(*common, "--out", str(tmp_path / "B"), env={"OMP_NUM_THREADS": "1"})  # a worker's threads
    assert local_run.returncode == 0, local_run.stderr
    assert run_files(tmp_path / "A") == run_files(tmp_path / "B")
    assert manifest_lines(tmp_path / "A") == manifest_lines(tmp_path / "B")


@pytest.mark.parametrize("command", ["label", "track"])
def test_precision_option_reaches_the_pipeline(command, tmp_path):
    from grounded_sam.cli.label import pipeline_from_args
    from grounded_sam.cli.main import build_parser

    parser = build_parser()
    base = [command, str(tmp_path / "x.jpg"), "--categories", "truck", "--out", str(tmp_path / "out")]
    assert pipeline_from_args(parser.parse_args(base)).settings().as_dict()["precision"] == "auto"
    args = parser.parse_args([*base, "--precision", "bf16"])
    assert pipeline_from_args(args).settings().as_dict()["precision"] == "bf16"
    with pytest.raises(SystemExit) as info:
        parser.parse_args([*base, "--precision", "fp16"])
    assert info.value.code == 2
