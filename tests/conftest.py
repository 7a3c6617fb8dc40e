"""Shared fixtures: a small public schema and site tables made in the test, never from ../shared."""

from __future__ import annotations

import json
import uuid
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
