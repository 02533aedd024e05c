"""Shared fixtures: tiny randomly initialised models in the real on-disk layouts, pipelines over them, and
the photos in ``examples/``.

The models are built once per test session into a temporary models folder and loaded through the
package's real loaders. Random weights give junk boxes, so tests that need known boxes either
constrain Florence-2's generation (:func:`tests.fakes.forced_output`) or use the scripted model,
whose decoder weights make it emit :data:`grounded_sam.models.testing.SCRIPTED_BINS` for every prompt.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Tests compare fp32 figures (chunked = unchunked, shared features = the processor's path): "auto" would run
# bf16 on CPUs with AVX-512 BF16 and not on others. Tests of bf16 ask for it by name.
os.environ.setdefault("GROUNDED_SAM_AUTO_PRECISION", "fp32")

REPO = Path(__file__).resolve().parents[1]
#: The real photos (with their attribution) that the tests, the examples and the benchmark use.
EXAMPLE_IMAGES = REPO / "examples"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths of the tiny test models: ``florence`` (random), ``florence_scripted``, ``sam2`` (.pt with .yaml)."""
    from grounded_sam.models.testing import build_test_models

    return build_test_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def scripted_pipe(tiny_models: dict[str, Path]) -> Any:
    """The tiny scripted Florence-2 and tiny SAM2 on the CPU, no NMS: known boxes, real masks."""
    from grounded_sam.pipeline import GroundedSAM2

    return GroundedSAM2(tiny_models["florence_scripted"], tiny_models["sam2"], device="cpu", nms="none")


@pytest.fixture(scope="session")
def photos() -> Path:
    """The folder of real photos: ``truck.jpg``, ``groceries.jpg``, ``cars.jpg`` (see ``examples/ATTRIBUTION.md``)."""
    return EXAMPLE_IMAGES


@pytest.fixture(scope="session")
def truck_rgb(photos: Path) -> np.ndarray:
    from grounded_sam.inputs.images import load_image

    return load_image(photos / "truck.jpg")


class CallCounter:
    """Counts calls of a module's ``forward`` (installed with monkeypatch, so it is undone after the test)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: Any) -> None:
        self.calls = 0
        original = module.forward

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, "forward", counting)


@pytest.fixture
def count_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Any], CallCounter]]:
    yield lambda module: CallCounter(monkeypatch, module)
