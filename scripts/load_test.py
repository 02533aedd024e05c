"""Load test of a running app on this machine: many ``/segment`` clients at once, a batch, and browser tabs clicking.

What it does, all at once against one server (loopback only; bounded in requests and time):

* ``--batch-images`` images in one ``/label_batch`` call (started first, so everything else runs beside it);
* ``--segment-clients`` ``gradio_client`` clients, each calling ``/segment`` once, released together;
* ``--tabs`` Chromium pages (Debian's ``/usr/bin/chromium``, never a downloaded one), each running an image and
  then making ``--clicks`` clicks that add an object with a point (SAM2's decoder), timed from the click to the
  new overlay.

Every request ends as completed, refused ("queue full", at once), an error (a message) or a hang (no answer within
``--request-timeout``). It prints those counts, p50/p95 latencies of ``/segment`` and of a click, the slowest
refusal, and the server's peak RSS (with ``--pid``, read from ``/proc``). Exit status 1 when any request errs
or hangs.

Run against a server you started::

    GROUNDED_SAM_DEVICE=cpu .venv/bin/python app.py &
    .venv/bin/python -m scripts.load_test --url http://127.0.0.1:7860/ --pid $!

or let it start one with the tiny test models (no weights needed)::

    .venv/bin/python -m scripts.load_test --tiny
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
PHOTOS = ("truck.jpg", "groceries.jpg", "cars.jpg")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update"]


@dataclass(frozen=True)
class LoadPlan:
    """How much load: the issue's figure by default (20 clients, a batch of 20, two tabs)."""

    segment_clients: int = 20
    batch_images: int = 20
    tabs: int = 2
    clicks: int = 5
    categories: str = "truck, tire"
    request_timeout: float = 600.0


@dataclass
class Result:
    """One request: ``kind`` (segment, batch, tab run, click), how it ended, its seconds and what it said."""

    kind: str
    status: str  # "ok", "refused", "error", "hang"
    seconds: float
    detail: str = ""


@dataclass
class LoadReport:
    """Every request's result, the server's peak RSS, and the wall time."""

    results: list[Result] = field(default_factory=list)
    peak_rss_mb: float | None = None
    start_rss_mb: float | None = None
    wall_s: float = 0.0

    def count(self, status: str, kind: str | None = None) -> int:
        return sum(1 for r in self.results if r.status == status and (kind is None or r.kind == kind))

    def latencies(self, kind: str) -> list[float]:
        return sorted(r.seconds for r in self.results if r.kind == kind and r.status == "ok")

    def summary(self) -> dict[str, Any]:
        """The figures, as printed."""
        def percentile(values: list[float], q: float) -> float | None:
            if not values:
                return None
            if len(values) == 1:
                return round(values[0], 3)
            return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 3)

        refusals = [r.seconds for r in self.results if r.status == "refused"]
        return {
            "requests": len(self.results),
            "completed": self.count("ok"),
            "refused": self.count("refused"),
            "errors": self.count("error"),
            "hangs": self.count("hang"),
            "segment_p50_s": percentile(self.latencies("segment"), 50),
            "segment_p95_s": percentile(self.latencies("segment"), 95),
            "click_p50_s": percentile(self.latencies("click"), 50),
            "click_p95_s": percentile(self.latencies("click"), 95),
            "slowest_refusal_s": round(max(refusals), 3) if refusals else None,
            "batch_s": next((round(r.seconds, 1) for r in self.results if r.kind == "batch" and r.status == "ok"),
                            None),
            "start_rss_mb": self.start_rss_mb,
            "peak_rss_mb": self.peak_rss_mb,
            "wall_s": round(self.wall_s, 1),
        }


def check_loopback(url: str) -> str:
    """The URL, if it names this machine; the load test never reaches another host."""
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise SystemExit(f"error: --url must be a loopback address (127.0.0.1, localhost, ::1), not {host!r}")
    return url if url.endswith("/") else url + "/"


