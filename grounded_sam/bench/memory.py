"""Process memory while a benchmark runs: resident set size sampled in a background thread.

Reads ``/proc/self/statm`` (Linux); elsewhere it falls back to ``resource``'s high-water mark,
which cannot be reset, so per-image peaks are then only upper bounds.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_STATM = "/proc/self/statm"


def current_rss_bytes() -> int:
    """Resident set size of this process now (or the high-water mark where /proc is missing)."""
    try:
        with open(_STATM, "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except OSError:
        return max_rss_bytes()


def max_rss_bytes() -> int:
    """The process's resident high-water mark since it started."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if os.uname().sysname == "Darwin" else 1024)


class RssSampler:
    """Samples RSS every ``interval_s`` and keeps the peak since the last :meth:`take_peak`.

    Use as a context manager around the code to watch.
    """

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._peak = current_rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self) -> None:
        rss = current_rss_bytes()
        with self._lock:
            self._peak = max(self._peak, rss)

    def take_peak(self) -> int:
        """The peak RSS in bytes since the last call (or the start); starts a new window."""
        self._sample()
        with self._lock:
            peak, self._peak = self._peak, current_rss_bytes()
        return peak
