"""CPU time of one process over time, to say how busy it was inside a window (a round of a run).

The loopback deployment's rounds are bounded by the coordinator: every message and object of every site goes
through the SuperLink, one Python process. A background thread reads that process's CPU time (user + system,
``/proc/PID/stat``) a few times a second with the wall-clock time of each reading, so a round's window (the
server's ``rounds.json``: when it started, how long it took) can be cut out afterwards: how many CPU seconds
the process spent in it, and for how many wall seconds it ran at or above a share of one core (a Python
process, bound by its GIL, cannot use much more than one). Linux only.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from pathlib import Path

from benchmarks.periodic import PeriodicSampler

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used so far; None once it has ended."""
    try:
        fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) * _TICK_S  # utime, stime (fields 14 and 15 of stat)


class CpuTrace(PeriodicSampler):
    """``with CpuTrace(pid) as trace: ...`` then ``trace.seconds(t0, t1)`` and ``trace.busy_seconds(t0, t1)``,
    with ``t0`` and ``t1`` wall-clock times (``time.time()``)."""

    def __init__(self, pid: int, interval_s: float = 0.25) -> None:
        super().__init__(interval_s)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []  # (wall-clock time, CPU seconds so far), in time order

    def sample(self) -> bool:
        used = cpu_seconds(self.pid)
        if used is None:
            return False
        self.samples.append((time.time(), used))
        return True

    def _at(self, when: float) -> float:
        """CPU seconds used by ``when``, interpolated between the readings around it."""
        if not self.samples:
            return 0.0
        times = [t for t, _ in self.samples]
        i = bisect_left(times, when)
        if i == 0:
            return self.samples[0][1]
        if i == len(self.samples):
            return self.samples[-1][1]
        (t0, c0), (t1, c1) = self.samples[i - 1], self.samples[i]
        return c0 + (c1 - c0) * (when - t0) / (t1 - t0) if t1 > t0 else c1

    def seconds(self, start: float, end: float) -> float:
        """CPU seconds the process used between two wall-clock times."""
        return max(self._at(end) - self._at(start), 0.0)

    def busy_seconds(self, start: float, end: float, share: float = 0.7) -> float:
        """Wall seconds between ``start`` and ``end`` during which the process used at least ``share`` of a core,
        counted over the intervals between readings that lie inside the window."""
        busy = 0.0
        for (t0, c0), (t1, c1) in zip(self.samples, self.samples[1:], strict=False):
            if t0 >= start and t1 <= end and t1 > t0 and (c1 - c0) / (t1 - t0) >= share:
                busy += t1 - t0
        return busy
