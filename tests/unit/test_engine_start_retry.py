"""A run whose simulation engine could not start Ray is submitted once more, and only such a run.

Ray missing its fixed startup window cannot be provoked on demand, so a small real process stands in for
`flwr run`: it prints what Flower prints when that happens, counting its runs in a file.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from server.local_federation import _RAY_DID_NOT_START, run_retrying_engine_start

_FAKE_FLWR_RUN = """
import sys
from pathlib import Path
counter, failures, message = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
runs = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(runs))
print(f"run {runs} starting", flush=True)
print(message if runs <= failures else "run finished", flush=True)
"""


def _run(tmp_path: Path, failures: int, message: str = f"Exception: {_RAY_DID_NOT_START}. This could happen")\
        -> tuple[int, int, str]:
    script = tmp_path / "fake_flwr_run.py"
    script.write_text(_FAKE_FLWR_RUN)
    counter = tmp_path / "runs"
    log = io.StringIO()
    code = run_retrying_engine_start(
        [sys.executable, str(script), str(counter), str(failures), message], env=dict(os.environ), log=log
    )
    return code, int(counter.read_text()), log.getvalue()


def test_a_run_whose_engine_did_not_start_is_submitted_again(tmp_path: Path) -> None:
    code, runs, log = _run(tmp_path, failures=1)
    assert (code, runs) == (0, 2)
    assert "could not start Ray in time (attempt 1 of 2" in log
    assert log.rstrip().endswith("run finished")  # the second run's output is relayed too


def test_the_retry_is_made_once_only(tmp_path: Path) -> None:
    code, runs, log = _run(tmp_path, failures=5)
    assert runs == 2
    assert log.count("submitting the run again") == 1


def test_a_run_that_failed_otherwise_is_not_repeated(tmp_path: Path) -> None:
    # A failure of the run itself may have charged budget; only the engine's start is safe to repeat.
    code, runs, log = _run(tmp_path, failures=1, message="ValueError: site-1.csv row 3 column age is not a number")
    assert runs == 1
    assert "submitting the run again" not in log
