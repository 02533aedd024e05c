"""The app's click-refinement handlers in-process, with the tiny models: decoder-only clicks and their cost.

What the server does after Run (``segment_image``, then ``open_editor`` and the first downloads)
is timed against what it does for a click (the edit, the overlay JPEG, the table, the
downloads), on the same image; the figures are printed, not asserted. The browser side is in
``tests/app/test_browser.py``.
"""

from __future__ import annotations

import io
import statistics
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from grounded_sam.app.settings import AppSettings
from grounded_sam.caching import DetectionCache
from grounded_sam.editing.editor import GROW, SELECT, SHRINK

pytest.importorskip("gradio", reason="the app needs gradio (requirements.txt)")
from grounded_sam.app import gpu  # noqa: E402
from grounded_sam.app.blocks import build_demo  # noqa: E402
from grounded_sam.app.edit_panel import EDITOR_TTL_S  # noqa: E402
from grounded_sam.app.image_result import image_details, open_editor, segment_image  # noqa: E402
from grounded_sam.app.jobs import DEFAULT_MAX_JOB_AGE_S  # noqa: E402
from grounded_sam.app.markup import legend_markup  # noqa: E402
from grounded_sam.app.options import LabelOptions, ModelOptions, OverlayOptions  # noqa: E402
from grounded_sam.app.queues import EDIT_QUEUE, MODEL_QUEUE  # noqa: E402


@pytest.fixture(scope="module")
def settings(tiny_models: dict[str, Path]) -> AppSettings:
    return AppSettings(detector=str(tiny_models["florence_scripted"]), segmenter=str(tiny_models["sam2"]), device="cpu")


@pytest.fixture(scope="module")
def site_run(app_env: None, settings: AppSettings, photos: Path,
             tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], dict[str, Any]]:
    """One run of a fresh photo: ``(upload, record)``."""
    upload = fresh_photo(photos, tmp_path_factory.mktemp("site"), "site.png", seed=2)
    return upload, run(settings, upload)


def fresh_photo(photos: Path, tmp_path: Path, name: str, seed: int) -> dict[str, str]:
    """The truck photo with a few pixels changed: content no cache of this test session has seen."""
    rgb = np.array(Image.open(photos / "truck.jpg").convert("RGB"))
    rgb[0, :8] = np.random.default_rng(seed).integers(0, 255, (8, 3), dtype=np.uint8)
    path = tmp_path / name
    Image.fromarray(rgb).save(path)
    return {"path": str(path), "orig_name": name}


def run(settings: AppSettings, upload: dict[str, str], cache: DetectionCache | None = None) -> dict:
    _, record = segment_image(settings, upload, LabelOptions("truck, tire", ModelOptions(nms="none")), cache=cache)
    return record


def deepest(mask: np.ndarray) -> tuple[int, int]:
    import cv2

    distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return int(x), int(y)


def test_the_page_wires_edits_to_the_model_queue_and_per_session_state(app_env: None) -> None:
    import gradio as gr

    from grounded_sam.models import loading as models

    models.clear_model_cache()
    demo = build_demo(AppSettings(detector="/nowhere/florence", segmenter="/nowhere/sam2.pt"))
    assert models._cache == {}
    by_name = {fn.name: fn for fn in demo.fns.values()}
    click = by_name["click_overlay"]
    assert (click.concurrency_id, click.concurrency_limit) == (MODEL_QUEUE, 1)
    assert click.trigger_mode == "multiple"  # no click is dropped while another is answered
    assert click.api_visibility == "private"
    assert by_name["handler"].concurrency_id == EDIT_QUEUE  # delete, undo...: no model
    assert "release_editor" in by_name  # demo.unload: a closed page releases its editor
    states = [block for block in demo.blocks.values() if isinstance(block, gr.State)]
    # The editor, and the video tab's last result (kept as long as its job folder).
    assert sorted(s.time_to_live for s in states) == [EDITOR_TTL_S, DEFAULT_MAX_JOB_AGE_S]
    editor = next(s for s in states if s.time_to_live == EDITOR_TTL_S)
    editor.delete_callback(None)  # a session that never ran: nothing to release


