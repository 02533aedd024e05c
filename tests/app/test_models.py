"""The app with every model family: each detector labels an image through the image tab's ``/segment`` handler,
clicks on each result are refined by the right model, and the model menus group detectors that need a segmenter
apart from one-model pipelines (SAM 3), whose segmenter menu says it is ignored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from grounded_sam.app.settings import AppSettings

pytest.importorskip("gradio", reason="the app needs gradio (requirements.txt)")
import gradio as gr  # noqa: E402

from grounded_sam.app.image_result import open_editor  # noqa: E402
from grounded_sam.app.image_tab import ImageHandlers  # noqa: E402
from grounded_sam.app.options import OverlayOptions  # noqa: E402
from grounded_sam.app.options_panel import (  # noqa: E402
    ONE_MODEL,
    WITH_SEGMENTER,
    build_options_panel,
    detector_choices,
    segmenter_state,
)
from grounded_sam.editing.editor import GROW  # noqa: E402
from grounded_sam.models.registry import DETECTORS  # noqa: E402

#: Each family's tiny test model (tests/conftest.py tiny_models), and whether it scores its boxes itself.
FAMILIES = {
    "florence2": ("florence_scripted", False),
    "grounding-dino": ("grounding_dino", True),
    "owlv2": ("owlv2_scripted", True),
    "sam3": ("sam3_scripted", False),
}


@pytest.fixture(scope="module")
def upload(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A quarter-size truck photo, as Gradio hands an upload over."""
    rgb = np.array(Image.open(photos / "truck.jpg").convert("RGB"))[::4, ::4]
    path = tmp_path_factory.mktemp("models-upload") / "truck-small.png"
    Image.fromarray(rgb).save(path)
    return {"path": str(path), "orig_name": "truck-small.png"}


def settings_for(tiny_models: dict[str, Path], family: str) -> AppSettings:
    """A server whose default detector is the family's tiny model (a local path, as an operator would set it)."""
    return AppSettings(detector=str(tiny_models[FAMILIES[family][0]]), segmenter=str(tiny_models["sam2"]), device="cpu")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_detector_labels_an_image_through_the_segment_handler(app_env: None, tiny_models, upload,
                                                                   family: str) -> None:
    settings = settings_for(tiny_models, family)
    handlers = ImageHandlers(settings, options=None, view=None, cache=None)  # type: ignore[arg-type]
    overlay, record = handlers.segment(upload, "truck, tire, person", nms="none")
    assert Path(overlay).is_file() and Image.open(overlay).size == (450, 300)
    items = record["detections"]
    assert items, f"the tiny {family} model finds something in the photo"
    assert all(item["mask"]["size"] == [300, 450] and item["mask"]["counts"] for item in items)
    assert all(item["area"] > 0 and item["class_name"] in ("truck", "tire", "person") for item in items)
    scored = FAMILIES[family][1]
    assert all(("detector_score" in item) == scored for item in items)
    assert record["settings"]["detector"] == Path(settings.detector).name  # short model names in records


@pytest.mark.parametrize(("family", "refiner"), [("owlv2", "Sam2Refiner"), ("sam3", "Sam3TrackerRefiner")])
def test_clicks_on_each_result_are_refined_by_the_runs_model(app_env: None, tiny_models, upload, family: str,
                                                            refiner: str, count_calls) -> None:
    from grounded_sam.editing.refiners import refiner_for

    settings = settings_for(tiny_models, family)
    _, record = ImageHandlers(settings, None, None, None).segment(upload, "truck", nms="none")  # type: ignore[arg-type]
    editor = open_editor(settings, upload, record, None, OverlayOptions().style(), detector=settings.detector)
    assert editor is not None
    used = refiner_for(editor.session.refiner.pipe)  # what every click of this editor goes to
    assert type(used).__name__ == refiner
    decoder = count_calls(used.model.mask_decoder if family == "sam3" else used.segmenter.model.sam_mask_decoder)
    before = editor.session.objects[0].mask
    editor.select(0)
    ys, xs = np.nonzero(~before)
    editor.click(int(xs[0]), int(ys[0]), GROW)
    assert editor.session.objects[0].mask[int(ys[0]), int(xs[0])] and editor.session.objects[0].edited
    assert decoder.calls == 2  # the object's box alone, then with the click


def test_the_detector_menu_groups_detectors_with_a_segmenter_apart_from_one_model_pipelines(tiny_models) -> None:
    settings = settings_for(tiny_models, "florence2")
    choices = detector_choices(settings)
    assert sorted(v for _, v in choices) == sorted(v for _, v in settings.model_choices("detector"))
    groups = [label.split(" · ")[0] for label, _ in choices]
    assert groups == sorted(groups, key=lambda g: g == ONE_MODEL)  # every two-model entry before any one-model one
    by_value = {value: label for label, value in choices}
    assert by_value["sam3"].startswith(ONE_MODEL) and "segmenter is not used" in by_value["sam3"]
    for name in ("florence-2-base", "grounding-dino-tiny", "owlv2-base", settings.detector):
        assert by_value[name].startswith(WITH_SEGMENTER)
    assert [v for _, v in choices if v in DETECTORS and v != "sam3"] == [n for n in DETECTORS if n != "sam3"]


def test_the_segmenter_menu_says_it_is_ignored_for_sam3(tiny_models) -> None:
    for detector in ("sam3", str(tiny_models["sam3_scripted"])):
        update = segmenter_state(detector)
        assert update["interactive"] is False and "Not used" in update["info"]
    for detector in ("florence-2-base", str(tiny_models["grounding_dino"]), None):
        update = segmenter_state(detector)
        assert update["interactive"] is True and "ignore" in update["info"]

    def panel_for(settings: AppSettings) -> Any:
        with gr.Blocks() as demo:
            panel = build_options_panel(settings)
        return demo, panel

    demo, panel = panel_for(settings_for(tiny_models, "sam3"))
    assert panel.segmenter.interactive is False and "Not used" in panel.segmenter.info
    change = [fn for fn in demo.fns.values() if fn.name == "segmenter_state"]
    assert len(change) == 1 and change[0].api_visibility == "private"
    _, panel = panel_for(settings_for(tiny_models, "owlv2"))
    assert panel.segmenter.interactive is not False
