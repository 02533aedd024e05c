"""Runs ``python app.py`` on a free localhost port with the tiny test models, for the API and browser tests.

The server gets its own temp folder (``TMPDIR``), data folder (``GROUNDED_SAM_DATA_DIR``: saved edits), an empty
models folder and Hugging Face cache, and ``HF_HUB_OFFLINE=1``, so a test can look at every file it wrote, no
weights are fetched and nothing is saved outside the test's folder.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 180


@dataclass
class AppServer:
    """A running app: its URL, its process, its log file and its temp folder."""

    url: str
    process: subprocess.Popen
    log: Path
    tmp: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def run_app(models: dict[str, Path], workdir: Path, extra_env: dict[str, str] | None = None,
            port: int | None = None) -> Iterator[AppServer]:
    """Starts the app, waits until it answers, yields it, and always stops it.

    Args:
        models: The ``tiny_models`` fixture; the scripted detector is used so masks are drawn.
        workdir: An empty folder for the server's temp files, caches and log.
        extra_env: More environment variables (e.g. ``GROUNDED_SAM_MAX_PIXELS``).
        port: The port (a restarted server takes its predecessor's, so the browser's storage for it is kept);
            a free one when None.
    """
    port = port or free_port()
    tmp = workdir / "tmp"
    for folder in (tmp, workdir / "hf-home", workdir / "models"):
        folder.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(workdir / "hf-home"),
        "GROUNDED_SAM_MODELS_DIR": str(workdir / "models"),
        "GROUNDED_SAM_DETECTOR": str(models["florence_scripted"]),
        "GROUNDED_SAM_SEGMENTER": str(models["sam2"]),
        "GROUNDED_SAM_DEVICE": "cpu",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "TMPDIR": str(tmp),
        "GRADIO_TEMP_DIR": str(tmp / "gradio"),
        "GROUNDED_SAM_DATA_DIR": str(workdir / "data"),
        **(extra_env or {}),
    }
    for name in ("GROUNDED_SAM_BATCH_ROOTS", "GROUNDED_SAM_MAX_PIXELS", "HF_HUB_CACHE"):
        if name not in (extra_env or {}):
            env.pop(name, None)
    log = workdir / "app.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "app.py")], cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    server = AppServer(f"http://127.0.0.1:{port}/", process, log, tmp)
    try:
        _wait_until_up(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


def _wait_until_up(server: AppServer) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"app.py exited with {server.process.returncode}:\n{server.log_text()[-4000:]}")
        try:
            with urllib.request.urlopen(server.url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"app.py did not answer within {STARTUP_TIMEOUT_S} s:\n{server.log_text()[-4000:]}")


def api_client(server: AppServer, downloads: Path) -> Any:
    """A ``gradio_client.Client`` of ``server`` that saves files under ``downloads`` and sends no analytics."""
    from gradio_client import Client

    return Client(server.url, verbose=False, download_files=str(downloads), analytics_enabled=False)
