"""A background thread that reads something about a running process a few times a second, between ``with``
entry and exit: the base of ``benchmarks.process_memory`` (peak memory) and ``benchmarks.process_cpu`` (CPU
time), so both start, stop and join it the same way."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self


class PeriodicSampler:
    """Calls ``sample()`` every ``interval_s`` seconds while inside ``with``; ``sample`` returning False (the
    process it reads has ended) stops the thread early."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def sample(self) -> bool:
        raise NotImplementedError

    def _watch(self) -> None:
        while not self._stop.is_set() and self.sample():
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
