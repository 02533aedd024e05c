"""The load script, smaller: clients at once, a batch and a browser tab clicking; nothing errs or hangs.

The issue's full figure (20 clients, a batch of 20, two tabs) is ``python -m scripts.load_test --tiny``;
here a queue of 2 makes sure some requests are refused, and the refusals must come at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.load_test import LoadPlan, check_loopback, run_load
from tests.app.server import AppServer, run_app

pytestmark = pytest.mark.skipif(not Path("/usr/bin/chromium").exists(),
                                reason="the browser tab needs Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def server(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    with run_app(tiny_models, tmp_path_factory.mktemp("app-load"), {"GROUNDED_SAM_QUEUE_SIZE": "2"}) as running:
        yield running


def test_under_load_every_request_completes_or_is_refused_at_once(server: AppServer) -> None:
    plan = LoadPlan(segment_clients=8, batch_images=4, tabs=1, clicks=2, request_timeout=240)
    report = run_load(server.url, plan, server.process.pid)
    figures = report.summary()
    failures = [r for r in report.results if r.status in ("error", "hang")]
    assert not failures, failures
    assert report.count("ok", "tab run") == 1  # after as many refusals as the queue gave it
    assert figures["requests"] == 8 + 1 + 2 + len([r for r in report.results if r.kind == "tab run"])
    assert figures["refused"] >= 1, "a queue of 2 refused nothing: the test did not load the server"
    assert figures["slowest_refusal_s"] < 10  # refused when it arrived (client set-up included), not after a wait
    assert report.count("ok", "click") + report.count("refused", "click") == 2 and report.count("ok", "batch") == 1
    assert figures["peak_rss_mb"] is not None and figures["peak_rss_mb"] > 0
    assert server.process.poll() is None and "Traceback" not in server.log_text()


def test_the_load_script_refuses_any_host_but_this_one() -> None:
    assert check_loopback("http://127.0.0.1:7860") == "http://127.0.0.1:7860/"
    with pytest.raises(SystemExit, match="loopback"):
        check_loopback("https://example.org/")
