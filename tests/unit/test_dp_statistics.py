"""Paid-for preprocessing: noisy histograms over a public grid, and what the server derives from them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from server.sampling import _quotas
from shared.dp_statistics import (
    HistogramSpec,
    class_frequencies,
    noisy_histograms,
    quantile_schema,
    spec_for,
    sum_histograms,
)
from shared.schema import Schema
from tests.conftest import SMALL_SCHEMA

SCHEMA = Schema.from_dict(SMALL_SCHEMA)


def _frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lab = rng.gamma(2.0, 40.0, rows)
    lab[rng.random(rows) < 0.1] = np.nan
    return pd.DataFrame({
        "age": rng.integers(18, 96, rows), "lab": lab,
        "outcome": np.where(rng.random(rows) < 0.3, "readmitted", "healed"),
    })


def test_spec_asks_only_for_columns_without_public_bins_and_the_target() -> None:
    spec = spec_for(SCHEMA, quantile_bins=True, class_frequencies=True, grid=64)
    assert set(spec.edges) == {"age", "lab"} and set(spec.categories) == {"outcome"}
    assert spec.edges["age"][0] == 18 and spec.edges["age"][-1] == 95
    assert HistogramSpec.from_json(spec.to_json()) == spec
    assert spec_for(SCHEMA, quantile_bins=False, class_frequencies=False, grid=64).count == 0


def test_each_cell_gets_the_noise_of_a_sqrt_k_sensitivity_gaussian_mechanism() -> None:
    # One row moves one cell in each of k histograms (L2 sensitivity sqrt(k)); noise std must be z sqrt(k).
    spec = spec_for(SCHEMA, quantile_bins=True, class_frequencies=True, grid=16)
    frame = _frame(500, 0)
    z = 3.0
    exact = noisy_histograms(frame, spec, 1e-12, rng=np.random.default_rng(0))
    draws = [noisy_histograms(frame, spec, z, rng=np.random.default_rng(s)) for s in range(200)]
    residuals = np.concatenate([np.asarray(d[k]) - np.asarray(exact[k]) for d in draws for k in exact])
    assert residuals.std() == pytest.approx(z * math.sqrt(spec.count), rel=0.05)
    assert abs(residuals.mean()) < 0.1 * z * math.sqrt(spec.count)
    # Every row counted once per histogram, missing values in the last cell.
    for name, counts in exact.items():
        assert round(sum(counts)) == len(frame)
    assert round(exact["lab"][-1]) == int(frame["lab"].isna().sum())


def test_quantile_bins_follow_the_data_and_make_a_valid_schema() -> None:
    spec = spec_for(SCHEMA, quantile_bins=True, class_frequencies=False, grid=128)
    frames = [_frame(4000, s) for s in range(3)]
    totals = sum_histograms([noisy_histograms(f, spec, 1.0, rng=np.random.default_rng(i)) for i, f in enumerate(frames)], spec)

    schema = quantile_schema(SCHEMA, spec, totals, bins=8)

    edges = schema.column("lab").bins
    assert edges is not None and edges[0] == 0.0 and edges[-1] == 10000.0
    median = np.nanmedian(pd.concat(frames)["lab"])
    inner = [e for e in edges if 0 < e < 10000]
    assert min(abs(e - median) for e in inner) < 0.15 * median  # an edge near the median
    assert all(float(e).is_integer() for e in schema.column("age").bins or ())


def test_class_frequencies_and_quotas() -> None:
    spec = spec_for(SCHEMA, quantile_bins=False, class_frequencies=True, grid=8)
    frame = _frame(10_000, 1)
    totals = sum_histograms([noisy_histograms(frame, spec, 1.0, rng=np.random.default_rng(1))], spec)
    shares = class_frequencies(spec, totals)["outcome"]
    assert shares["readmitted"] == pytest.approx((frame["outcome"] == "readmitted").mean(), abs=0.01)
    quotas = _quotas(shares, 1001)
    assert sum(quotas.values()) == 1001


def test_a_malformed_histogram_is_refused_without_echoing_it() -> None:
    spec = spec_for(SCHEMA, quantile_bins=False, class_frequencies=True, grid=8)
    with pytest.raises(ValueError, match="outcome") as info:
        sum_histograms([{"outcome": [1.0, float("nan"), 2.0]}], spec)
    assert "nan" not in str(info.value).lower()
