"""Bias: is each group of a sensitive attribute represented, and served, by the synthetic table as by the real?

For every sensitive attribute of the schema and every group of it: the group's share of the real holdout and
of the synthetic table, and the gap in AUC on that group's holdout rows between the gradient-boosting model
trained on the synthetic table (TSTR) and the one trained on the real rows (TRTR). Groups are the public
categories (plus missing); a continuous attribute is cut into ``CONTINUOUS_GROUPS`` equal-width intervals of
its public bounds (whole-number edges for an integer column), so no group boundary is learnt from data. A
group with fewer than ``MIN_GROUP_ROWS`` holdout rows, or a single target class in them, gets no utility gap
and says why in ``skipped``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shared.evaluation.frames import MISSING, categories, labels, numeric
from shared.evaluation.utility import HoldoutPredictions, macro_auc
from shared.schema import Column, Schema

__all__ = ["CONTINUOUS_GROUPS", "MIN_GROUP_ROWS", "GroupBias", "bias"]

CONTINUOUS_GROUPS = 4
MIN_GROUP_ROWS = 20


@dataclass(frozen=True)
class GroupBias:
    """Representation and TSTR-minus-TRTR AUC gap of one group of one sensitive attribute."""

    attribute: str
    group: str
    real_share: float
    synthetic_share: float
    tstr_auc: float | None = None
    trtr_auc: float | None = None
    auc_gap: float | None = None
    skipped: str | None = None


def bias(
    synthetic: pd.DataFrame, holdout: pd.DataFrame, schema: Schema, predictions: HoldoutPredictions | None
) -> tuple[GroupBias, ...]:
    """One entry per (sensitive attribute, group), in schema and category order."""
    out: list[GroupBias] = []
    for name in schema.sensitive:
        column = schema.column(name)
        real_groups, syn_groups = _groups(column, holdout), _groups(column, synthetic)
        for group in _group_names(column):
            in_real = real_groups == group
            entry = GroupBias(name, group, float(np.mean(in_real)), float(np.mean(syn_groups == group)))
            out.append(_with_gap(entry, in_real, predictions))
    return tuple(out)


def _with_gap(entry: GroupBias, in_real: np.ndarray, predictions: HoldoutPredictions | None) -> GroupBias:
    if predictions is None:
        return _skip(entry, "no utility model was scored (see utility.skipped)")
    rows = in_real[predictions.kept]
    if rows.sum() < MIN_GROUP_ROWS:
        return _skip(entry, f"fewer than {MIN_GROUP_ROWS} holdout rows")
    y = predictions.y[rows]
    if len(np.unique(y)) < 2:
        return _skip(entry, "a single target class in the group's holdout rows")
    if predictions.tstr is None or predictions.trtr is None:
        return _skip(entry, "a model could not be trained (see utility)")
    tstr = macro_auc(y, predictions.tstr[rows], predictions.classes)
    trtr = macro_auc(y, predictions.trtr[rows], predictions.classes)
    gap = None if tstr is None or trtr is None else tstr - trtr
    return GroupBias(entry.attribute, entry.group, entry.real_share, entry.synthetic_share, tstr, trtr, gap)


def _skip(entry: GroupBias, reason: str) -> GroupBias:
    return GroupBias(entry.attribute, entry.group, entry.real_share, entry.synthetic_share, skipped=reason)


def _group_names(column: Column) -> tuple[str, ...]:
    if column.type == "categorical":
        return categories(column)
    names = tuple(f"[{a:g}, {b:g})" for a, b in _intervals(column))
    return (*names[:-1], names[-1][:-1] + "]", *((MISSING,) if column.nullable else ()))


def _edges(column: Column) -> np.ndarray:
    assert column.bounds is not None
    edges = np.linspace(column.bounds[0], column.bounds[1], CONTINUOUS_GROUPS + 1)
    # Whole-number edges read better for ages and counts; a narrow integer range may then have fewer groups.
    return np.unique(np.rint(edges)) if column.is_integer else edges


def _intervals(column: Column) -> list[tuple[float, float]]:
    edges = _edges(column)
    return [(float(a), float(b)) for a, b in zip(edges[:-1], edges[1:])]


def _groups(column: Column, frame: pd.DataFrame) -> np.ndarray:
    """The group name of each row."""
    if column.type == "categorical":
        return labels(frame, column.name)
    names = _group_names(column)
    values = numeric(frame, column.name)
    edges = _edges(column)
    # Values outside the public bounds fall in the first or last group, as the encoder clips them.
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)
    out = np.asarray(names, dtype=object)[index]
    out[np.isnan(values)] = MISSING
    return np.asarray(out, dtype=object)
