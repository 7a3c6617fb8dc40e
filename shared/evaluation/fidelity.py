"""Fidelity: how closely the synthetic table's marginals and pairwise dependences follow the real holdout's.

Per categorical column the total-variation distance (missing counted as a category); per continuous column
the Kolmogorov-Smirnov statistic and the Wasserstein-1 distance divided by the width of the column's public
bounds (over non-missing values); pairwise, the mean absolute difference of the Pearson correlation matrices
over continuous columns and of Cramér's V over pairs of categorical columns, with the worst pair named.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from shared.evaluation.frames import categories, labels, numeric
from shared.schema import Column, Schema

__all__ = ["CategoricalFidelity", "ContinuousFidelity", "DependenceFidelity", "FidelityReport", "fidelity"]


@dataclass(frozen=True)
class CategoricalFidelity:
    """Total-variation distance between the two category distributions (0 same, 1 disjoint)."""

    column: str
    tvd: float


@dataclass(frozen=True)
class ContinuousFidelity:
    """KS statistic and bounds-normalized Wasserstein distance; None when a side has no non-missing value."""

    column: str
    ks: float | None
    wasserstein: float | None


@dataclass(frozen=True)
class DependenceFidelity:
    """Mean and max absolute difference of a pairwise dependence measure; None with fewer than two columns."""

    pairs: int
    mean_abs_diff: float | None
    max_abs_diff: float | None
    max_pair: str | None


@dataclass(frozen=True)
class FidelityReport:
    """Per-column distances, their averages, and the pairwise dependence differences."""

    mean_tvd: float | None
    mean_ks: float | None
    mean_wasserstein: float | None
    categorical: tuple[CategoricalFidelity, ...]
    continuous: tuple[ContinuousFidelity, ...]
    correlation: DependenceFidelity
    cramers_v: DependenceFidelity


def fidelity(synthetic: pd.DataFrame, real: pd.DataFrame, schema: Schema) -> FidelityReport:
    """Compare ``synthetic`` with ``real`` (the holdout) column by column and pair by pair."""
    cat_cols = [c for c in schema.synthesized_columns if c.type == "categorical"]
    num_cols = [c for c in schema.synthesized_columns if c.type == "continuous"]
    categorical = tuple(CategoricalFidelity(c.name, _tvd(c, synthetic, real)) for c in cat_cols)
    continuous = tuple(_continuous(c, synthetic, real) for c in num_cols)
    return FidelityReport(
        mean_tvd=_mean([f.tvd for f in categorical]),
        mean_ks=_mean([f.ks for f in continuous]),
        mean_wasserstein=_mean([f.wasserstein for f in continuous]),
        categorical=categorical,
        continuous=continuous,
        correlation=_pairwise([c.name for c in num_cols], _pearson(synthetic, num_cols), _pearson(real, num_cols)),
        cramers_v=_pairwise([c.name for c in cat_cols], _cramers_v(synthetic, cat_cols), _cramers_v(real, cat_cols)),
    )


def _shares(column: Column, frame: pd.DataFrame) -> np.ndarray:
    counts = pd.Series(labels(frame, column.name)).value_counts()
    values = counts.reindex(list(categories(column)), fill_value=0).to_numpy(dtype=np.float64)
    return values / max(values.sum(), 1.0)


def _tvd(column: Column, synthetic: pd.DataFrame, real: pd.DataFrame) -> float:
    return float(0.5 * np.abs(_shares(column, synthetic) - _shares(column, real)).sum())


def _continuous(column: Column, synthetic: pd.DataFrame, real: pd.DataFrame) -> ContinuousFidelity:
    a, b = numeric(synthetic, column.name), numeric(real, column.name)
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) == 0 or len(b) == 0:
        return ContinuousFidelity(column.name, None, None)
    assert column.bounds is not None
    width = column.bounds[1] - column.bounds[0]
    ks = float(stats.ks_2samp(a, b).statistic)
    return ContinuousFidelity(column.name, ks, float(stats.wasserstein_distance(a, b)) / width)


def _pearson(frame: pd.DataFrame, columns: list[Column]) -> np.ndarray:
    values = pd.DataFrame({c.name: numeric(frame, c.name) for c in columns})
    # Pairwise-complete observations; a constant column gives NaN, read as 0 by _pairwise.
    return np.asarray(values.corr(method="pearson").to_numpy(dtype=np.float64), dtype=np.float64)


def _cramers_v(frame: pd.DataFrame, columns: list[Column]) -> np.ndarray:
    k = len(columns)
    out = np.full((k, k), np.nan)
    codes = [pd.Index(list(categories(c))).get_indexer(labels(frame, c.name)) for c in columns]
    for i, j in itertools.combinations(range(k), 2):
        out[i, j] = out[j, i] = _cramers_v_pair(codes[i], codes[j])
    return out


def _cramers_v_pair(x: np.ndarray, y: np.ndarray) -> float:
    """Cramér's V of two code arrays (no bias correction); NaN when either is constant (read as 0)."""
    keep = (x >= 0) & (y >= 0)
    x, y = x[keep], y[keep]
    _, xi = np.unique(x, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    table = np.zeros((xi.max(initial=-1) + 1, yi.max(initial=-1) + 1))
    np.add.at(table, (xi, yi), 1.0)
    n = table.sum()
    if min(table.shape) < 2 or n == 0:
        return float("nan")
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / n / (min(table.shape) - 1)))


def _pairwise(names: list[str], synthetic: np.ndarray, real: np.ndarray) -> DependenceFidelity:
    # A constant (or empty) column has no dependence on anything: counted as 0, so that a synthesizer that
    # collapses a column is charged for the dependence it lost instead of having the pair dropped.
    synthetic, real = np.nan_to_num(synthetic, nan=0.0), np.nan_to_num(real, nan=0.0)
    diffs = [
        (float(abs(synthetic[i, j] - real[i, j])), f"{names[i]}|{names[j]}")
        for i, j in itertools.combinations(range(len(names)), 2)
    ]
    if not diffs:
        return DependenceFidelity(0, None, None, None)
    worst = max(diffs)
    return DependenceFidelity(len(diffs), float(np.mean([d for d, _ in diffs])), worst[0], worst[1])


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None
