"""Peak memory of a process tree: every process this benchmark started, and everything they started.

Flower's simulation runs the SuperLink, the ServerApp and the simulated sites' workers as separate processes,
so one process's peak RSS says little. A background thread sums the proportional set size (PSS, from
``/proc/PID/smaps_rollup``: a page shared by k processes counts 1/k in each, so forked workers are not counted
k times) over the whole tree a few times a second and keeps the largest sum. Linux only.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks.periodic import PeriodicSampler

_PROC = Path("/proc")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended while we looked
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _pss_bytes(pid: int) -> int:
    try:
        for line in (_PROC / str(pid) / "smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_pss(root: int) -> int:
    """PSS of ``root`` and all its descendants now, in bytes."""
    tree, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        total += _pss_bytes(pid)
        todo.extend(tree.get(pid, ()))
    return total


class PeakMemory(PeriodicSampler):
    """``with PeakMemory() as peak: ...`` then ``peak.bytes``: the largest tree PSS seen while inside."""

    def __init__(self, root: int | None = None, interval_s: float = 0.25) -> None:
        super().__init__(interval_s)
        self.root = os.getpid() if root is None else root
        self.bytes = 0

    def sample(self) -> bool:
        self.bytes = max(self.bytes, tree_pss(self.root))
        return True