def test_after_a_run_clicks_run_the_decoder_only(app_env, settings, photos, tmp_path, count_calls) -> None:
    from grounded_sam.models.loading import load_segmenter

    upload = fresh_photo(photos, tmp_path, "site.png", seed=1)
    segmenter = load_segmenter(settings.segmenter, "cpu")
    encoder = count_calls(segmenter.model.image_encoder)
    decoder = count_calls(segmenter.model.sam_mask_decoder)
    record = run(settings, upload)
    assert encoder.calls == 1
    run_decodings = decoder.calls
    editor = open_editor(settings, upload, record, None, OverlayOptions(True, True, True, 0.5).style())

    editor.select(0)
    for i in range(4):
        editor.click(200 + 300 * i, 300 + 150 * i, GROW if i % 2 == 0 else SHRINK)
        editor.write_overlay()
    editor.write_downloads()
    assert encoder.calls == 1  # the run's encoding, never again
    # One decoder pass per click, and one more for the first click's previous-mask logits.
    assert decoder.calls - run_decodings == 4 + 1


def test_every_decoder_pass_of_a_click_goes_through_the_gpu_wrapper(app_env, settings, site_run,
                                                                   monkeypatch) -> None:
    upload, record = site_run
    editor = open_editor(settings, upload, record, None, OverlayOptions(True, True, True, 0.5).style())
    passes = []
    decode = gpu.decode_on_gpu
    monkeypatch.setattr(gpu, "decode_on_gpu", lambda *args: passes.append(args[3]) or decode(*args))
    editor.select(0)
    editor.click(100, 100, GROW)
    editor.click(150, 150, GROW)
    assert [sorted(p) for p in passes] == [["box"], ["box", "labels", "mask_logits", "points"],
                                           ["box", "labels", "mask_logits", "points"]]


def test_an_image_changed_since_the_run_opens_no_editor(app_env, settings, site_run, photos,
                                                        tmp_path) -> None:
    upload, record = site_run
    style = OverlayOptions(True, True, True, 0.5).style()
    other = fresh_photo(photos, tmp_path, "other.png", seed=3)
    assert open_editor(settings, other, record, None, style) is None
    assert open_editor(settings, None, record, None, style) is None
    assert open_editor(settings, upload, None, None, style) is None


def test_the_same_request_again_comes_from_the_detection_cache(app_env, settings, photos, tmp_path,
                                                               monkeypatch) -> None:
    from grounded_sam.models.loading import load_detector

    upload = fresh_photo(photos, tmp_path, "site.png", seed=4)
    detector = load_detector(settings.detector, "cpu")
    calls = []
    detect = detector.detect
    monkeypatch.setattr(detector, "detect", lambda *args, **kwargs: calls.append(1) or detect(*args, **kwargs))
    cache = DetectionCache()
    first = run(settings, upload, cache)
    again = run(settings, upload, cache)
    assert len(calls) == 1 and cache.hits == 1
    assert again["detections"] == first["detections"]
    run(settings, upload | {"orig_name": "renamed.png"}, cache)  # the content is the key
    assert len(calls) == 1 and cache.hits == 2


def test_the_editors_view_matches_the_runs_details(app_env, settings, site_run) -> None:
    upload, record = site_run
    editor = open_editor(settings, upload, record, None, OverlayOptions(True, True, True, 0.5).style())
    legend, rows, files = image_details(record)
    view = editor.view()
    assert view.rows == rows
    assert legend_markup(view.class_names, view.counts, len(view.rows)) == legend
    coco, masks = editor.write_downloads()
    assert coco.read_bytes() == Path(files[0]).read_bytes()
    with zipfile.ZipFile(masks) as mine, zipfile.ZipFile(files[1]) as theirs:
        assert mine.namelist() == theirs.namelist()
        for name in mine.namelist():  # the same pixels (PNGs written with a faster zlib level)
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(mine.read(name)))),
                                  np.asarray(Image.open(io.BytesIO(theirs.read(name)))))


