"""Column access shared by the evaluation metrics: typed values out of validated frames, and the public space.

The public space is the one the distance-based privacy metrics measure in. It is built from the schema
alone (bounds and category lists), never fitted on data, so the same row maps to the same point whichever
tables it is compared with, and building it reveals nothing about any table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shared.errors import DataValidationError
from shared.schema import Column, Schema

MISSING = "(missing)"
# hi > ratio * max(lo, 1) marks a heavy-tailed, non-negative column, measured on a log scale (as the encoder does).
_HEAVY_RATIO = 1000


def check_columns(frame: pd.DataFrame, schema: Schema, role: str) -> None:
    """Raise if ``frame`` lacks a synthesized column or has no rows; ``role`` names the table in the message."""
    missing = [c.name for c in schema.synthesized_columns if c.name not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{role} table has no column {missing[0]!r}; validate it against schema {schema.name!r} "
            "(shared.validation.read_site_table) before evaluating"
        )
    if len(frame) == 0:
        raise DataValidationError(f"{role} table has no rows; evaluation needs at least one row on each side")


def numeric(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A continuous column as float64 with NaN where missing."""
    series = pd.to_numeric(frame[name], errors="coerce")
    return np.asarray(series.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)


def labels(frame: pd.DataFrame, name: str) -> np.ndarray:
    """A categorical column as an object array of strings, with ``MISSING`` where missing."""
    series = frame[name].astype("string").fillna(MISSING)
    return np.asarray(series.to_numpy(dtype=object), dtype=object)


def categories(column: Column) -> tuple[str, ...]:
    """The public category list of a categorical column, plus ``MISSING`` when it is nullable."""
    return (*(column.categories or ()), *((MISSING,) if column.nullable else ()))


def scaled(column: Column, values: np.ndarray) -> np.ndarray:
    """Values of a continuous column mapped to [0, 1] by its public bounds (log scale when heavy-tailed)."""
    assert column.bounds is not None
    lo, hi = column.bounds
    clipped = np.clip(values, lo, hi)
    if lo >= 0 and hi > _HEAVY_RATIO * max(lo, 1.0):
        return np.asarray(np.log1p(clipped - lo) / np.log1p(hi - lo), dtype=np.float64)
    return np.asarray((clipped - lo) / (hi - lo), dtype=np.float64)


def public_space(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """Rows as points: continuous columns in [0, 1] (plus a missing flag), categoricals one-hot.

    One-hot blocks are scaled by 1/sqrt(2) so that two different categories are as far apart (1) as the two
    ends of a continuous column's bounds: no column dominates the distance by its encoding alone.
    """
    parts: list[np.ndarray] = []
    for column in schema.synthesized_columns:
        if column.derived_from is not None:
            continue  # a function of another column: counting it would weigh that column twice
        if column.type == "categorical":
            index = pd.Index(list(categories(column)))
            slots = index.get_indexer(labels(frame, column.name))
            onehot = np.zeros((len(frame), len(index)), dtype=np.float64)
            known = slots >= 0
            onehot[np.flatnonzero(known), slots[known]] = 1.0 / np.sqrt(2.0)
            parts.append(onehot)
            continue
        values = numeric(frame, column.name)
        missing = np.isnan(values)
        parts.append(np.where(missing, 0.0, scaled(column, np.where(missing, 0.0, values)))[:, None])
        if column.nullable:
            parts.append(missing.astype(np.float64)[:, None])
    return np.concatenate(parts, axis=1)


def row_keys(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """One 64-bit hash per row over the synthesized columns; equal rows get equal keys across frames."""
    normal = pd.DataFrame(
        {
            c.name: labels(frame, c.name) if c.type == "categorical" else numeric(frame, c.name)
            for c in schema.synthesized_columns
        }
    )
    return np.asarray(pd.util.hash_pandas_object(normal, index=False).to_numpy(), dtype=np.uint64)


def subsample(n: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``cap`` of ``n`` rows, drawn without replacement."""
    if n <= cap:
        return np.arange(n)
    return np.sort(rng.choice(n, size=cap, replace=False))