def rss_mb(pid: int, field_name: str = "VmRSS") -> float | None:
    """A process's resident memory (``VmRSS``) or its peak so far (``VmHWM``), in MB, from ``/proc``."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _timed(kind: str, call: Callable[[], Any], results: list[Result], lock: threading.Lock) -> None:
    """Runs one request and records how it ended (queue refusals are told apart from errors)."""
    from gradio_client.exceptions import AppError

    started = time.perf_counter()
    try:
        call()
        result = Result(kind, "ok", time.perf_counter() - started)
    except TimeoutError as exc:
        result = Result(kind, "hang", time.perf_counter() - started, str(exc))
    except Exception as exc:  # noqa: BLE001 (every way a request can fail is a result to count)
        message = str(exc)
        refused = _refused(message) or type(exc).__name__ == "QueueError"
        status = "refused" if refused else "error"
        if isinstance(exc, AppError) and not message:
            message = "AppError without a message"
        result = Result(kind, status, time.perf_counter() - started, f"{type(exc).__name__}: {message}"[:300])
    with lock:
        results.append(result)


def _photos(folder: Path, count: int) -> list[Path]:
    """``count`` image files (the example photos, copied under distinct names)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        source = EXAMPLES / PHOTOS[index % len(PHOTOS)]
        target = folder / f"{index:03d}-{source.name}"
        shutil.copyfile(source, target)
        paths.append(target)
    return paths


def _predict(url: str, timeout: float, *args: Any, api_name: str) -> Any:
    from gradio_client import Client

    # The client's own HTTP calls (its set-up, the upload) wait as long as a request may: on a loaded machine
    # they are slow too, and that is not the server refusing.
    client = Client(url, verbose=False, httpx_kwargs={"timeout": timeout}, analytics_enabled=False)
    job = client.submit(*args, api_name=api_name)
    try:
        return job.result(timeout=timeout)
    except TimeoutError:
        job.cancel()
        raise


def _tabs(url: str, plan: LoadPlan, results: list[Result], lock: threading.Lock, start: threading.Event) -> None:
    """Browser tabs: each runs an image, then clicks new objects in, one tab after the other."""
    from playwright.sync_api import sync_playwright

    timeout_ms = plan.request_timeout * 1000
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            pages = []
            for _ in range(plan.tabs):
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                page.set_default_timeout(timeout_ms)
                page.goto(url)
                page.locator("#run").wait_for()
                pages.append(page)
            start.wait()
            ready = [page for page in pages if _run_in_tab(page, plan, results, lock, timeout_ms)]
            for index in range(plan.clicks):
                for page in ready:
                    _timed("click", lambda page=page, index=index: _click(page, index, timeout_ms), results, lock)
        finally:
            browser.close()


def _refused(message: str) -> bool:
    """A full queue's refusal, as ``gradio_client`` says it or as the page shows it."""
    text = message.lower()
    return "queue is full" in text or "currently busy" in text


def _run_in_tab(page: Any, plan: LoadPlan, results: list[Result], lock: threading.Lock, timeout_ms: float) -> bool:
    """Uploads a photo and clicks Run until a result is there (a full queue refuses it: that is counted, and the
    tab tries again, as a person would), then switches to adding objects with a point.

    Returns:
        True when the tab has a result to click on.
    """
    page.locator("#input-image input[type=file]").set_input_files(str(EXAMPLES / "truck.jpg"))
    page.locator("#input-image img").wait_for()
    page.locator("#categories textarea").fill(plan.categories)
    ready = page.locator("#edit-status", has_text="Click an object")
    toast = page.locator('[data-testid="toast-text"]')
    for _ in range(20):
        started = time.perf_counter()
        page.locator("#run").click()
        ready.or_(toast).first.wait_for(timeout=timeout_ms)
        if ready.count():
            with lock:
                results.append(Result("tab run", "ok", time.perf_counter() - started))
            page.get_by_label("New object: point").check()
            return True
        message = toast.first.inner_text()
        status = "refused" if _refused(message) else "error"
        with lock:
            results.append(Result("tab run", status, time.perf_counter() - started, message[:300]))
        if status == "error":
            return False
        page.locator('[data-testid="toast-close"]').first.click()
        toast.first.wait_for(state="detached")
        page.wait_for_timeout(1000)
    return False


def _click(page: Any, index: int, timeout_ms: float) -> None:
    """A click at a fresh spot of the overlay; done when the new overlay is shown.

    Raises:
        RuntimeError: The page showed a message instead (a full queue, or an error), with its text.
    """
    overlay = page.locator("#overlay img")
    toast = page.locator('[data-testid="toast-text"]')
    before = overlay.get_attribute("src")
    box = overlay.bounding_box()
    x = box["width"] * (0.2 + 0.6 * ((index * 37) % 10) / 10)
    y = box["height"] * (0.2 + 0.6 * ((index * 53) % 10) / 10)
    overlay.click(position={"x": x, "y": y})
    page.wait_for_function(
        "(before) => document.querySelector('#overlay img')?.src !== before"
        " || document.querySelector('[data-testid=\"toast-text\"]') !== null", arg=before, timeout=timeout_ms)
    if toast.count():
        message = toast.first.inner_text()
        page.locator('[data-testid="toast-close"]').first.click()
        raise RuntimeError(message)


