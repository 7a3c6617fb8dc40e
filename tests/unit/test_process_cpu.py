"""benchmarks.process_cpu: a process's CPU seconds inside a wall-clock window, read from /proc while it runs."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from benchmarks.process_cpu import CpuTrace, cpu_seconds

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

# Spins on the CPU for 1.5 s, then sleeps: the two halves of one process's life.
SPIN_THEN_SLEEP = "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass\ntime.sleep(1.5)\n"


def test_a_window_is_cut_out_of_the_readings_by_interpolation() -> None:
    trace = CpuTrace(pid=0)
    trace.samples = [(10.0, 1.0), (11.0, 2.0), (12.0, 2.2), (13.0, 2.2)]  # a busy second, a light one, an idle one
    assert trace.seconds(10.0, 13.0) == pytest.approx(1.2)
    assert trace.seconds(10.5, 11.5) == pytest.approx(0.6)  # half of each interval
    assert trace.seconds(12.0, 13.0) == 0.0
    assert trace.seconds(5.0, 20.0) == pytest.approx(1.2)  # outside the readings: the nearest one
    assert trace.busy_seconds(10.0, 13.0) == pytest.approx(1.0)  # only the first second reached 70% of a core
    assert trace.busy_seconds(10.0, 13.0, share=0.1) == pytest.approx(2.0)
    assert trace.busy_seconds(10.5, 13.0) == pytest.approx(0.0)  # an interval counts only inside the window


def test_a_real_process_busy_then_idle() -> None:
    child = subprocess.Popen([sys.executable, "-c", SPIN_THEN_SLEEP])
    try:
        began = time.time()
        with CpuTrace(child.pid, interval_s=0.05) as trace:
            child.wait(timeout=30)
        assert cpu_seconds(child.pid) is None  # reaped: the trace stopped on its own
    finally:
        child.kill()
    startup = 0.5  # the interpreter's own start, before the loop: not part of either window
    busy = trace.seconds(began + startup, began + 1.5)
    idle = trace.seconds(began + 2.2, began + 3.0)
    # Two cores shared with the rest of the suite: the spinning half gets a good share of a core, the sleeping
    # half next to none.
    assert busy > 0.3, trace.samples
    assert idle < 0.1, trace.samples
    assert trace.busy_seconds(began + 2.2, began + 3.0) == 0.0
