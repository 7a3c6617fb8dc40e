"""Tests for shared.evaluation: each score moves the right way on tables made to be good or bad, and the
report never carries a value from a real row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from server.cli import main
from shared.errors import ConfigError, DataValidationError
from shared.evaluation import evaluate, evaluate_files
from shared.evaluation.bias import MIN_GROUP_ROWS
from shared.evaluation.fidelity import fidelity
from shared.evaluation.privacy import privacy
from shared.evaluation.utility import utility
from shared.schema import Schema
from shared.validation import read_site_table
from tests.conftest import CANARY_CATEGORY, CANARY_FLOAT, CANARY_ID, SMALL_SCHEMA, write_site_table

SCHEMA = Schema.from_dict(SMALL_SCHEMA)


def _table(tmp: Path, rows: int, seed: int) -> pd.DataFrame:
    path = tmp / f"site-{rows}-{seed}.csv"
    write_site_table(path, rows, seed)
    return read_site_table(path, SCHEMA).clean


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """Real training rows, a real holdout and an independent sample, all from the same process."""
    tmp = tmp_path_factory.mktemp("evaluation")
    return {"train": _table(tmp, 1500, 1), "holdout": _table(tmp, 1500, 2), "fresh": _table(tmp, 1500, 3)}


def test_fidelity_of_a_copy_of_the_holdout_is_perfect(tables: dict[str, pd.DataFrame]) -> None:
    report = fidelity(tables["holdout"].copy(), tables["holdout"], SCHEMA)

    assert report.mean_tvd == pytest.approx(0.0, abs=1e-12)
    assert report.mean_ks == pytest.approx(0.0, abs=1e-12)
    assert report.mean_wasserstein == pytest.approx(0.0, abs=1e-12)
    assert report.correlation.mean_abs_diff == pytest.approx(0.0, abs=1e-12)
    assert report.cramers_v.mean_abs_diff == pytest.approx(0.0, abs=1e-12)


def test_fidelity_flags_the_garbled_columns(tables: dict[str, pd.DataFrame]) -> None:
    garbled = tables["fresh"].copy()
    garbled["ward"] = pd.array(["onco"] * len(garbled), dtype="string")
    garbled["lab"] = pd.array(np.random.default_rng(0).uniform(0, 10000, len(garbled)), dtype="Float64")
    garbled["outcome"] = garbled["sex"].map({"F": "healed", "M": "readmitted"}).astype("string")

    report = fidelity(garbled, tables["holdout"], SCHEMA)

    tvd = {f.column: f.tvd for f in report.categorical}
    continuous = {f.column: f for f in report.continuous}
    assert tvd["ward"] > 0.6 and tvd["sex"] < 0.05
    assert (continuous["lab"].ks or 0) > 0.8 and (continuous["lab"].wasserstein or 0) > 0.3
    assert (continuous["age"].ks or 1) < 0.1
    assert report.cramers_v.max_pair == "sex|outcome" and (report.cramers_v.max_abs_diff or 0) > 0.8


def test_a_copy_of_the_training_rows_is_caught(tables: dict[str, pd.DataFrame]) -> None:
    report = privacy(tables["train"].copy(), tables["train"], tables["holdout"], SCHEMA, seed=0)

    assert report.exact_copy_rate == 1.0
    assert report.dcr_share > 0.95
    assert report.mia_auc > 0.9


def test_an_independent_sample_looks_private(tables: dict[str, pd.DataFrame]) -> None:
    report = privacy(tables["fresh"], tables["train"], tables["holdout"], SCHEMA, seed=0)

    assert report.dcr_share == pytest.approx(0.5, abs=0.06)
    assert report.mia_auc == pytest.approx(0.5, abs=0.06)
    # Rows with a missing lab value repeat by chance; the holdout baseline shows the same rate.
    assert report.exact_copy_rate == pytest.approx(report.exact_copy_rate_holdout, abs=0.02)


def test_synthetic_rows_from_the_real_process_keep_the_utility(tables: dict[str, pd.DataFrame]) -> None:
    report, _ = utility(tables["fresh"], tables["train"], tables["holdout"], SCHEMA, seed=0)

    models = {m.model: m for m in report.models}
    assert models["logistic_regression"].auc_ratio == pytest.approx(1.0, abs=0.1)
    assert models["gradient_boosting"].auc_ratio == pytest.approx(1.0, abs=0.15)
    trtr = models["logistic_regression"].trtr
    assert trtr is not None and (trtr.auc or 0) > 0.6  # the generator's age effect is learnt


def test_a_random_target_has_no_utility(tables: dict[str, pd.DataFrame]) -> None:
    noise = tables["fresh"].copy()
    rng = np.random.default_rng(0)
    noise["outcome"] = pd.array(rng.choice(["healed", "readmitted"], len(noise)), dtype="string")

    report, _ = utility(noise, tables["train"], tables["holdout"], SCHEMA, seed=0)

    for model in report.models:
        assert model.tstr is not None and model.tstr.auc == pytest.approx(0.5, abs=0.07)


def test_a_single_class_synthetic_target_is_skipped_not_crashed(tables: dict[str, pd.DataFrame]) -> None:
    flat = tables["fresh"].copy()
    flat["outcome"] = pd.array(["healed"] * len(flat), dtype="string")

    report = evaluate(flat, tables["train"], tables["holdout"], SCHEMA)

    assert all(m.tstr is None and m.skipped for m in report.utility.models)
    assert all(g.skipped for g in report.bias)
    json.dumps(report.to_dict(), allow_nan=False)


def test_bias_reports_shares_and_skips_small_groups(tables: dict[str, pd.DataFrame]) -> None:
    small_holdout = tables["holdout"].iloc[: MIN_GROUP_ROWS + 5]

    full = evaluate(tables["fresh"], tables["train"], tables["holdout"], SCHEMA)
    small = evaluate(tables["fresh"], tables["train"], small_holdout, SCHEMA)

    assert [g.group for g in full.bias] == ["F", "M"]
    assert sum(g.real_share for g in full.bias) == pytest.approx(1.0)
    assert all(g.skipped is None and g.auc_gap is not None for g in full.bias)
    assert all(g.skipped == f"fewer than {MIN_GROUP_ROWS} holdout rows" for g in small.bias)


def test_the_report_never_carries_a_real_value(tmp_path: Path, small_schema: Path) -> None:
    real = tmp_path / "real.csv"
    write_site_table(real, 400, 5, canary=True)

    # The worst case: the "synthetic" table is the real one, canary row and all.
    report = evaluate_files(real, real, small_schema, seed=1)

    text = json.dumps(report.to_dict(), allow_nan=False) + report.summary()
    for canary in (CANARY_ID, CANARY_CATEGORY, CANARY_FLOAT, CANARY_FLOAT[:8]):
        assert canary not in text


def test_cli_writes_the_report(tmp_path: Path, small_schema: Path, capsys: pytest.CaptureFixture[str]) -> None:
    real, synthetic, out = tmp_path / "real.csv", tmp_path / "synthetic.csv", tmp_path / "report.json"
    write_site_table(real, 600, 7)
    write_site_table(synthetic, 600, 8)

    code = main(["evaluate", "--synthetic", str(synthetic), "--real", str(real), "--schema", str(small_schema),
                 "--holdout-fraction", "0.3", "--out", str(out)])

    assert code == 0
    printed = capsys.readouterr().out
    assert "DCR share" in printed and "TSTR/TRTR AUC" in printed and "sex=F" in printed
    report = json.loads(out.read_text())
    assert report["train_rows"] == 420 and report["holdout_rows"] == 180
    assert set(report) >= {"fidelity", "utility", "privacy", "bias"}


def test_errors_name_the_file_and_the_fix(tmp_path: Path, small_schema: Path) -> None:
    real = tmp_path / "real.csv"
    write_site_table(real, 50, 9)
    broken = tmp_path / "broken.csv"
    broken.write_text("age,sex\n40,F\n")

    with pytest.raises(DataValidationError, match="broken.csv.*no column"):
        evaluate_files(broken, real, small_schema)
    with pytest.raises(ConfigError, match="holdout-fraction"):
        evaluate_files(real, real, small_schema, holdout_fraction=1.0)
    with pytest.raises(DataValidationError, match="synthetic table has no column 'sex'"):
        evaluate(pd.DataFrame({"age": [40]}), pd.DataFrame(), pd.DataFrame(), SCHEMA)
    assert main(["evaluate", "--synthetic", str(broken), "--real", str(real), "--schema", str(small_schema)]) == 2
