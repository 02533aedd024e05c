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
