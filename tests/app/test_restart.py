"""Edits survive a server restart, in a real browser: edit, kill the server, start it again, reload, resume, download.

The server is killed (SIGKILL, no shutdown of any kind), so what comes back is what was saved as the
edits happened. The second server takes the first one's port and data folder, and the page is reloaded in
the same browser profile: the browser's owner key lives in that origin's localStorage. Skips, saying so,
where Chromium or Playwright is missing (see tests/app/test_browser.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.app.server import run_app
from tests.app.test_browser import (
    CHROMIUM,
    CHROMIUM_FLAGS,
    EXAMPLES,
    TIMEOUT_MS,
    artifacts_dir,
    download,
    rows,
    run_image,
    status,
    sync_api,
)


def test_edits_survive_a_server_restart_and_a_reload(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    workdir = tmp_path / "server"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000})
        page: Any = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        try:
            with run_app(tiny_models, workdir) as first:
                page.goto(first.url)
                page.locator("#run").wait_for()
                sync_api.expect(page.locator("#resume-row")).to_be_hidden()  # nothing saved yet
                run_image(page, EXAMPLES / "truck.jpg", "truck, tire")
                sync_api.expect(status(page)).to_contain_text("Click an object", timeout=TIMEOUT_MS)
                count = rows(page).count()
                href, _ = download(page, "_coco.json")
                page.locator('#detections-table [data-testid="cell-0-1"]').click()
                sync_api.expect(status(page)).to_contain_text("Selected #0")
                page.locator("#edit-delete").click()
                sync_api.expect(status(page)).to_contain_text("Deleted #0")
                sync_api.expect(rows(page)).to_have_count(count - 1)
                _, body = download(page, "_coco.json", previous=href)
                edited = json.loads(body)["annotations"]
                assert len(edited) == count - 1  # the downloads have followed the delete
                first.process.kill()  # no goodbye: only what was saved as it happened survives
                first.process.wait(timeout=20)
                port = int(first.url.rsplit(":", 1)[1].strip("/"))

            with run_app(tiny_models, workdir, port=port) as second:
                page.reload()
                choice = page.locator("#resume-choice")
                sync_api.expect(choice).to_be_visible(timeout=TIMEOUT_MS)
                sync_api.expect(choice.locator("input")).to_have_value(
                    re.compile(rf"^truck\.jpg · {count - 1} objects? · saved (just now|\d+ min ago)$"))
                page.locator("#resume").click()
                sync_api.expect(status(page)).to_contain_text("Resumed truck.jpg", timeout=TIMEOUT_MS)
                sync_api.expect(rows(page)).to_have_count(count - 1)
                sync_api.expect(page.locator("#categories textarea")).to_have_value("truck, tire")
                page.locator("#overlay img").wait_for()
                _, body = download(page, "_coco.json")
                coco = json.loads(body)
                assert coco["annotations"] == edited  # the same objects, masks and boxes as before the restart
                assert coco["images"][0]["file_name"] == "truck.jpg"
                page.screenshot(path=str(artifacts_dir() / "app-resumed-after-restart.png"), full_page=True)
                assert "Traceback" not in second.log_text()
        finally:
            browser.close()
