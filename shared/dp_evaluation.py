"""Federated evaluation as a paid DP release: each site sends noisy counts, never a score computed on raw rows.

A score such as an AUC or a total-variation distance, computed on a site's rows and sent as is, is a release
with no bounded sensitivity. So the site sends *histograms* instead, laid out on a grid everyone knows before
the site looks at its data (the schema plus the synthetic table, which is itself a DP output and public to
the consortium), and the server computes every score from their noisy sums:

- ``marginal:<column>``: hold-out rows per level of the column (fidelity: TVD, KS, earth mover's distance);
- ``pair:<a>:<b>`` (optional): hold-out rows per pair of levels (dependence: Cramér's V, real vs synthetic);
- ``tstr:<model>``: hold-out rows per (true class, bin of the predicted probability of the positive class)
  of a model trained on the synthetic table (utility: AUC, accuracy, F1, from the binned scores);
- ``bias:<attribute>``: hold-out rows per (group, class, score bin) of the bias model (representation and
  the utility per group);
- ``dcr:holdout`` and ``dcr:train``: rows per bin of their distance to the closest synthetic row
  (privacy: exact-copy rates and the membership signal of a distance attack).

A hold-out row adds 1 to exactly one cell of each hold-out family and a training row to one cell of
``dcr:train``; the hold-out and training rows are disjoint (``client.holdout``). Under add/remove adjacency the
L2 sensitivity of the whole release is therefore ``sqrt(F)`` with F the number of hold-out families, and
each cell gets N(0, (z * sqrt(F))^2): the Gaussian mechanism with noise multiplier z, charged ``(z, 1.0, 1)``.
With a privacy unit (``client.units``) a site counts one row per unit on each side, so the same sensitivity
holds per unit (a patient held out, or trained on, moves the release as one row does).
Everything after that (summing sites, clipping negative counts, scores, their spread) is post-processing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from threadpoolctl import threadpool_limits

from shared.encoding import column_bins
from shared.evaluation.frames import MISSING, categories, labels, numeric, public_space, subsample
from shared.evaluation.utility import BIAS_MODEL, _features, _models, _preprocessor
from shared.schema import Column, Schema

__all__ = [
    "EvaluationLayout", "add_noise", "cramers_v", "layout_for", "release_scores", "site_counts", "sum_counts",
    "table_counts",
]

MAX_LEVELS = 8  # levels per column: a cell's count must stay well above the noise
SCORE_BINS = 10  # 0.5 is an edge, so accuracy and F1 at the usual threshold are exact functions of the bins
SYNTHETIC_REFERENCE = 20_000  # synthetic rows searched for each real row's nearest neighbour
# Distances in shared.evaluation.frames.public_space: an exact zero bin, then log-spaced up to far away.
DCR_EDGES = (0.0, 1e-9, *np.geomspace(0.01, 4.0, 14).round(4).tolist())
DRAWS = 200  # noise draws for the parametric bootstrap of each score's spread


@dataclass(frozen=True)
class Levels:
    """How one column is cut into the levels its histograms count (from the schema and the synthetic table)."""

    name: str
    kind: str  # "categorical" or "continuous"
    labels: tuple[str, ...]
    groups: tuple[int, ...]  # categorical: level of each public category (in ``categories`` order)
    starts: tuple[float, ...]  # continuous: lower end of each level (public bin starts), ascending
    missing: bool  # a last level for missing values

    def assign(self, frame: pd.DataFrame, column: Column) -> np.ndarray:
        """The level index of every row (missing values to the missing level)."""
        if self.kind == "categorical":
            index = pd.Index(list(categories(column)))
            slots = index.get_indexer(labels(frame, self.name))
            return np.asarray(self.groups, dtype=np.int64)[np.clip(slots, 0, None)]
        values = numeric(frame, self.name)
        level = np.clip(np.searchsorted(np.asarray(self.starts), values, side="right") - 1, 0, len(self.starts) - 1)
        if self.missing:
            level = np.where(np.isnan(values), len(self.labels) - 1, level)
        return np.asarray(level, dtype=np.int64)


@dataclass(frozen=True)
class EvaluationLayout:
    """The public grid of the evaluation release; the server builds it and sends it with the request."""

    columns: tuple[Levels, ...]
    pairs: tuple[tuple[str, str], ...]
    target: str | None
    positive: str | None
    sensitive: tuple[str, ...]
    models: tuple[str, ...]
    score_bins: int
    dcr_edges: tuple[float, ...]

    def level(self, name: str) -> Levels:
        return next(c for c in self.columns if c.name == name)

    def families(self) -> dict[str, tuple[int, ...]]:
        """Every released histogram and its shape, hold-out families first."""
        shapes: dict[str, tuple[int, ...]] = {}
        for levels in self.columns:
            shapes[f"marginal:{levels.name}"] = (len(levels.labels),)
        for a, b in self.pairs:
            shapes[f"pair:{a}:{b}"] = (len(self.level(a).labels), len(self.level(b).labels))
        if self.target is not None:
            for model in self.models:
                shapes[f"tstr:{model}"] = (2, self.score_bins)
            for name in self.sensitive:
                shapes[f"bias:{name}"] = (len(self.level(name).labels), 2, self.score_bins)
        bins = len(self.dcr_edges)
        shapes["dcr:holdout"] = (bins,)
        shapes["dcr:train"] = (bins,)
        return shapes

    @property
    def sensitivity(self) -> float:
        """L2 sensitivity in rows: one cell per hold-out family (a training row touches only dcr:train)."""
        holdout = [name for name in self.families() if name != "dcr:train"]
        return math.sqrt(max(len(holdout), 1))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EvaluationLayout:
        data = json.loads(text)
        columns = tuple(
            Levels(name=c["name"], kind=c["kind"], labels=tuple(c["labels"]), groups=tuple(c["groups"]),
                   starts=tuple(c["starts"]), missing=bool(c["missing"]))
            for c in data["columns"]
        )
        return cls(
            columns=columns, pairs=tuple((a, b) for a, b in data["pairs"]), target=data["target"],
            positive=data["positive"], sensitive=tuple(data["sensitive"]), models=tuple(data["models"]),
            score_bins=int(data["score_bins"]), dcr_edges=tuple(float(x) for x in data["dcr_edges"]),
        )


def layout_for(schema: Schema, synthetic: pd.DataFrame, *, pairs: bool) -> EvaluationLayout:
    """The release's grid: the schema's columns, cut into at most ``MAX_LEVELS`` levels.

    Few levels keep each cell's count large next to the noise. Numbers merge neighbouring public bins (see
    ``_cuts``); a column with many categories keeps the synthetic table's most frequent ones (a DP output, so
    choosing by it costs nothing) and pools the rest as "other".
    """
    columns = [c for c in schema.synthesized_columns if c.derived_from is None]
    levels = tuple(_levels(c, synthetic) for c in columns)
    target = schema.target if schema.target and schema.column(schema.target).type == "categorical" else None
    positive = None
    if target is not None:
        positive = str(schema.to_dict().get("positive_label") or (schema.column(target).categories or ("",))[-1])
    names = [c.name for c in columns]
    return EvaluationLayout(
        columns=levels,
        pairs=tuple((a, b) for i, a in enumerate(names) for b in names[i + 1:]) if pairs else (),
        target=target,
        positive=positive,
        sensitive=tuple(s for s in schema.sensitive if s in names) if target else (),
        models=tuple(_models(0)) if target else (),
        score_bins=SCORE_BINS,
        dcr_edges=DCR_EDGES,
    )


def _levels(column: Column, synthetic: pd.DataFrame) -> Levels:
    if column.type == "categorical":
        names = categories(column)
        shares = pd.Series(labels(synthetic, column.name)).value_counts().reindex(names, fill_value=0).to_numpy()
        if len(names) <= MAX_LEVELS:
            return Levels(column.name, "categorical", names, tuple(range(len(names))), (), False)
        # Keep the most frequent categories (ties in public order), the rest become one "other" level.
        keep = sorted(sorted(range(len(names)), key=lambda i: (-shares[i], i))[: MAX_LEVELS - 1])
        groups = [keep.index(i) if i in keep else MAX_LEVELS - 1 for i in range(len(names))]
        return Levels(column.name, "categorical", (*(names[i] for i in keep), "other"), tuple(groups), (), False)
    bins = column_bins(column)
    starts = np.asarray([a for a, _ in bins])
    values = numeric(synthetic, column.name)
    index = np.clip(np.searchsorted(starts, values[~np.isnan(values)], side="right") - 1, 0, len(bins) - 1)
    mass = np.bincount(index, minlength=len(bins)).astype(float)
    cuts = _cuts(mass, MAX_LEVELS - (1 if column.nullable else 0))
    group_starts = [float(bins[i][0]) for i in cuts]
    ends = [*(bins[j - 1][1] for j in cuts[1:]), bins[-1][1]]
    names = tuple(_num(a) if a == b else f"{_num(a)}–{_num(b)}" for a, b in zip(group_starts, ends))
    if column.nullable:
        names = (*names, MISSING)
    return Levels(column.name, "continuous", names, (), tuple(group_starts), column.nullable)


def _cuts(synthetic_mass: np.ndarray, levels: int) -> list[int]:
    """First public bin of each level: neighbouring bins merged into at most ``levels`` groups.

    Cut at quantiles of an even mix of the synthetic table's mass and a uniform mass over the public bins:
    levels are fine where the synthetic rows are, and a table that collapses a column still leaves levels
    elsewhere, on which the collapse shows.
    """
    n = len(synthetic_mass)
    if n <= levels:
        return list(range(n))
    total = synthetic_mass.sum()
    mix = 0.5 / n + (0.5 * synthetic_mass / total if total > 0 else 0.5 / n)
    cumulative = np.cumsum(mix)
    cuts = [0]
    for q in np.arange(1, levels) / levels:
        i = int(np.searchsorted(cumulative, q, side="left")) + 1
        if cuts[-1] < i < n:
            cuts.append(i)
    return cuts


def _num(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.3g}"


# ---- site side ---------------------------------------------------------------------------------------------


def site_counts(
    layout: EvaluationLayout, schema: Schema, synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame,
    *, seed: int = 0,
) -> dict[str, np.ndarray]:
    """The exact counts of every family (still private: ``add_noise`` before anything leaves the site)."""
    # One thread: gradient boosting's OpenMP workers spin against any other busy process (a simulated
    # site beside it), which made one fit 40x slower on two cores.
    with threadpool_limits(1):
        return _site_counts(layout, schema, synthetic, train, holdout, seed)


def _site_counts(
    layout: EvaluationLayout, schema: Schema, synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame,
    seed: int,
) -> dict[str, np.ndarray]:
    counts: dict[str, np.ndarray] = {}
    assigned = {c.name: c.assign(holdout, schema.column(c.name)) for c in layout.columns}
    shapes = layout.families()
    for name, shape in shapes.items():
        counts[name] = np.zeros(shape, dtype=np.float64)
    for levels in layout.columns:
        np.add.at(counts[f"marginal:{levels.name}"], assigned[levels.name], 1.0)
    for a, b in layout.pairs:
        np.add.at(counts[f"pair:{a}:{b}"], (assigned[a], assigned[b]), 1.0)
    if layout.target is not None:
        _utility_counts(layout, schema, synthetic, holdout, assigned, counts, seed)
    reference = public_space(synthetic.iloc[subsample(len(synthetic), SYNTHETIC_REFERENCE, np.random.default_rng(seed))],
                             schema)
    index = NearestNeighbors(n_neighbors=1).fit(reference)
    for side, frame in (("holdout", holdout), ("train", train)):
        distances = index.kneighbors(public_space(frame, schema))[0][:, 0] if len(frame) else np.zeros(0)
        bins = np.searchsorted(np.asarray(layout.dcr_edges), np.round(distances, 9), side="right") - 1
        np.add.at(counts[f"dcr:{side}"], np.clip(bins, 0, len(layout.dcr_edges) - 1), 1.0)
    return counts


def _utility_counts(
    layout: EvaluationLayout, schema: Schema, synthetic: pd.DataFrame, holdout: pd.DataFrame,
    assigned: Mapping[str, np.ndarray], counts: dict[str, np.ndarray], seed: int,
) -> None:
    """Score bins of the models trained on the synthetic table (public), counted on the hold-out rows."""
    assert layout.target is not None and layout.positive is not None
    y_syn = labels(synthetic, layout.target) == layout.positive
    y_real = labels(holdout, layout.target)
    known = y_real != MISSING  # a row without a label adds to no utility cell: still at most one per family
    truth = (y_real == layout.positive).astype(np.int64)
    if y_syn.all() or not y_syn.any() or not known.any():
        return  # one class in the synthetic table: no model; the cells stay empty (and noised)
    x_syn, x_real = _features(synthetic, schema), _features(holdout, schema)
    for name, model in _models(seed).items():
        if name not in layout.models:
            continue
        pipeline = make_pipeline(_preprocessor(schema), clone(model)).fit(x_syn, y_syn)
        proba = pipeline.predict_proba(x_real)[:, list(pipeline.classes_).index(True)]
        bins = np.clip((proba * layout.score_bins).astype(np.int64), 0, layout.score_bins - 1)
        np.add.at(counts[f"tstr:{name}"], (truth[known], bins[known]), 1.0)
        if name == BIAS_MODEL:
            for attribute in layout.sensitive:
                groups = assigned[attribute]
                np.add.at(counts[f"bias:{attribute}"], (groups[known], truth[known], bins[known]), 1.0)


def add_noise(
    counts: Mapping[str, np.ndarray], layout: EvaluationLayout, noise_multiplier: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """The Gaussian mechanism over every cell: N(0, (z * sqrt(F))^2)."""
    std = noise_multiplier * layout.sensitivity
    shapes = layout.families()
    if set(counts) != set(shapes):
        raise ValueError("the counts do not match the evaluation layout; refusing to release them")
    return {name: np.asarray(counts[name], dtype=np.float64) + rng.normal(0.0, std, size=shapes[name])
            for name in shapes}


def sum_counts(releases: list[Mapping[str, np.ndarray]], layout: EvaluationLayout) -> dict[str, np.ndarray]:
    """Cell-wise sum of several sites' noisy releases (checked against the layout's shapes)."""
    shapes = layout.families()
    total = {name: np.zeros(shape) for name, shape in shapes.items()}
    for release in releases:
        for name, shape in shapes.items():
            values = np.asarray(release[name], dtype=np.float64).reshape(-1)
            if values.size != int(np.prod(shape)):
                raise ValueError(f"a site's evaluation release has {values.size} cells in {name}, expected "
                                 f"{int(np.prod(shape))}")
            total[name] += values.reshape(shape)
    return total


# ---- server side: scores from noisy counts -----------------------------------------------------------------


def release_scores(
    noisy: Mapping[str, np.ndarray], layout: EvaluationLayout, schema: Schema, synthetic: pd.DataFrame,
    *, noise_std: float, seed: int = 0,
) -> dict[str, Any]:
    """Every score the release supports, each with the spread the DP noise gives it.

    The spread is a parametric bootstrap: the known noise N(0, noise_std^2) is added again ``DRAWS`` times and
    the scores recomputed; their standard deviation says how far the noise alone may have moved a score.
    """
    syn = table_counts(layout, schema, synthetic)
    point = _scores(noisy, syn, layout)
    rng = np.random.default_rng(seed)
    draws = [
        _flat(_scores({k: v + rng.normal(0.0, noise_std, size=v.shape) for k, v in noisy.items()}, syn, layout))
        for _ in range(DRAWS)
    ]
    spread = {key: _std([d.get(key) for d in draws]) for key in _flat(point)}
    point["std"] = spread
    point["noise_std_per_cell"] = noise_std
    return point


def table_counts(layout: EvaluationLayout, schema: Schema, synthetic: pd.DataFrame) -> dict[str, np.ndarray]:
    """Exact marginal and pair counts of a table the server may see (the synthetic one, or a public reference)."""
    assigned = {c.name: c.assign(synthetic, schema.column(c.name)) for c in layout.columns}
    out: dict[str, np.ndarray] = {}
    for levels in layout.columns:
        out[f"marginal:{levels.name}"] = np.bincount(assigned[levels.name], minlength=len(levels.labels)).astype(float)
    for a, b in layout.pairs:
        table = np.zeros((len(layout.level(a).labels), len(layout.level(b).labels)))
        np.add.at(table, (assigned[a], assigned[b]), 1.0)
        out[f"pair:{a}:{b}"] = table
    return out


def _scores(noisy: Mapping[str, np.ndarray], syn: Mapping[str, np.ndarray], layout: EvaluationLayout) -> dict[str, Any]:
    # Shares and Cramér's V need counts >= 0 (below zero is noise); AUC, accuracy, F1 and the distance scores
    # are sums of products of counts from different cells, whose independent noise averages out, so they use
    # the raw noisy counts: clipping would add mass to every sparse cell and pull each AUC toward 0.5.
    raw = {k: np.asarray(v, dtype=np.float64) for k, v in noisy.items()}
    counts = {k: np.clip(v, 0.0, None) for k, v in raw.items()}
    marginals = {}
    for levels in layout.columns:
        real, fake = _shares(counts[f"marginal:{levels.name}"]), _shares(syn[f"marginal:{levels.name}"])
        entry: dict[str, Any] = {"real": real.tolist(), "synthetic": fake.tolist(),
                                 "tvd": float(0.5 * np.abs(real - fake).sum())}
        if levels.kind == "continuous":
            ordered = slice(0, len(levels.starts))
            r, f = _shares(counts[f"marginal:{levels.name}"][ordered]), _shares(syn[f"marginal:{levels.name}"][ordered])
            gap = np.abs(np.cumsum(r) - np.cumsum(f))
            entry["ks"] = float(gap.max())
            entry["wasserstein"] = float(gap[:-1].sum() / max(len(r) - 1, 1))  # over ordered levels, range = 1
        marginals[levels.name] = entry
    out: dict[str, Any] = {
        "rows_holdout": float(noisy[f"marginal:{layout.columns[0].name}"].sum()) if layout.columns else None,
        "marginals": marginals,
        "mean_tvd": float(np.mean([m["tvd"] for m in marginals.values()])) if marginals else None,
    }
    if layout.pairs:
        out["dependence"] = {
            f"{a}:{b}": {"real": cramers_v(counts[f"pair:{a}:{b}"]), "synthetic": cramers_v(syn[f"pair:{a}:{b}"])}
            for a, b in layout.pairs
        }
    if layout.target is not None:
        out["utility"] = {model: _binary_scores(raw[f"tstr:{model}"]) for model in layout.models}
        out["bias"] = {
            name: {
                group: {"real_share": float(counts[f"bias:{name}"][g].sum() / max(counts[f"bias:{name}"].sum(), 1.0)),
                        "tstr_auc": _binary_scores(raw[f"bias:{name}"][g])["auc"]}
                for g, group in enumerate(layout.level(name).labels)
            }
            for name in layout.sensitive
        }
    out["privacy"] = _distance_scores(raw["dcr:train"], raw["dcr:holdout"])
    return out


def _shares(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total > 0 else np.full(len(counts), 1.0 / max(len(counts), 1))


def cramers_v(table: np.ndarray) -> float | None:
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    n = table.sum()
    if n <= 0 or min(table.shape) < 2:
        return None
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(math.sqrt(chi2 / (n * (min(table.shape) - 1))))


def _binary_scores(table: np.ndarray) -> dict[str, float | None]:
    """AUC, accuracy and macro F1 from counts per (class, score bin); ties within a bin count one half."""
    neg, pos = table[0], table[1]
    n_neg, n_pos = neg.sum(), pos.sum()
    if n_neg <= 0 or n_pos <= 0:
        return {"auc": None, "accuracy": None, "f1": None}
    below = np.concatenate([[0.0], np.cumsum(neg)[:-1]])
    auc = _unit((pos * (below + 0.5 * neg)).sum() / (n_pos * n_neg))
    half = table.shape[1] // 2
    tp, fn = pos[half:].sum(), pos[:half].sum()
    fp, tn = neg[half:].sum(), neg[:half].sum()
    accuracy = _unit((tp + tn) / (n_pos + n_neg))
    f1_pos = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn > 0 else 0.0
    f1_neg = 2 * tn / (2 * tn + fn + fp) if 2 * tn + fn + fp > 0 else 0.0
    return {"auc": auc, "accuracy": accuracy, "f1": _unit((f1_pos + f1_neg) / 2)}


def _unit(value: float) -> float:
    """A score from noisy counts, kept in [0, 1] (post-processing)."""
    return float(min(max(value, 0.0), 1.0))


def _distance_scores(train: np.ndarray, holdout: np.ndarray) -> dict[str, float | None]:
    """A distance attack's AUC (training rows closer to the synthetic table = members) and exact-copy rates."""
    n_t, n_h = train.sum(), holdout.sum()
    if n_t <= 0 or n_h <= 0:
        return {"membership_auc": None, "train_closer_share": None, "exact_copy_rate": None,
                "exact_copy_rate_holdout": None}
    # Member scores higher when closer: P(d_train < d_holdout) + half the ties (same bin).
    above = np.concatenate([np.cumsum(holdout[::-1])[::-1][1:], [0.0]])  # holdout rows in farther bins
    closer = _unit((train * above).sum() / (n_t * n_h))
    ties = _unit((train * holdout).sum() / (n_t * n_h))
    return {
        "membership_auc": _unit(closer + 0.5 * ties),
        "train_closer_share": _unit(closer / (1.0 - ties)) if ties < 1.0 else 0.5,
        "exact_copy_rate": _unit(train[0] / n_t),
        "exact_copy_rate_holdout": _unit(holdout[0] / n_h),
    }


def _flat(scores: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in scores.items():
        if key in ("std", "noise_std_per_cell"):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{name}/"))
        elif isinstance(value, list):
            out.update({f"{name}/{i}": float(v) for i, v in enumerate(value)})
        elif isinstance(value, (int, float)) and value is not None:
            out[name] = float(value)
    return out


def _std(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.std(known)) if len(known) >= 2 else None
