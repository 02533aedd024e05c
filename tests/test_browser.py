"""The app in a real browser: Debian's headless Chromium, driven by Playwright, against ``python app.py``.

A person's path through both tabs: upload a photo, type categories, click Run, see the overlay
and the table; make a mistake and read the message; label a zip on the batch tab, watch the
progress and get the results zip. Screenshots go where CI keeps test artifacts
(``$GROUNDED_SAM_ARTIFACTS``, default ``test-artifacts/``).

Playwright never downloads a browser here: it drives ``/usr/bin/chromium`` (``apt-get install
chromium``), and these tests skip, saying so, where that is missing.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._app_server import REPO, AppServer, run_app

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
