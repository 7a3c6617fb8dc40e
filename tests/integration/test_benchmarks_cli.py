"""`python -m benchmarks` runs as documented: a table on stdout and the figures under their keys in --json.

Only the in-process benchmarks run here (the DP step and the wire size, ~15 s); the federated ones start real
Flower runs for minutes and CTGAN needs the baseline virtualenv, so they are run by hand (benchmarks/README.md).
The figures themselves are not asserted against the goals: speed is checked by the benchmark, not by tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_prints_the_table_and_writes_the_keys(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "dp_step_overhead", "wire_ratio", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| dp_step_overhead |" in result.stdout and "| wire_ratio |" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["quick"] is True and figures["machine"]["cpus"] >= 1
    step = figures["dp_step_overhead"]
    assert step["goal"] == "<= 2.0" and step["batch"] == 434
    assert step["value"] == step["by_batch"]["434"]["ratio"]
    for timing in step["by_batch"].values():  # a private step does strictly more work than a plain one
        assert timing["private_ms"] > timing["plain_ms"] > 0
    assert step["met"] == (step["value"] <= 2.0)
    wire = figures["wire_ratio"]
    # Flower's framing adds headers only: never less than the float32 payload, and not double it.
    assert 1.0 <= wire["value"] < 1.2 and wire["update_bytes"] >= wire["parameters"] * 4
    assert wire["update_objects"] > 3  # at least the message, its content and one array
    assert 1.9 < wire["secure_agg_ratio"] < 2.2  # 64-bit masked integers
    assert 0 < wire["serialize_s"] and 0 < wire["training_round_s"]


def test_an_unknown_key_is_refused_with_the_valid_ones() -> None:
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--only", "nonsense"], cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "scale_100_sites" in result.stderr