def measure_first_run_and_clicks(settings: AppSettings, upload: dict[str, str],
                                 clicks: int = 4) -> tuple[float, float, list[float], dict[str, list[float]]]:
    """Server seconds of the first run on an image (Run, then the editor and its downloads) and of clicks on it."""
    style = OverlayOptions(True, True, True, 0.5).style()
    started = time.perf_counter()
    record = run(settings, upload, DetectionCache())  # the Run event
    segment_s = time.perf_counter() - started
    editor = open_editor(settings, upload, record, None, style)  # the event that follows it
    editor.write_downloads()
    first_run_s = time.perf_counter() - started

    x, y = deepest(editor.session.objects[0].mask)
    editor.click(x, y, SELECT)
    editor.write_overlay()
    times, parts = [], {"edit": [], "overlay": [], "table": [], "downloads": []}
    for i in range(clicks):
        mask = editor.session.objects[editor.selected].mask
        x, y = deepest(~mask) if i % 2 == 0 else deepest(mask)
        t0 = time.perf_counter()
        editor.click(x, y, GROW if i % 2 == 0 else SHRINK)  # the click event ...
        t1 = time.perf_counter()
        editor.write_overlay()
        t2 = time.perf_counter()
        editor.view()
        t3 = time.perf_counter()
        editor.write_downloads()  # ... and the downloads event after it
        t4 = time.perf_counter()
        for key, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            parts[key].append(seconds)
        times.append(t4 - t0)
    return first_run_s, segment_s, times, parts


def test_print_the_server_time_of_a_click_against_the_first_run(app_env, settings, photos, tmp_path,
                                                                capsys) -> None:
    """Figures for the README: tiny models, CPU, truck.jpg (1800 x 1200), models already loaded.

    Three images no cache has seen (the truck with a few pixels changed); for each, the first run
    and four clicks (+ and − alternately, each at the point farthest from the mask's edge).

    Torch runs with one intra-op thread here: on a shared machine (CI, or helpers testing side by
    side) other processes steal cores, and torch's thread pool then stalls on every small op,
    which inflates the many tiny decoder ops of a click far more than the run (measured on the
    two-core development machine under load 5.5: a click's decoder pass 27 ms with one thread,
    about 1 s with two). One thread gives figures that do not depend on the neighbours.
    """
    import os

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(settings, fresh_photo(photos, tmp_path, "warm.png", seed=6))  # load the models
        trials = [measure_first_run_and_clicks(settings,
                                               fresh_photo(photos, tmp_path, f"truck{seed}.png", seed=seed))
                  for seed in (7, 8, 9)]
    finally:
        torch.set_num_threads(threads)
    with capsys.disabled():
        print(f"\n[click refinement] tiny models, CPU (1 torch thread, load average {os.getloadavg()[0]:.1f}), "
              "truck image 1800x1200:")
        for first_run_s, segment_s, times, parts in trials:
            click_s = statistics.median(times)
            print(f"  first run {first_run_s:.2f} s (Run {segment_s:.2f} s + editor and downloads "
                  f"{first_run_s - segment_s:.2f} s); click median {1000 * click_s:.0f} ms, max "
                  f"{1000 * max(times):.0f} ms = {100 * click_s / first_run_s:.1f}% of the first run (median ms: "
                  + ", ".join(f"{k} {1000 * statistics.median(v):.0f}" for k, v in parts.items()) + ")")
        ratios = [statistics.median(times) / first_run_s for first_run_s, _, times, _ in trials]
        print(f"  median over the trials: a click costs {100 * statistics.median(ratios):.1f}% of the first run")


# ---------------------------------------------------------------------------------------------
# Saved edits: a reload or a restart resumes them, for the browser that made them only


def edit_handlers(settings: AppSettings) -> Any:
    """The page's EditHandlers (what its events call), from a freshly built page."""
    demo = build_demo(settings)
    by_name = {fn.name: fn for fn in demo.fns.values()}
    return by_name["start_editing"].fn.__self__


