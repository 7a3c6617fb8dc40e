"""Shared fixtures: a small public schema and site tables made in the test, never from ../shared."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

# Drawn afresh each session, so the canaries appear in no source file that might be shipped or logged.
_RNG = np.random.default_rng()
CANARY_ID = f"CANARY-ID-{uuid.uuid4().hex}"
CANARY_CATEGORY = f"CANARY-CAT-{uuid.uuid4().hex}"
CANARY_FLOAT = f"{_RNG.uniform(1000, 9000):.9f}"

SMALL_SCHEMA = {
    "dataset": "clinic",
    "target": "outcome",
    "sensitive_attributes": ["sex"],
    "split_by": "ward",
    "columns": [
        {"name": "patient_id", "type": "identifier", "nullable": False},
        {"name": "age", "type": "continuous", "dtype": "integer", "bounds": [18, 95], "nullable": False},
        {"name": "sex", "type": "categorical", "categories": ["F", "M"], "nullable": False},
        {"name": "ward", "type": "categorical", "categories": ["cardio", "onco", "neuro", "ortho"], "nullable": True},
        {"name": "lab", "type": "continuous", "dtype": "float", "bounds": [0.0, 10000.0], "nullable": True},
        {"name": "outcome", "type": "categorical", "categories": ["healed", "readmitted"], "nullable": False},
    ],
}


def write_site_table(path: Path, rows: int, seed: int, *, canary: bool = False) -> None:
    """A plausible small clinic table; with ``canary`` one row carries unique planted values."""
    rng = np.random.default_rng(seed)
    lines = ["patient_id,age,sex,ward,lab,outcome"]
    for i in range(rows):
        age = int(rng.integers(18, 96))
        ward = "" if rng.random() < 0.05 else str(rng.choice(["cardio", "onco", "neuro", "ortho"]))
        lab = "" if rng.random() < 0.1 else f"{rng.gamma(2.0, 40.0):.3f}"
        outcome = "readmitted" if rng.random() < 0.2 + 0.004 * (age - 18) else "healed"
        lines.append(f"P{seed}-{i},{age},{rng.choice(['F', 'M'])},{ward},{lab},{outcome}")
    if canary:
        lines.append(f"{CANARY_ID},57,F,cardio,{CANARY_FLOAT},healed")  # valid row, unique values
        lines.append(f"{CANARY_ID}-2,61,M,{CANARY_CATEGORY},12.5,healed")  # invalid: quarantined at the site
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture()
def small_schema(tmp_path: Path) -> Path:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SMALL_SCHEMA))
    return path


def require_tool(name: str, install_hint: str) -> None:
    """Skip a test whose real tool is missing here, but fail under CI, where .ci/run installs it."""
    import os
    import shutil

    if shutil.which(name):
        return
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"CI is set but {name} is not on PATH; .ci/run installs it")
    pytest.skip(f"{name} is not installed: {install_hint}")


def run_as_task(memory: object, work: Callable[[], bytes]) -> bytes:
    """``work`` in a real fork of this process wired to ``memory`` (a ``client.task_memory.TaskMemory``) as the
    warm runtime wires each task; the bytes it returned. Fails if the task fails."""
    reader, writer = os.pipe()
    pipe = memory.before_fork()  # type: ignore[attr-defined]
    pid = os.fork()
    if pid == 0:
        os.close(reader)
        memory.after_fork_in_child(pipe)  # type: ignore[attr-defined]
        try:
            os.write(writer, work())
            status = 0
        except BaseException:  # noqa: BLE001 - reported through the exit status; the trace goes to stderr
            import traceback

            traceback.print_exc()
            status = 1
        os._exit(status)
    os.close(writer)
    memory.after_fork_in_parent(pipe).join(timeout=60)  # type: ignore[attr-defined]
    with os.fdopen(reader, "rb") as result:
        returned = result.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the task failed (its traceback is above)"
    return returned
