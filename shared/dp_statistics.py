"""Paid-for preprocessing: DP histograms summed across sites, turned into quantile bins and class frequencies.

The encoders are fitted on the public schema. When a consortium wants data-dependent choices (bins that
follow the data's quantiles for continuous columns without public bins; the target's class frequencies for
conditional sampling), each site releases noisy histograms over a *public* grid, and pays for them:

- one row adds 1 to exactly one cell of each of the k histograms, so the L2 sensitivity of the whole
  release is sqrt(k) (add/remove adjacency);
- each cell gets N(0, (z * sqrt(k))^2), so the release is the Gaussian mechanism with noise multiplier z,
  charged to the site's record-level ledger as ``(z, 1.0, 1)`` before it leaves;
- the server only sums the noisy histograms and post-processes them (negative counts to 0, cumulative
  quantiles, frequencies), which costs nothing more.

Missing values get a cell of their own, so a row always lands in exactly one cell per histogram.

With a privacy unit (a patient, ``client.units``) the site passes one row per unit, so adding or removing a
unit moves the histograms as one row does and the sensitivity above holds per unit. The estimates are then
of the per-unit distribution (one encounter per patient), not the per-row one.
"""

from __future__ import annotations

import json
import math
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shared.schema import Column, Schema

__all__ = ["HistogramSpec", "class_frequencies", "noisy_histograms", "quantile_schema", "spec_for"]

_HEAVY_RATIO = 1000  # as in shared.encoding: hi > ratio * max(lo, 1) marks a heavy-tailed column


@dataclass(frozen=True)
class HistogramSpec:
    """The public grid of every histogram a site is asked for (derived from the schema alone)."""

    edges: dict[str, tuple[float, ...]]  # continuous column -> ascending cell edges over its bounds
    categories: dict[str, tuple[str, ...]]  # categorical column -> its categories

    @property
    def count(self) -> int:
        return len(self.edges) + len(self.categories)

    def to_json(self) -> str:
        return json.dumps({"edges": self.edges, "categories": self.categories}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> HistogramSpec:
        data = json.loads(text)
        return cls(
            edges={k: tuple(float(x) for x in v) for k, v in data["edges"].items()},
            categories={k: tuple(str(x) for x in v) for k, v in data["categories"].items()},
        )


def spec_for(schema: Schema, *, quantile_bins: bool, class_frequencies: bool, grid: int) -> HistogramSpec:
    """Histograms to estimate: continuous columns without public bins, and the target's classes."""
    edges: dict[str, tuple[float, ...]] = {}
    if quantile_bins:
        for col in schema.synthesized_columns:
            if col.type == "continuous" and col.bins is None and col.derived_from is None:
                edges[col.name] = _grid(col, grid)
    categories: dict[str, tuple[str, ...]] = {}
    if class_frequencies and schema.target is not None:
        target = schema.column(schema.target)
        if target.type == "categorical" and target.categories:
            categories[target.name] = target.categories
    return HistogramSpec(edges, categories)


def _grid(col: Column, cells: int) -> tuple[float, ...]:
    """A public grid over the column's bounds: log-spaced for heavy tails, equal-width otherwise."""
    assert col.bounds is not None
    lo, hi = col.bounds
    if lo >= 0 and hi > _HEAVY_RATIO * max(lo, 1.0):
        edges = lo + np.geomspace(1.0, hi - lo + 1.0, cells + 1) - 1.0
        edges = np.concatenate([[lo], edges[1:]]) if edges[0] != lo else edges
    else:
        edges = np.linspace(lo, hi, cells + 1)
    if col.is_integer:
        edges = np.unique(np.rint(edges))
    edges[0], edges[-1] = lo, hi
    return tuple(float(e) for e in np.unique(edges))


def noisy_histograms(
    frame: pd.DataFrame, spec: HistogramSpec, noise_multiplier: float, rng: np.random.Generator | None = None
) -> dict[str, list[float]]:
    """Counts per cell (last cell: missing) plus Gaussian noise; the only thing that leaves the site.

    ``rng`` is for tests only: production noise comes from a generator seeded with 128 bits of OS entropy.
    """
    generator = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
    std = noise_multiplier * math.sqrt(spec.count)
    out: dict[str, list[float]] = {}
    for name, edges in spec.edges.items():
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
        missing = np.isnan(values)
        counts, _ = np.histogram(values[~missing], bins=np.asarray(edges))
        out[name] = _noised(np.append(counts, missing.sum()), std, generator)
    for name, categories in spec.categories.items():
        series = frame[name]
        counts = np.array([(series == c).sum() for c in categories] + [series.isna().sum()])
        out[name] = _noised(counts, std, generator)
    return out


def _noised(counts: np.ndarray, std: float, generator: np.random.Generator) -> list[float]:
    return [float(c) for c in counts.astype(np.float64) + generator.normal(0.0, std, size=counts.shape)]


def sum_histograms(replies: list[dict[str, list[float]]], spec: HistogramSpec) -> dict[str, np.ndarray]:
    """Add the sites' noisy histograms cell by cell; a reply with the wrong shape is an error."""
    totals: dict[str, np.ndarray] = {}
    expected = {**{k: len(v) for k, v in spec.edges.items()}, **{k: len(v) + 1 for k, v in spec.categories.items()}}
    for name, cells in expected.items():
        total = np.zeros(cells)
        for reply in replies:
            values = np.asarray(reply[name], dtype=np.float64)
            if values.shape != (cells,) or not np.all(np.isfinite(values)):
                raise ValueError(f"a site's histogram for {name!r} has the wrong shape or non-finite values")
            total += values
        totals[name] = total
    return totals


def quantile_schema(schema: Schema, spec: HistogramSpec, totals: dict[str, np.ndarray], bins: int) -> Schema:
    """The schema with public-grid quantile edges as ``bins`` for every estimated continuous column."""
    data: dict[str, Any] = schema.to_dict()
    for raw in data["columns"]:
        name = raw["name"]
        if name not in spec.edges:
            continue
        grid = np.asarray(spec.edges[name])
        counts = np.clip(totals[name][:-1], 0.0, None)  # drop the missing cell; clipping is post-processing
        col = schema.column(name)
        raw["bins"] = _quantile_edges(grid, counts, bins, col.is_integer)
    return Schema.from_dict(data, source="schema with DP-estimated bins")


def _quantile_edges(grid: np.ndarray, counts: np.ndarray, bins: int, integer: bool) -> list[float]:
    lo, hi = float(grid[0]), float(grid[-1])
    total = counts.sum()
    if total <= 0:
        return [lo, hi]
    cumulative = np.cumsum(counts) / total
    cuts = {float(grid[np.searchsorted(cumulative, q) + 1]) for q in np.arange(1, bins) / bins}
    edges = sorted({lo, hi} | {c for c in cuts if lo < c < hi})
    if integer:
        edges = sorted({float(round(e)) for e in edges})
    return [int(e) if integer else e for e in edges]


def class_frequencies(spec: HistogramSpec, totals: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per estimated categorical column, each category's share among non-missing rows (from noisy counts)."""
    out: dict[str, dict[str, float]] = {}
    for name, categories in spec.categories.items():
        counts = np.clip(totals[name][:-1], 0.0, None)
        total = counts.sum()
        shares = counts / total if total > 0 else np.full(len(categories), 1.0 / len(categories))
        out[name] = {c: float(s) for c, s in zip(categories, shares, strict=True)}
    return out
