"""Benchmark smoke test: the tiny preset runs end to end in seconds and writes a valid report.

Timings are never asserted: speed is shown by the benchmark's printed figures, not by tests.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from grounded_sam.bench.cli import main
from grounded_sam.bench.report import check_targets, format_table
from grounded_sam.bench.scenarios import Scenario, parse_scenarios, scripted_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5x4", [Scenario(5, 4)]), ("5x4, 10X2", [Scenario(5, 4), Scenario(10, 2)]), ("1x1,", [Scenario(1, 1)])],
)
def test_parse_scenarios(text, expected):
    assert parse_scenarios(text) == expected


@pytest.mark.parametrize("text", ["", "5", "5x", "x4", "0x4", "5x0", "99x1", "five x four"])
def test_parse_scenarios_rejects_bad_entries(text):
    with pytest.raises(ValueError):
        parse_scenarios(text)


def test_scripted_text_holds_four_location_tokens_per_box():
    text = scripted_text(3)
    assert text.startswith("object") and text.count("<loc_") == 12


@pytest.fixture(scope="module")
def small_image(tmp_path_factory) -> str:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("bench-image") / "small.jpg"
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory, small_image) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench-out")
    argv = [
        "--preset", "tiny", "--scenarios", "2x2", "--repeats", "1", "--image", small_image,
        "--folder-images", "2", "--refinement-clicks", "1", "--work-dir", str(out / "work"),
        "--out", str(out / "bench.json"),
    ]
    assert main(argv) == 0
    return json.loads((out / "bench.json").read_text()), str(out)


def test_tiny_preset_writes_a_complete_report(smoke_report):
    report, _ = smoke_report
    assert report["settings"]["preset"] == "tiny" and report["machine"]["torch_threads"] >= 1
    (row,) = report["results"]
    assert row["scenario"] == "2x2" and row["weights"] == "random"
    for pipeline in ("ours", "reference"):
        assert set(row[pipeline]["stages_s"]) == {"load_image", "detect", "segment", "postprocess", "write"}
        assert row[pipeline]["total_s"] > 0 and len(row[pipeline]["runs"]) == 1
    # Both pipelines and the floor see the scripted detector's boxes: 2 categories x 2 boxes.
    assert row["reference"]["detections"] == 4
    assert row["floor"]["boxes"] == 4
    assert set(row["floor"]["parts_s"]) == {"florence_vision", "florence_encoder", "florence_decode", "sam2_image", "sam2_masks"}
    assert row["speedup"] > 0 and "end_to_end" in row["overhead"]
    folder = report["folder"]
    assert folder["images"] == 2 and folder["failed"] == 0 and len(folder["peak_rss_mb"]) == 2
    # The folder figure is the whole run's wall time per image (progress calls lag by one image when writes overlap).
    assert folder["per_image_wall_s"] == pytest.approx(folder["wall_s"] / 2)
    assert folder["overhead_vs_floor"] == pytest.approx(folder["per_image_wall_s"] / folder["floor_per_image_s"] - 1)
    assert report["refinement"]["status"] in ("ok", "not available yet")
    assert report["targets"] and all(not t["applies"] for t in report["targets"])


def test_table_names_every_pipeline_and_the_floor(smoke_report):
    report, _ = smoke_report
    table = format_table(report)
    assert "reference" in table and "ours" in table and "Floor" in table and "Folder run" in table
    assert len(check_targets(report)) >= 2


def test_unknown_image_is_a_clear_error(tmp_path, capsys):
    assert main(["--preset", "tiny", "--image", str(tmp_path / "missing.jpg"), "--work-dir", str(tmp_path)]) == 2
    assert "missing.jpg" in capsys.readouterr().err


# --------------------------------------------------------------------------- detectors side by side


def test_parse_detectors_takes_registry_names_or_all():
    from grounded_sam.bench.detectors import parse_detectors
    from grounded_sam.models.registry import DETECTORS

    assert parse_detectors("sam3, owlv2-base,sam3") == ["sam3", "owlv2-base"]
    assert parse_detectors("all") == list(DETECTORS)
    for text in ("", "florence-3", "sam3,nope"):
        with pytest.raises(ValueError, match="Expected detector names among"):
            parse_detectors(text)


def test_keep_best_keeps_each_classes_highest_detector_scores_in_order():
    import supervision as sv

    from grounded_sam.bench.detectors import keep_best

    detections = sv.Detections(
        xyxy=np.arange(20, dtype=np.float32).reshape(5, 4), class_id=np.array([0, 1, 0, 0, 1]),
        data={"detector_score": np.array([0.2, 0.9, 0.8, 0.5, 0.1], np.float32)},
    )
    kept = keep_best(detections, 1)
    assert kept.class_id.tolist() == [1, 0] and kept.data["detector_score"].tolist() == pytest.approx([0.9, 0.8])
    assert len(keep_best(detections, 2)) == 4 and len(keep_best(detections[:0], 2)) == 0


@pytest.fixture(scope="module")
def detector_report(tmp_path_factory, small_image) -> tuple[dict, str]:
    from grounded_sam.bench.detectors import format_detector_table

    out = tmp_path_factory.mktemp("bench-detectors")
    argv = [
        "--detectors", "florence-2-base,grounding-dino-tiny,owlv2-base,sam3", "--preset", "tiny", "--scenarios", "2x2",
        "--repeats", "1", "--image", small_image, "--work-dir", str(out / "work"), "--out", str(out / "bench.json"),
    ]
    assert main(argv) == 0
    report = json.loads((out / "bench.json").read_text())
    return report, format_detector_table(report)


def test_the_tiny_preset_times_every_detector_side_by_side(detector_report):
    report, table = detector_report
    rows = {row["detector"]: row for row in report["detectors"]}
    assert list(rows) == ["florence-2-base", "grounding-dino-tiny", "owlv2-base", "sam3"]
    for name, row in rows.items():
        assert row["weights"] == "random" and row["scenario"] == "2x2" and row["image_size"] == [160, 120]
        assert row["s_per_image"] > 0 and row["detector_s"] > 0 and len(row["runs"]) == 1
        assert 1 <= row["boxes"] <= 4, name  # 2 categories x at most 2 boxes each reach the masks
        assert f"| {name} | random |" in table
    assert rows["florence-2-base"]["boxes"] == 4  # scripted to 2 boxes per category
    for name in ("florence-2-base", "grounding-dino-tiny", "owlv2-base"):
        assert rows[name]["segmenter"] == "sam2-tiny.pt" and rows[name]["sam2_s"] > 0
    assert rows["sam3"]["segmenter"] is None and rows["sam3"]["sam2_s"] is None
    assert "| sam3 | random | itself |" in table and report["targets"] == []
    assert report["settings"]["detectors"] == list(rows)


def test_an_unknown_detector_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--detectors", "florence-3"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Expected detector names among" in err and "'florence-3'" in err


# --------------------------------------------------------------------------- precision, targets, GPU table


def test_the_report_records_our_precision_and_the_fp32_floor(smoke_report):
    report, _ = smoke_report
    (row,) = report["results"]
    assert report["settings"]["precision"] == "auto"
    assert row["precision"] in ("fp32", "bf16") and row["reference_precision"] == "fp32"
    assert row["floor_fp32"]["total_s"] > 0
    assert row["ratio_to_fp32_floor"] == pytest.approx(row["ours"]["total_s"] / row["floor_fp32"]["total_s"])
    assert report["gpu"] is None  # no GPU table on a CPU run


def _as_base_run(report: dict, precision: str, **figures) -> dict:
    """The tiny smoke report dressed as a base-preset CPU run with two rows (5x4, 10x2) and the given figures."""
    import copy

    report = copy.deepcopy(report)
    report["settings"]["preset"] = "base"
    report["machine"]["device"] = "cpu"
    (row,) = report["results"]
    rows = []
    for scenario, speedup in (("5x4", figures["speedup_5x4"]), ("10x2", figures["speedup_10x2"])):
        rows.append({**copy.deepcopy(row), "scenario": scenario, "speedup": speedup, "speedup_cpu_time": speedup,
                     "precision": precision, "ratio_to_fp32_floor": figures["ratio"],
                     "overhead": {"end_to_end": figures["overhead"], "predict": figures["overhead"],
                                  "end_to_end_cpu_time": figures["overhead"]}})
    report["results"] = rows
    report["folder"] = {**report["folder"], "overhead_vs_floor": figures["folder"], "overhead_vs_floor_cpu_time": None,
                        "memory_growth_mb": figures["memory"]}
    report["refinement"] = {"status": "ok", "fraction": figures["click"], "click_s": 0.01, "fresh_run_s": 1.0,
                            "scenario": "5x4", "image": "x.jpg"}
    return report


@pytest.mark.parametrize(("precision", "figures", "expected"), [
    ("fp32", dict(speedup_5x4=3.1, speedup_10x2=4.6, overhead=0.04, ratio=1.04, folder=0.049, memory=10.0, click=0.019),
     {"speed-up 5x4": True, "speed-up 10x2": True, "fp32 floor": True, "folder": True, "memory": True, "click": True}),
    ("fp32", dict(speedup_5x4=2.9, speedup_10x2=4.4, overhead=0.06, ratio=1.06, folder=0.051, memory=80.0, click=0.021),
     {"speed-up 5x4": False, "speed-up 10x2": False, "fp32 floor": False, "folder": False, "memory": False, "click": False}),
    ("bf16", dict(speedup_5x4=5.0, speedup_10x2=6.0, overhead=0.02, ratio=0.6, folder=0.01, memory=-279.0, click=0.01),
     {"speed-up 5x4": True, "speed-up 10x2": True, "bf16 ratio": True, "folder": True, "memory": True, "click": True}),
    ("bf16", dict(speedup_5x4=5.0, speedup_10x2=6.0, overhead=0.02, ratio=1.01, folder=0.01, memory=0.0, click=0.01),
     {"bf16 ratio": False}),
])
def test_every_target_of_the_issue_is_printed_met_or_not(smoke_report, precision, figures, expected):
    report = _as_base_run(smoke_report[0], precision, **figures)
    checks = check_targets(report)
    assert all(check.applies for check in checks)
    found = {
        "speed-up 5x4": [c for c in checks if c.name.startswith("speed-up") and "5x4" in c.name and c.target == ">= 3.00x"],
        "speed-up 10x2": [c for c in checks if c.name.startswith("speed-up") and "10x2" in c.name and c.target == ">= 4.50x"],
        "fp32 floor": [c for c in checks if c.name.startswith("fp32: time over the fp32 floor") and c.target == "<= 5%"],
        "bf16 ratio": [c for c in checks if c.name.startswith("bf16: time / the fp32 floor") and c.target == "< 1.00"],
        "folder": [c for c in checks if c.name.startswith("folder-run overhead") and c.target == "<= 5%"],
        "memory": [c for c in checks if c.name.startswith("peak memory flat")],
        "click": [c for c in checks if c.name.startswith("refinement click") and c.target == "<= 2%"],
    }
    for key, met in expected.items():
        assert found[key] and all(c.met is met for c in found[key]), (key, found[key])
    table = format_table(report)
    assert "Targets:" in table and ("NOT met" in table) is (False in expected.values())
    if precision == "bf16":
        assert "vs the fp32 floor" in table


def test_the_gpu_table_names_the_gpu_bf16_and_images_per_second(smoke_report, tmp_path):
    from grounded_sam.bench.report import format_gpu_table, write_gpu_table

    report = {**smoke_report[0], "gpu": {
        "gpu": "Fake H200", "device": "cuda", "bf16": True, "precision": "bf16", "image_size": [1024, 683],
        "categories": 3, "images": 6, "failed": 0, "wall_s": 2.0, "images_per_s": 3.0, "gpu_peak_mb": 4321.0,
        "box_chunk_size": 64, "prompt_batch_size": 16,
    }}
    table = format_gpu_table(report)
    assert "| Fake H200 | yes | bf16 | 1024x683 | 3 | 6 | 3.00 | 4321 | 64 | 16 |" in table
    assert write_gpu_table(report, tmp_path / "gpu.md").read_text().strip() == table
    assert "Fake H200" in format_table(report)
    assert write_gpu_table(smoke_report[0], tmp_path / "none.md") is None and not (tmp_path / "none.md").exists()


def test_precision_check_prints_speed_and_closeness_of_each_model(tmp_path, small_image, capsys):
    out = tmp_path / "precision.json"
    argv = ["--precision-check", "--preset", "tiny", "--scenarios", "2x2", "--repeats", "1", "--image", small_image,
            "--work-dir", str(tmp_path / "work"), "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    florence, sam2 = report["florence2"], report["sam2"]
    for model in (florence, sam2):
        assert model["fp32"]["total_s"] > 0 and model["bf16"]["total_s"] > 0 and model["speedup"] > 0
    assert 0 <= florence["encoder_rel_error"] < 0.1 and florence["texts_equal"] == "2/2"  # scripted: same tokens
    assert 0.9 < sam2["mask_iou_mean"] <= 1 and sam2["score_delta_max"] < 0.1
    assert (sam2["masks_dtype"], sam2["scores_dtype"]) == ("bool", "float32")
    assert report["auto_picks"] in ("fp32", "bf16")
    printed = capsys.readouterr().out
    assert "| Florence-2 |" in printed and "| SAM2 |" in printed and "auto picks" in printed