def test_edits_are_saved_and_resumed_after_a_restart_by_their_browser_only(app_env, settings, site_run,
                                                                          tmp_path) -> None:
    import dataclasses
    import json
    from types import SimpleNamespace

    import gradio as gr

    from grounded_sam.editing.store import valid_owner_key

    upload, record = site_run
    saving = dataclasses.replace(settings, data_dir=tmp_path / "data")
    edits = edit_handlers(saving)
    row, view, options = edits.resume_row, edits.view, edits.options
    overlay = dict(zip(options.overlay, (True, True, True, 0.5)))

    # A first visit: the browser gets a new key, and nothing is offered.
    first = edits.offer_resume(None)
    owner = first[row.owner]
    assert valid_owner_key(owner) and first[row.row].visible is False

    page = SimpleNamespace(session_hash="page-1")
    answer = edits.start_editing({view.image: upload, view.record: record, options.detector: None,
                                  options.segmenter: None, row.owner: owner, **overlay}, page)
    editor = answer[view.state]
    count = len(editor.session.objects)
    editor.select(0)
    editor.delete()
    editor.select(0)
    editor.relabel("excavator")
    offered = edits.offer_resume(owner)
    assert offered[row.row].visible is True
    (label, key), = offered[row.choice].choices
    assert label == f"site.png · {count - 1} objects · saved just now" and key == editor.session.key

    # The server restarts: a new page, a new store on the same folder. The same browser resumes its edits.
    restarted = edit_handlers(saving)
    assert restarted.store is not edits.store
    row, view = restarted.resume_row, restarted.view
    overlay = dict(zip(restarted.options.overlay, (True, True, True, 0.5)))
    offered = restarted.offer_resume(owner)
    resumed = restarted.resume({row.owner: owner, row.choice: offered[row.choice].value, **overlay},
                               SimpleNamespace(session_hash="page-2"))
    again = resumed[view.state]
    assert again is not editor and again.view().rows == editor.view().rows
    np.testing.assert_array_equal(again.detections().mask, editor.detections().mask)
    assert "Resumed site.png: " in resumed[restarted.panel.status] and Path(resumed[view.image]).exists()
    assert resumed[restarted.options.categories] == "truck, tire"  # Run would run it as it was run
    coco = json.loads(Path(resumed[view.downloads][0]).read_text())
    assert len(coco["annotations"]) == count - 1 and coco["categories"][-1]["name"] == "excavator"
    assert Path(resumed[view.overlay]).exists() and "page-2" in restarted.editors

    # An edit after the restart is saved too.
    again.select(0)
    again.delete()
    assert restarted.store.recent(owner)[0].object_count == count - 2

    # Another browser's key (or a made-up one) finds nothing and resumes nothing.
    stranger = restarted.offer_resume(None)[row.owner]
    assert stranger != owner and restarted.offer_resume(stranger)[row.row].visible is False
    with pytest.raises(gr.Error, match="Those saved edits are gone"):
        restarted.resume({row.owner: stranger, row.choice: key, **overlay}, SimpleNamespace(session_hash="x"))
    with pytest.raises(gr.Error, match="Pick saved edits"):
        restarted.resume({row.owner: "not-a-key", row.choice: key, **overlay}, SimpleNamespace(session_hash="x"))


def test_without_a_data_folder_nothing_is_saved_or_offered(app_env, settings) -> None:
    edits = edit_handlers(settings)  # a hand-made AppSettings has no data folder
    assert edits.store is None and edits.resume_row is None


def test_a_saving_page_offers_resume_on_load_privately(app_env, settings, tmp_path) -> None:
    import dataclasses
    import typing

    demo = build_demo(dataclasses.replace(settings, data_dir=tmp_path / "data"))
    by_name = {fn.name: fn for fn in demo.fns.values()}
    load, resume = by_name["offer_resume"], by_name["resume"]
    assert load.api_visibility == resume.api_visibility == "private"
    assert load.concurrency_id == resume.concurrency_id == EDIT_QUEUE  # never behind a model job
    assert "request" in typing.get_type_hints(resume.fn)  # Gradio fills it (the page's editor registry)
    assert (tmp_path / "data" / "edits.sqlite3").exists()


def test_a_store_that_cannot_save_says_so_once_and_editing_goes_on(app_env, settings, site_run, tmp_path) -> None:
    import dataclasses
    from types import SimpleNamespace

    from grounded_sam.editing.store import NOT_SAVED, new_owner_key

    upload, record = site_run
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    edits = edit_handlers(dataclasses.replace(settings, data_dir=blocker / "data"))
    assert edits.store.problem is not None
    view, options = edits.view, edits.options
    answer = edits.start_editing({view.image: upload, view.record: record, options.detector: None,
                                  options.segmenter: None, edits.resume_row.owner: new_owner_key()},
                                 SimpleNamespace(session_hash="page"))
    assert NOT_SAVED in answer[edits.panel.status]
    editor = answer[view.state]
    editor.select(0)
    assert editor.delete() == "Deleted #0 truck. Undo brings it back."  # told once, not at every edit
    assert len(editor.session.objects) == len(record["detections"]) - 1
