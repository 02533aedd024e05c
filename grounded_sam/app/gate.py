"""One model call at a time, interactive requests first: how a click is served during a batch.

The app's models are shared by every request, and two model calls at once would only share the same cores
(or GPU) and both finish late. So every model call of the app passes one :class:`ModelGate`:

* interactive work (Run on an image, ``/segment``, a click's decoder pass) waits only for the model call in
  progress, then goes before any waiting background work;
* background work (a batch, one image at a time; a video clip, whole) waits while interactive work runs or
  waits.

A batch holds the gate per image, not for the whole batch, so a click waits for at most one image of a
running batch (plus the interactive requests before it). A clip holds it for the whole run: SAM2's video
state spans the clip, and a click during a clip waits for it (said in the README).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["MODEL_GATE", "GateStats", "ModelGate"]


@dataclass(frozen=True)
class GateStats:
    """What the gate has seen, for the load script and the logs.

    Attributes:
        interactive_calls: Interactive holds granted.
        background_calls: Background holds granted.
        interactive_wait_s: Longest wait of an interactive hold, in seconds.
    """

    interactive_calls: int
    background_calls: int
    interactive_wait_s: float


class ModelGate:
    """A lock for the models with two priorities.

    Not re-entrant: a hold inside a hold waits forever. It is released by whichever thread ends the hold,
    since a streaming handler's generator may be resumed by different worker threads.

    Thread safety: every method may be called from any thread.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._busy = False
        self._interactive_waiting = 0
        self._background_waiting = 0
        self._interactive_calls = 0
        self._background_calls = 0
        self._longest_wait = 0.0

    @contextmanager
    def interactive(self) -> Iterator[None]:
        """Holds the gate for interactive work: next in line after the call in progress."""
        started = time.perf_counter()
        with self._condition:
            self._interactive_waiting += 1
            try:
                self._condition.wait_for(lambda: not self._busy)
            finally:
                self._interactive_waiting -= 1
            self._busy = True
            self._interactive_calls += 1
            self._longest_wait = max(self._longest_wait, time.perf_counter() - started)
        try:
            yield
        finally:
            self._release()

    @contextmanager
    def background(self) -> Iterator[None]:
        """Holds the gate for background work: only when nothing holds it and no interactive work waits."""
        with self._condition:
            self._background_waiting += 1
            try:
                self._condition.wait_for(lambda: not self._busy and self._interactive_waiting == 0)
            finally:
                self._background_waiting -= 1
            self._busy = True
            self._background_calls += 1
        try:
            yield
        finally:
            self._release()

    def waiting(self) -> tuple[int, int]:
        """Holds waiting now: ``(interactive, background)``."""
        with self._condition:
            return self._interactive_waiting, self._background_waiting

    def stats(self) -> GateStats:
        """Counts and the longest interactive wait so far."""
        with self._condition:
            return GateStats(self._interactive_calls, self._background_calls, self._longest_wait)

    def _release(self) -> None:
        with self._condition:
            self._busy = False
            self._condition.notify_all()


#: The app's one gate: the models are shared by the whole process.
MODEL_GATE = ModelGate()
