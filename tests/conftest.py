"""Shared fixtures: tiny randomly initialised models in the real on-disk layouts.

They are built once per test session into a temporary models folder and loaded through the
package's real loaders. Random weights give junk boxes, so tests that need known boxes either
constrain Florence-2's generation (``forced_output``) or use the scripted model, whose decoder
weights make it emit fixed boxes for every prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_IMAGES = REPO.parent / "shared" / "images"

# Two boxes every prompt of the scripted detector finds: (x1, y1, x2, y2) location bins.
SCRIPTED_BINS = ((100, 150, 450, 700), (550, 300, 900, 850))
SCRIPTED_TEXT = "object" + "".join(f"<loc_{v}>" for box in SCRIPTED_BINS for v in box)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Paths of the tiny test models: ``florence`` (random), ``florence_scripted``, ``sam2`` (.pt with .yaml)."""
    from grounded_sam.random_models import build_random_florence2, build_random_sam2

    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "florence": build_random_florence2(root / "florence-tiny"),
        "florence_scripted": build_random_florence2(root / "florence-scripted", scripted_output=SCRIPTED_TEXT),
        "sam2": build_random_sam2(root / "sam2" / "sam2-tiny.pt"),
    }


@pytest.fixture(scope="session")
def shared_images() -> Path:
    if not SHARED_IMAGES.is_dir():
        pytest.skip(f"the shared test photos are not at {SHARED_IMAGES}")
    return SHARED_IMAGES


@pytest.fixture(scope="session")
def truck_rgb(shared_images: Path) -> np.ndarray:
    from grounded_sam.images import load_image

    return load_image(shared_images / "truck.jpg")


def forced_output(tokenizer: Any, texts: list[str]) -> Callable[[int, Any], list[int]]:
    """A ``prefix_allowed_tokens_fn`` making generation for batch row ``i`` emit ``<s>texts[i]</s>``.

    With beams, rows are ``i * num_beams + beam``: callers pass one text per prompt and greedy decoding.
    """
    targets = [[tokenizer.bos_token_id, *tokenizer(t, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id] for t in texts]

    def allowed(batch_id: int, input_ids: Any) -> list[int]:
        target = targets[batch_id % len(targets)]
        step = input_ids.shape[-1] - 1  # the decoder starts from one decoder_start token
        return [target[step]] if step < len(target) else [tokenizer.eos_token_id]

    return allowed


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
