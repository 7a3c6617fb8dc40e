"""examples/bank-fraud/run.sh, reduced: 600 rows of each bank table at three banks, one round.

One run (module-scoped, about a minute) of the example's own command feeds every assertion: each synthetic
table has the rare class at the requested share, the signed manifest and the report record that share as a
request, the tables are checked against real held-out rows, nothing was copied, and `fedsynth verify` passes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from server.cli import main as cli_main
from server.demo import APP_DIR
from shared.manifest import verify_output
from tests.integration.examples import run_example

EXAMPLE = APP_DIR / "examples" / "bank-fraud"
ROWS, ROUNDS, SHARE = 600, 1, 0.5
TABLES = {"card-fraud": "Class", "credit-default": "default_payment_next_month"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("banks")
    out = root / "out"
    stdout = run_example(EXAMPLE / "run.sh", out, {"ROWS": ROWS, "ROUNDS": ROUNDS, "SHARE": SHARE})
    return {"out": out, "stdout": stdout}


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


@pytest.mark.parametrize(("name", "target"), TABLES.items())
def test_the_rare_class_has_the_requested_share(run: dict[str, Any], name: str, target: str) -> None:
    synthetic = pd.read_csv(run["out"] / name / "synthetic.csv", dtype=str)
    banks = pd.read_csv(run["out"] / "input" / name / "banks.csv", dtype=str)

    shares = synthetic[target].value_counts(normalize=True)

    assert len(synthetic) == len(banks) == ROWS - round(0.2 * ROWS)  # as many rows as the banks hold
    assert shares["1"] == pytest.approx(SHARE, abs=1 / len(synthetic))  # exact quotas, up to rounding
    assert (banks[target] == "1").mean() < 0.25  # rare in the real rows


@pytest.mark.parametrize(("name", "target"), TABLES.items())
def test_the_manifest_and_report_record_the_request(run: dict[str, Any], name: str, target: str) -> None:
    directory = run["out"] / name
    manifest, report = _json(directory / "manifest.json"), _json(directory / "report.json")
    synthetic = pd.read_csv(directory / "synthetic.csv", dtype=str)

    sampling = manifest["sampling"]
    assert sampling["rebalanced"] is True and sampling["column"] == target
    assert sampling["requested_shares"] == {"1": SHARE}
    assert sampling["rows_per_class"] == synthetic[target].value_counts().to_dict()
    assert "drawn_without_condition" not in sampling  # every class came from the generator conditioned on it
    assert manifest["generator"]["name"] == "ctvae"
    assert report["run"]["sampling"] == sampling
    assert any(note.startswith("Rebalanced on purpose") for note in report["notes"])
    assert "rebalanced on purpose" in (directory / "report.html").read_text()
    reference = report["reference"]["scores"]  # scored on real rows none of the banks trained on
    assert reference["tstr_auc_gradient_boosting"] is not None and reference["exact_copy_rate"] == 0.0


@pytest.mark.parametrize("name", TABLES)
def test_fedsynth_verify_passes(run: dict[str, Any], name: str, capsys: pytest.CaptureFixture[str]) -> None:
    directory = run["out"] / name
    assert f"{directory}: signature valid" in run["stdout"]  # the example's own check

    assert cli_main(["verify", str(directory)]) == 0  # and again, after the report was rebuilt
    assert "synthetic.csv" in verify_output(directory).files_checked
    assert "signature valid" in capsys.readouterr().out


def test_the_summary_shows_the_requested_shares(run: dict[str, Any]) -> None:
    assert run["stdout"].count(f"shares requested {{'1': {SHARE}}}; in the table 0 0.500, 1 0.500") == 2
