"""The command line with the detectors that score their boxes: a labeling run with the tiny Grounding DINO, and
the registry listing with licences and gating."""

from __future__ import annotations

import json

from tests.cli.test_cli import run_cli
from tests.conftest import EXAMPLE_IMAGES
from tests.readers import check_coco


def test_label_with_a_grounding_dino_folder_writes_coco_and_detector_scores(tiny_models, tmp_path) -> None:
    out = tmp_path / "out"
    result = run_cli(
        "label", str(EXAMPLE_IMAGES), "--categories", "truck, tire", "--detector-model", str(tiny_models["grounding_dino"]),
        "--segmenter-model", str(tiny_models["sam2"]), "--out", str(out), "--format", "coco",
    )
    assert result.returncode == 0, result.stderr
    check_coco(out, ["truck", "tire"])
    records = [json.loads(p.read_text()) for p in sorted((out / "labels").glob("*.json"))]
    assert len(records) == 3
    items = [item for record in records for item in record["detections"]]
    assert items, "the seeded tiny Grounding DINO finds boxes over its threshold in the example photos"
    assert all(0.35 <= item["detector_score"] <= 1 and 0 <= item["score"] <= 1 for item in items)
    assert {item["class_name"] for item in items} <= {"truck", "tire"}
    assert records[0]["settings"]["detector"] == str(tiny_models["grounding_dino"])


def test_models_json_shows_licence_and_gating_for_every_entry(tmp_path) -> None:
    result = run_cli("models", "--json", env={"GROUNDED_SAM_MODELS_DIR": str(tmp_path), "HF_HUB_CACHE": str(tmp_path / "hf")})
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {n: (rows[n]["family"], rows[n]["license"], rows[n]["gated"]) for n in
            ("grounding-dino-tiny", "grounding-dino-base", "owlv2-base", "sam3", "florence-2-base")} == {
        "grounding-dino-tiny": ("grounding-dino", "Apache-2.0", False),
        "grounding-dino-base": ("grounding-dino", "Apache-2.0", False),
        "owlv2-base": ("owlv2", "Apache-2.0", False),
        "sam3": ("sam3", "SAM License", True),
        "florence-2-base": ("florence2", "MIT", False),
    }
    assert all(row["license"] and row["size"] and isinstance(row["gated"], bool) for row in rows.values())
