"""Tests for the federated evaluation release (shared.dp_evaluation) and the site's hold-out split.

The release is only private if one row moves it by at most its stated sensitivity, so that is checked on
real counts, row by row; and it is only useful if scores computed from its cells agree with the exact scores
of shared.evaluation on the same rows, so that is checked too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from client.holdout import holdout_key, holdout_mask
from shared.dp_evaluation import EvaluationLayout, add_noise, layout_for, release_scores, site_counts, sum_counts
from shared.errors import ConfigError
from shared.evaluation import evaluate
from shared.schema import Schema
from shared.validation import read_site_table
from tests.conftest import SMALL_SCHEMA, write_site_table

SCHEMA = Schema.from_dict(SMALL_SCHEMA)


def _table(tmp: Path, rows: int, seed: int) -> pd.DataFrame:
    path = tmp / f"t-{rows}-{seed}.csv"
    write_site_table(path, rows, seed)
    return read_site_table(path, SCHEMA).clean


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    tmp = tmp_path_factory.mktemp("dp-evaluation")
    return {"train": _table(tmp, 900, 1), "holdout": _table(tmp, 900, 2), "synthetic": _table(tmp, 1000, 3)}


@pytest.fixture(scope="module")
def layout(tables: dict[str, pd.DataFrame]) -> EvaluationLayout:
    return layout_for(SCHEMA, tables["synthetic"], pairs=True)


def test_layout_round_trips_and_names_every_family(layout: EvaluationLayout) -> None:
    again = EvaluationLayout.from_json(layout.to_json())
    assert again == layout
    families = layout.families()
    assert {"marginal:age", "marginal:sex", "pair:age:sex", "tstr:gradient_boosting", "bias:sex", "dcr:train"} <= set(
        families
    )
    # Hold-out families: 5 marginals + 10 pairs + 2 models + 1 bias + dcr:holdout.
    assert layout.sensitivity == pytest.approx(np.sqrt(5 + 10 + 2 + 1 + 1))


def test_removing_one_row_moves_the_counts_by_at_most_the_sensitivity(
    tables: dict[str, pd.DataFrame], layout: EvaluationLayout
) -> None:
    full = site_counts(layout, SCHEMA, tables["synthetic"], tables["train"], tables["holdout"])
    for side, index in (("holdout", 0), ("holdout", 400), ("train", 7)):
        smaller = dict(tables)
        smaller[side] = tables[side].drop(index=tables[side].index[index]).reset_index(drop=True)
        fewer = site_counts(layout, SCHEMA, smaller["synthetic"], smaller["train"], smaller["holdout"])
        moved = np.sqrt(sum(float(((full[k] - fewer[k]) ** 2).sum()) for k in full))
        assert 0 < moved <= layout.sensitivity + 1e-9, (side, index, moved)


def test_scores_from_exact_counts_match_the_local_evaluation(
    tables: dict[str, pd.DataFrame], layout: EvaluationLayout
) -> None:
    counts = site_counts(layout, SCHEMA, tables["synthetic"], tables["train"], tables["holdout"])
    scores = release_scores(counts, layout, SCHEMA, tables["synthetic"], noise_std=1e-9)
    exact = evaluate(tables["synthetic"], tables["train"], tables["holdout"], SCHEMA).to_dict()
    gb = next(m for m in exact["utility"]["models"] if m["model"] == "gradient_boosting")
    # Ten score bins lose a little of the ranking, never much.
    assert scores["utility"]["gradient_boosting"]["auc"] == pytest.approx(gb["tstr"]["auc"], abs=0.03)
    assert scores["utility"]["gradient_boosting"]["accuracy"] == pytest.approx(gb["tstr"]["accuracy"], abs=1e-3)  # exact, up to the report's rounding
    tvd_sex = next(c["tvd"] for c in exact["fidelity"]["categorical"] if c["column"] == "sex")
    assert scores["marginals"]["sex"]["tvd"] == pytest.approx(tvd_sex, abs=1e-3)
    # Independent samples of one process: no membership signal, no preference for training rows.
    assert scores["privacy"]["membership_auc"] == pytest.approx(0.5, abs=0.05)
    assert scores["std"]["mean_tvd"] == pytest.approx(0.0, abs=1e-6)


def test_a_copying_generator_is_caught_by_the_distance_histograms(
    tables: dict[str, pd.DataFrame], layout: EvaluationLayout
) -> None:
    copied = tables["train"].sample(n=700, random_state=0).reset_index(drop=True)
    counts = site_counts(layout, SCHEMA, copied, tables["train"], tables["holdout"])
    scores = release_scores(counts, layout, SCHEMA, copied, noise_std=1e-9)
    assert scores["privacy"]["exact_copy_rate"] > 0.5
    assert scores["privacy"]["membership_auc"] > 0.7


def test_noise_has_the_stated_scale_and_the_spread_reflects_it(
    tables: dict[str, pd.DataFrame], layout: EvaluationLayout
) -> None:
    counts = site_counts(layout, SCHEMA, tables["synthetic"], tables["train"], tables["holdout"])
    noisy = add_noise(counts, layout, 3.0, np.random.default_rng(0))
    residual = np.concatenate([(noisy[k] - counts[k]).ravel() for k in counts])
    assert np.std(residual) == pytest.approx(3.0 * layout.sensitivity, rel=0.1)
    quiet = release_scores(add_noise(counts, layout, 0.5, np.random.default_rng(1)), layout, SCHEMA,
                           tables["synthetic"], noise_std=0.5 * layout.sensitivity)
    loud = release_scores(noisy, layout, SCHEMA, tables["synthetic"], noise_std=3.0 * layout.sensitivity)
    assert loud["std"]["utility/gradient_boosting/auc"] > quiet["std"]["utility/gradient_boosting/auc"] > 0
    with pytest.raises(ValueError, match="layout"):
        add_noise({k: v for k, v in counts.items() if k != "dcr:train"}, layout, 1.0, np.random.default_rng(0))


def test_sites_sum_cell_by_cell(tables: dict[str, pd.DataFrame], layout: EvaluationLayout) -> None:
    a = site_counts(layout, SCHEMA, tables["synthetic"], tables["train"], tables["holdout"])
    flat = {k: v.reshape(-1).tolist() for k, v in a.items()}  # as it arrives in a Flower record
    total = sum_counts([a, flat], layout)
    assert all(np.array_equal(total[k], 2 * a[k]) for k in a)


def test_holdout_split_follows_each_row_not_its_position(tmp_path: Path, tables: dict[str, pd.DataFrame]) -> None:
    key = holdout_key(tmp_path / "site.ledger.json")
    assert holdout_key(tmp_path / "site.ledger.json") == key  # made once, then kept
    frame = tables["train"]
    mask = holdout_mask(frame, SCHEMA, key, 0.2)
    assert 0.15 < mask.mean() < 0.25
    shuffled = frame.sample(frac=1.0, random_state=3)
    assert np.array_equal(holdout_mask(shuffled, SCHEMA, key, 0.2), mask[shuffled.index.to_numpy()])
    other = holdout_mask(frame, SCHEMA, bytes(32), 0.2)
    assert not np.array_equal(other, mask)  # another site's key gives another split
    assert not holdout_mask(frame, SCHEMA, key, 0.0).any()


def test_a_damaged_holdout_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "site.ledger.json.holdout-key").write_text("not hex")
    with pytest.raises(ConfigError, match="damaged"):
        holdout_key(tmp_path / "site.ledger.json")


def test_layout_levels_come_from_the_synthetic_table_not_the_real_one(tables: dict[str, pd.DataFrame]) -> None:
    a = layout_for(SCHEMA, tables["synthetic"], pairs=False)
    assert json.loads(a.to_json())["pairs"] == []
    assert all(len(levels.labels) <= 8 for levels in a.columns)
