"""The app in a real browser: Debian's headless Chromium, driven by Playwright, against ``python app.py``.

A person's path through the tabs: upload a photo, type categories, click Run, see the overlay
and the table; fix the result by clicking on the overlay (select, shrink a mask, delete, add a
box of a new class, undo, redo, reset) and download the corrected labels; two pages editing
apart; make a mistake and read the message; label a zip on the batch tab, watch the progress and
get the results zip; track a clip on the video tab, play the overlay video, step through its
frames and add an object with a click on one. Screenshots go where CI keeps test artifacts
(``$GROUNDED_SAM_ARTIFACTS``, default ``test-artifacts/``).

Playwright never downloads a browser here: it drives ``/usr/bin/chromium`` (``apt-get install
chromium``), and these tests skip, saying so, where that is missing.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app.server import REPO, AppServer, run_app

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium (apt-get install chromium) to run "
                "the browser tests", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency (requirements-dev.txt)")

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update"]
EXAMPLES = REPO / "examples"
TIMEOUT_MS = 120_000


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("GROUNDED_SAM_ARTIFACTS") or REPO / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    with run_app(tiny_models, tmp_path_factory.mktemp("app-browser")) as running:
        yield running


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        # A persistent context is how Playwright takes a (fresh) --user-data-dir.
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any, server: AppServer) -> Iterator[Any]:
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server.url)
    page.locator("#run").wait_for()
    try:
        yield page
    finally:
        page.close()


def run_image(page: Any, photo: Path, categories: str) -> None:
    page.locator("#input-image input[type=file]").set_input_files(str(photo))
    page.locator("#input-image img").wait_for()  # the upload is in before Run is clicked
    page.locator("#categories textarea").fill(categories)
    page.locator("#run").click()


def test_image_tab_labels_an_uploaded_photo(page: Any, server: AppServer) -> None:
    run_image(page, EXAMPLES / "truck.jpg", "truck, tire")

    overlay = page.locator("#overlay img")
    overlay.wait_for()
    page.wait_for_function("() => document.querySelector('#overlay img')?.naturalWidth > 0")
    assert overlay.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [1800, 1200]
    table = page.locator("#detections-table")
    sync_api.expect(table).to_contain_text("truck", timeout=TIMEOUT_MS)
    sync_api.expect(page.locator("#legend")).to_contain_text(re.compile(r"\d+ objects? found"))
    sync_api.expect(page.locator("#downloads")).to_contain_text("truck_coco")
    sync_api.expect(page.locator("#downloads")).to_contain_text("truck_masks")
    page.screenshot(path=str(artifacts_dir() / "app-image-tab.png"), full_page=True)

    # An overlay option redraws the result without another Run.
    before = overlay.get_attribute("src")
    page.locator("#show-masks input").uncheck()
    page.wait_for_function("(before) => document.querySelector('#overlay img')?.src !== before", arg=before)
    assert server.process.poll() is None


def test_image_tab_shows_a_mistake_as_a_message_and_keeps_working(page: Any) -> None:
    run_image(page, EXAMPLES / "groceries.jpg", "  ")

    message = page.locator('[data-testid="toast-text"]', has_text="Expected at least one category")
    sync_api.expect(message).to_be_visible(timeout=TIMEOUT_MS)
    page.wait_for_timeout(600)  # the message slides in; let the screenshot show it in place
    page.screenshot(path=str(artifacts_dir() / "app-error-message.png"))  # the viewport, where the message is
    assert "Traceback" not in page.content()

    page.locator("#categories textarea").fill("paper bag: bag")
    page.locator("#run").click()
    sync_api.expect(page.locator("#detections-table")).to_contain_text("bag", timeout=TIMEOUT_MS)


def test_batch_tab_labels_a_zip_with_progress_and_offers_the_results(page: Any, tmp_path: Path) -> None:
    zip_path = tmp_path / "photos.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name in ("truck.jpg", "groceries.jpg", "cars.jpg"):
            archive.write(EXAMPLES / name, name)
        archive.writestr("__MACOSX/._truck.jpg", b"\x00")

    page.locator("#categories textarea").fill("truck, tire")
    page.get_by_role("tab", name="Batch").click()
    page.locator("#batch-files input[type=file]").set_input_files(str(zip_path))
    page.locator("#batch-files a").first.wait_for()  # the upload is in before the run starts
    page.locator("#run-batch").click()

    progress = page.locator("#batch-progress")
    sync_api.expect(progress).to_contain_text(re.compile(r"Labeled \d of 3 images"), timeout=TIMEOUT_MS)
    sync_api.expect(progress).to_contain_text("Labeled 3 of 3 images", timeout=TIMEOUT_MS)
    results = page.locator("#batch-results a").first
    results.wait_for()
    assert re.search(r"/grounded-sam-results-[\d-]+\.zip$", results.get_attribute("href"))
    sync_api.expect(page.locator("#batch-gallery img")).to_have_count(3)
    summary = page.locator("#batch-summary textarea").input_value()
    assert summary.startswith("Labeled 3 of 3 images")
    assert "__MACOSX/._truck.jpg: macOS metadata" in summary
    page.screenshot(path=str(artifacts_dir() / "app-batch-tab.png"), full_page=True)


def test_video_tab_tracks_a_clip_plays_the_overlay_video_shows_any_frame_and_a_click_adds_an_object(
    page: Any, server: AppServer, tmp_path: Path
) -> None:
    from tests.fakes import MovingSquares, write_clip

    frames = 6
    scene = MovingSquares(frames=frames)
    clip = write_clip(tmp_path / "squares.mp4", [scene.frame(i) for i in range(frames)])

    page.locator("#categories textarea").fill("square, bar")
    page.get_by_role("tab", name="Video").click()
    page.locator("#video-input input[type=file]").set_input_files(str(clip))
    page.locator("#video-input video").wait_for()  # the upload is in before the run starts
    page.locator("#video-every input").fill("3")

    # Stop during a run ends it; the next run starts afresh.
    progress = page.locator("#video-progress")
    page.locator("#run-video").click()
    sync_api.expect(progress).to_contain_text(re.compile(rf"Tracked \d of {frames} frames"), timeout=TIMEOUT_MS)
    # The cancel returns once the frame in progress is done (a model call is not interrupted); until then the
    # page does not take another Track.
    with page.expect_response(lambda response: response.url.endswith("/cancel")) as cancelled:
        page.locator("#stop-video").click()
    assert cancelled.value.ok
    sync_api.expect(progress).to_contain_text("Stopped after the frame in progress")
    page.locator("#run-video").click()
    sync_api.expect(progress).to_contain_text(f"Tracked {frames} of {frames} frames · done", timeout=TIMEOUT_MS)
    results = page.locator("#video-results a").first
    results.wait_for()
    assert re.search(r"/grounded-sam-video-[\d-]+\.zip$", results.get_attribute("href"))
    summary = page.locator("#video-summary textarea").input_value()
    assert summary.startswith(f"Tracked {frames} frames of squares.mp4")

    # The overlay video has a source the browser can play: its metadata loads (H.264 in mp4).
    page.locator("#video-overlay video").wait_for()
    played = page.evaluate("""async () => {
        const video = document.querySelector('#video-overlay video');
        if (video.readyState < 1) {
            video.load();
            await new Promise(done => { video.addEventListener('loadedmetadata', done, {once: true});
                                        setTimeout(done, 30000); });
        }
        return [video.readyState, video.duration, video.videoWidth, video.error && video.error.code];
    }""")
    assert played[0] >= 1 and played[1] > 0 and played[2] == 96 and played[3] is None, played

    # The frame slider shows another frame's overlay and its objects (track id, class, score).
    frame = page.locator("#video-frame-image img")
    frame.wait_for()
    sync_api.expect(page.locator("#video-objects")).to_contain_text("square")
    before = frame.get_attribute("src")
    page.locator("#video-frame input[type=number]").fill("4")
    page.locator("#video-frame input[type=number]").press("Enter")
    page.wait_for_function("(before) => document.querySelector('#video-frame-image img')?.src !== before",
                           arg=before)
    assert "frame_000004" in frame.get_attribute("src")
    sync_api.expect(page.locator("#video-objects")).to_contain_text("square")

    # A click on the frame adds a new object there (class square, the first) and tracks the clip again from it:
    # the frame shown changes and lists the new track.
    page.locator("#video-edit-track input").click()
    page.get_by_role("option", name="New object").click()
    before, rows = frame.get_attribute("src"), page.locator("#video-objects .virtual-row").count()
    click_pixel(page, 90, 58, image="#video-frame-image img")
    sync_api.expect(page.locator("#video-edit-status")).to_contain_text(
        re.compile(r"New object #\d+ square added on frame 4"), timeout=TIMEOUT_MS)
    page.wait_for_function("(before) => document.querySelector('#video-frame-image img')?.src !== before",
                           arg=before)
    sync_api.expect(page.locator("#video-objects .virtual-row")).to_have_count(rows + 1)
    page.wait_for_timeout(500)  # let the new frame paint before the screenshot
    page.screenshot(path=str(artifacts_dir() / "app-video-tab.png"), full_page=True)
    assert server.process.poll() is None and "Traceback" not in server.log_text()

# ---------------------------------------------------------------------------------------------
# Fixing the result with clicks


def click_pixel(page: Any, x: int, y: int, image: str = "#overlay img") -> None:
    """Clicks an image (the overlay) on pixel (x, y), the way Gradio maps a click on a scaled image back."""
    page.locator(image).scroll_into_view_if_needed()
    position = page.evaluate(
        """([x, y, image]) => {
            const img = document.querySelector(image);
            const box = img.getBoundingClientRect();
            const scale = Math.min(box.width / img.naturalWidth, box.height / img.naturalHeight, 1);
            const left = box.left + (box.width - img.naturalWidth * scale) / 2;
            const top = box.top + (box.height - img.naturalHeight * scale) / 2;
            return [left + (x + 0.5) * scale, top + (y + 0.5) * scale];
        }""",
        [int(x), int(y), image],
    )
    page.mouse.click(*position)


def deepest(mask: Any) -> tuple[int, int]:
    """The pixel farthest inside a mask (x, y): a click there hits it at any display scale."""
    import cv2
    import numpy as np

    distance = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return int(x), int(y)


def download(page: Any, pattern: str, previous: str | None = None) -> tuple[str, bytes]:
    """The href and bytes of the download whose link matches ``pattern`` (a newer one than ``previous``)."""
    link = page.locator(f"#downloads a[href*='{pattern}']")
    link.wait_for()
    if previous is not None:
        page.wait_for_function(
            "([pattern, previous]) => { const a = document.querySelector(`#downloads a[href*='${pattern}']`);"
            " return a && a.href !== previous; }", arg=[pattern, previous])
    href = link.get_attribute("href")
    response = page.request.get(href)
    assert response.ok
    return href, response.body()


def rows(page: Any) -> Any:
    return page.locator("#detections-table .virtual-row")


def status(page: Any) -> Any:
    return page.locator("#edit-status")


def test_a_user_fixes_masks_with_clicks_and_downloads_the_corrected_labels(page: Any, server: AppServer) -> None:
    import numpy as np

    from grounded_sam.export.rle import decode_rle

    run_image(page, EXAMPLES / "truck.jpg", "truck, tire")
    sync_api.expect(status(page)).to_contain_text("Click an object", timeout=TIMEOUT_MS)
    href, body = download(page, "_coco.json")
    coco = json.loads(body)
    count = len(coco["annotations"])
    assert count >= 2 and rows(page).count() == count
    masks = [decode_rle(a["segmentation"]) for a in coco["annotations"]]

    # Select an object by clicking its mask: the smallest object under the click.
    x, y = deepest(masks[0])
    expected = min((int(m.sum()), i) for i, m in enumerate(masks) if m[y, x])[1]
    click_pixel(page, x, y)
    sync_api.expect(status(page)).to_contain_text(f"Selected #{expected}")

    # A negative click inside it: the overlay changes, and so does its area in the table.
    area_cell = page.locator(f'#detections-table [data-testid="cell-{expected}-4"]')
    area_before = area_cell.inner_text()
    overlay_before = page.locator("#overlay img").get_attribute("src")
    page.get_by_label("- point (shrink)").check()
    click_pixel(page, x, y)
    sync_api.expect(status(page)).to_contain_text(f"#{expected}")
    sync_api.expect(status(page)).to_contain_text("removed the area")
    page.wait_for_function("(before) => document.querySelector('#overlay img')?.src !== before", arg=overlay_before)
    sync_api.expect(area_cell).not_to_have_text(area_before)
    refined_area = int(area_cell.inner_text())
    # Where the click landed in image pixels (the display is scaled: within a few pixels of x, y).
    clicked = re.search(r"removed the area at \((\d+), (\d+)\)", status(page).inner_text())
    cx, cy = int(clicked.group(1)), int(clicked.group(2))
    assert abs(cx - x) <= 8 and abs(cy - y) <= 8
    page.wait_for_timeout(500)  # let the new overlay paint before the screenshot
    page.screenshot(path=str(artifacts_dir() / "app-edit-refined.png"))

    # Select a row of the table and delete it: the table shrinks.
    other = 1 if expected != 1 else 0
    page.locator(f'#detections-table [data-testid="cell-{other}-1"]').click()
    sync_api.expect(status(page)).to_contain_text(f"Selected #{other}")
    page.locator("#edit-delete").click()
    sync_api.expect(status(page)).to_contain_text(f"Deleted #{other}")
    sync_api.expect(rows(page)).to_have_count(count - 1)

    # Add a missed object of a new class from a box (two corners).
    page.get_by_label("New object: box (click two corners)").check()
    page.locator("#edit-class input").fill("wheel")
    page.locator("#edit-class input").press("Enter")
    click_pixel(page, 60, 700)
    sync_api.expect(status(page)).to_contain_text("First corner")
    click_pixel(page, 560, 1150)
    sync_api.expect(status(page)).to_contain_text("wheel from the box")
    sync_api.expect(rows(page)).to_have_count(count)
    sync_api.expect(page.locator("#legend")).to_contain_text("wheel")

    # Undo and redo the addition.
    page.locator("#edit-undo").click()
    sync_api.expect(rows(page)).to_have_count(count - 1)
    page.locator("#edit-redo").click()
    sync_api.expect(rows(page)).to_have_count(count)
    sync_api.expect(page.locator("#edit-redo")).to_be_disabled()
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts_dir() / "app-edit-page.png"), full_page=True)

    # The downloads hold every edit: one object fewer, one more of the new class, the refined mask.
    _, body = download(page, "_coco.json", previous=href)
    edited = json.loads(body)
    assert len(edited["annotations"]) == count
    assert [c["name"] for c in edited["categories"]] == ["truck", "tire", "wheel"]
    assert edited["annotations"][-1]["category_id"] == 3
    refined = edited["annotations"][expected if other > expected else expected - 1]
    assert refined["area"] == refined_area and not decode_rle(refined["segmentation"])[cy, cx]
    _, body = download(page, "_masks.zip")
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        names = archive.namelist()
    assert len(names) == count and names[-1].endswith("_wheel.png")

    # The dataset formats, on demand, hold the edits too.
    page.locator("#dataset-button").click()
    _, body = download(page, "_dataset.zip")
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        dataset = json.loads(archive.read("coco/annotations.json"))
        assert any(name.startswith("yolo/segment/labels/") for name in archive.namelist())
    assert len(dataset["annotations"]) == count
    assert [c["name"] for c in dataset["categories"]] == ["truck", "tire", "wheel"]

    # Reset goes back to the automatic result.
    page.locator("#edit-reset").click()
    sync_api.expect(status(page)).to_contain_text("Back to the automatic result")
    sync_api.expect(rows(page)).to_have_count(count)
    sync_api.expect(page.locator("#legend")).not_to_contain_text("wheel")
    assert np.array_equal(masks[0], decode_rle(coco["annotations"][0]["segmentation"]))
    assert server.process.poll() is None and "Traceback" not in server.log_text()


def test_two_pages_edit_their_own_images_and_a_closed_page_is_released(
    browser: Any, server: AppServer, tmp_path: Path
) -> None:
    import shutil
    import time

    photos = {}
    for name, source in (("site-a.jpg", "truck.jpg"), ("site-b.jpg", "groceries.jpg")):
        photos[name] = tmp_path / name
        shutil.copy(EXAMPLES / source, photos[name])
    pages = {}
    for name in photos:
        pages[name] = browser.new_page()
        pages[name].set_default_timeout(TIMEOUT_MS)
        pages[name].goto(server.url)
        pages[name].locator("#run").wait_for()
    first, second = pages["site-a.jpg"], pages["site-b.jpg"]
    try:
        run_image(first, photos["site-a.jpg"], "truck, tire")
        run_image(second, photos["site-b.jpg"], "paper bag: bag, car")
        for page in pages.values():
            sync_api.expect(status(page)).to_contain_text("Click an object", timeout=TIMEOUT_MS)
        second_count = rows(second).count()
        first_count = rows(first).count()

        first.locator('#detections-table [data-testid="cell-0-1"]').click()
        sync_api.expect(status(first)).to_contain_text("Selected #0")
        first.locator("#edit-delete").click()
        sync_api.expect(rows(first)).to_have_count(first_count - 1)

        # The other page still has its own objects, its own classes and its own downloads.
        assert rows(second).count() == second_count
        sync_api.expect(second.locator("#detections-table")).not_to_contain_text("truck")
        _, body = download(second, "_coco.json")
        document = json.loads(body)
        assert len(document["annotations"]) == second_count
        assert document["images"][0]["file_name"] == "site-b.jpg"
        sync_api.expect(second.locator("#edit-undo")).to_be_disabled()
    finally:
        first.close()
    # Closing the page ends its session: the server releases its editor (image, masks, history).
    deadline = time.monotonic() + 60
    while "Released the editing session of site-a.jpg" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    try:
        assert "Released the editing session of site-a.jpg" in server.log_text()
        assert "Released the editing session of site-b.jpg" not in server.log_text()
        second.locator('#detections-table [data-testid="cell-0-1"]').click()  # the open page keeps working
        sync_api.expect(status(second)).to_contain_text("Selected #0")
    finally:
        second.close()