def run_load(url: str, plan: LoadPlan, pid: int | None = None) -> LoadReport:
    """Puts the plan's load on the server at ``url`` at once and waits for every request to end.

    Args:
        url: The app (loopback only).
        plan: How many clients, images, tabs and clicks.
        pid: The server's process id, to read its peak RSS.
    """
    from gradio_client import handle_file

    url = check_loopback(url)
    report = LoadReport(start_rss_mb=rss_mb(pid) if pid else None)
    lock = threading.Lock()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grounded-sam-load-") as tmp:
        photos = _photos(Path(tmp) / "photos", max(plan.batch_images, 1))
        threads: list[threading.Thread] = []
        go = threading.Event()

        def segment(photo: Path) -> None:
            go.wait()
            _timed("segment", lambda: _predict(url, plan.request_timeout, handle_file(str(photo)), plan.categories,
                                               api_name="/segment"), report.results, lock)

        if plan.batch_images:
            files = [handle_file(str(p)) for p in photos[:plan.batch_images]]
            threads.append(threading.Thread(target=_timed, args=(
                "batch", lambda: _predict(url, plan.request_timeout, files, plan.categories, api_name="/label_batch"),
                report.results, lock)))
            threads[-1].start()
            time.sleep(2.0)  # the batch is under way before the rest arrives
        for index in range(plan.segment_clients):
            threads.append(threading.Thread(target=segment, args=(photos[index % len(photos)],)))
            threads[-1].start()
        if plan.tabs:
            if not CHROMIUM.exists():
                raise SystemExit(f"error: browser tabs need Debian's Chromium at {CHROMIUM} (or use --tabs 0)")
            threads.append(threading.Thread(target=_tabs, args=(url, plan, report.results, lock, go)))
            threads[-1].start()
        go.set()
        deadline = time.monotonic() + plan.request_timeout * 2
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in threads):
            report.results.append(Result("load test", "hang", plan.request_timeout * 2, "threads still running"))
    report.wall_s = time.perf_counter() - started
    if pid:
        report.peak_rss_mb = rss_mb(pid, "VmHWM")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="the running app (loopback only)")
    parser.add_argument("--pid", type=int, help="the app's process id, for its peak RSS")
    parser.add_argument("--tiny", action="store_true", help="start the app with the tiny test models")
    parser.add_argument("--segment-clients", type=int, default=LoadPlan.segment_clients)
    parser.add_argument("--batch-images", type=int, default=LoadPlan.batch_images)
    parser.add_argument("--tabs", type=int, default=LoadPlan.tabs)
    parser.add_argument("--clicks", type=int, default=LoadPlan.clicks)
    parser.add_argument("--request-timeout", type=float, default=LoadPlan.request_timeout)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    plan = LoadPlan(args.segment_clients, args.batch_images, args.tabs, args.clicks,
                    request_timeout=args.request_timeout)
    if args.tiny:
        report = _with_tiny_server(plan)
    elif args.url:
        report = run_load(args.url, plan, args.pid)
    else:
        parser.error("give --url (and --pid) of a running app, or --tiny")
    figures = report.summary()
    if args.json:
        print(json.dumps({"figures": figures, "results": [asdict(r) for r in report.results]}, indent=1))
    else:
        for key, value in figures.items():
            print(f"{key:>18}: {value}")
        for result in report.results:
            if result.status in ("error", "hang"):
                print(f"{result.status}: {result.kind} after {result.seconds:.1f} s: {result.detail}")
    return 1 if figures["errors"] or figures["hangs"] else 0


def _with_tiny_server(plan: LoadPlan) -> LoadReport:
    """Builds the tiny models, starts ``app.py`` on them, and loads it."""
    sys.path.insert(0, str(REPO))
    from grounded_sam.models.testing import build_test_models
    from tests.app.server import run_app

    with tempfile.TemporaryDirectory(prefix="grounded-sam-load-server-") as tmp:
        models = build_test_models(Path(tmp) / "models")
        with run_app(models, Path(tmp) / "server") as server:
            return run_load(server.url, plan, server.process.pid)


if __name__ == "__main__":
    sys.exit(main())
