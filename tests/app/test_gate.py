"""The model gate: one model call at a time, interactive work before waiting background work."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from grounded_sam.app import gpu
from grounded_sam.app.gate import ModelGate
from grounded_sam.categories import parse_categories


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def test_interactive_work_goes_before_background_work_that_waited_longer() -> None:
    gate = ModelGate()
    order: list[str] = []
    first_holds = threading.Event()
    release_first = threading.Event()

    def first_background() -> None:
        with gate.background():
            first_holds.set()
            release_first.wait(10)
            order.append("background 1")

    def hold(kind: str, name: str) -> None:
        with getattr(gate, kind)():
            order.append(name)

    threads = [threading.Thread(target=first_background)]
    threads[0].start()
    assert first_holds.wait(10)
    threads.append(threading.Thread(target=hold, args=("background", "background 2")))
    threads[-1].start()
    wait_until(lambda: gate.waiting() == (0, 1))
    threads.append(threading.Thread(target=hold, args=("interactive", "click")))
    threads[-1].start()
    wait_until(lambda: gate.waiting() == (1, 1))
    release_first.set()
    for thread in threads:
        thread.join(10)
    assert order == ["background 1", "click", "background 2"]
    stats = gate.stats()
    assert (stats.interactive_calls, stats.background_calls) == (1, 2)
    assert gate.waiting() == (0, 0)


def test_a_hold_is_released_when_its_work_fails() -> None:
    gate = ModelGate()
    with pytest.raises(RuntimeError), gate.interactive():
        raise RuntimeError("model failed")
    done = threading.Event()
    threading.Thread(target=lambda: (gate.background().__enter__(), done.set()), daemon=True).start()
    assert done.wait(5), "the gate stayed held after a failure"


def test_a_batch_lets_a_click_in_between_two_of_its_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's batch takes the models per image: a click waits for the image in progress, not the batch."""
    gate = ModelGate()
    monkeypatch.setattr(gpu, "MODEL_GATE", gate)
    order: list[str] = []
    image_started = threading.Event()
    finish_image = threading.Event()

    def slow_pipe(rgb: int, categories: object) -> int:
        order.append(f"image {rgb}")
        if rgb == 1:
            image_started.set()
            finish_image.wait(10)
        return rgb

    batch = gpu.BatchImagePipe(slow_pipe)
    categories = parse_categories("thing")
    runner = threading.Thread(target=lambda: [batch(i, categories) for i in (1, 2, 3)])
    runner.start()
    assert image_started.wait(10)
    # The click's decoder pass, through the app's wrapper (the decoder itself replaced).
    monkeypatch.setattr(gpu, "_decode_on_gpu", lambda *args: order.append("click"))
    click = threading.Thread(target=gpu.decode_on_gpu, args=(None, None, "key", {}))
    click.start()
    wait_until(lambda: gate.waiting()[0] == 1)
    finish_image.set()
    runner.join(10)
    click.join(10)
    assert order == ["image 1", "click", "image 2", "image 3"]


def test_the_batch_pipe_forwards_the_pipelines_attributes() -> None:
    class Pipe:
        detector = "the detector"

        def settings(self) -> str:
            return "its settings"

    wrapped = gpu.BatchImagePipe(Pipe())
    assert wrapped.detector == "the detector" and wrapped.settings() == "its settings"
