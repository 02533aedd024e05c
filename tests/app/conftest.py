"""The app in-process: one fixture for every test that builds the page or calls its handlers directly."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def app_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Gradio's analytics off, and the app's job folders in a temporary folder of the test module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        patch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("app-jobs")))
        yield
