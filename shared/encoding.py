"""The table encoder: validated rows <-> the fixed-width float vectors a generator trains on.

Unlike CTGAN's ``DataTransformer``, the encoder is fitted on the public schema only: its bins come from the
schema's bounds (or explicit public ``bins``), never from data, so building it spends no privacy budget and
every site and the server build the same layout.

Layout, per synthesized column in schema order (identifiers and ``derived_from`` columns are skipped):

- categorical: one one-hot block over the categories (plus a missing slot last when nullable);
- continuous: one one-hot block over its bins (plus a missing slot when nullable), then one ``offset`` value
  in [0, 1] giving the position inside the bin.

Integer bins are inclusive integer ranges ``[a, b]``; explicit edges ``e0 < e1 < ... < ek`` give the ranges
``[e_i, e_{i+1} - 1]`` and a last range ``[e_{k-1}, e_k]``, so ``[.., 40, 41, ..]`` makes 40 its own bin.
An integer ``v`` is encoded with offset ``(v - a + 0.5) / (b - a + 1)`` and decoded as
``a + floor(offset * (b - a + 1))``, which is exact while bins are narrower than 2**23 (float32 precision).
Float bins are ``[a, b)`` (the last one closed) with offset ``(v - a) / (b - a)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from shared.errors import DataValidationError
from shared.schema import Column, Schema
from shared.slots import EncodedSlots, slots_of

__all__ = ["OutputBlock", "TableEncoder", "column_bins"]

logger = logging.getLogger(__name__)

_EXACT_INT_BINS = 32  # one bin per value up to this many integers
_LOG_BINS = 20
_EQUAL_BINS = 24
_HEAVY_RATIO = 1000  # hi > ratio * max(lo, 1) marks a heavy-tailed, non-negative column
_FLOAT32_EXACT_WIDTH = 2**23


@dataclass(frozen=True)
class OutputBlock:
    """A contiguous slice ``[start, start + width)`` of the encoded vector belonging to one column."""

    column: str
    kind: Literal["categorical", "offset"]
    start: int
    width: int


@dataclass(frozen=True)
class _Bins:
    lows: np.ndarray  # float64 bin starts
    highs: np.ndarray  # float64 bin ends (inclusive for integer bins)
    integer: bool

    def locate(self, values: np.ndarray) -> np.ndarray:
        """Bin index of each (in-bounds) value."""
        idx = np.searchsorted(self.lows, values, side="right") - 1
        idx = np.clip(idx, 0, len(self.lows) - 1)
        if not self.integer and len(self.lows) > 1 and self.highs[0] == self.lows[0]:
            # A float point bin [lo, lo] shares its start with the next bin; lo itself belongs to the point.
            idx = np.where(values <= self.lows[0], 0, idx)
        return idx

    def offsets(self, values: np.ndarray, idx: np.ndarray) -> np.ndarray:
        a, b = self.lows[idx], self.highs[idx]
        if self.integer:
            return np.asarray((values - a + 0.5) / (b - a + 1), dtype=np.float64)
        width = b - a
        safe = np.where(width > 0, width, 1.0)
        return np.where(width > 0, (values - a) / safe, 0.5)

    def values(self, idx: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        a, b = self.lows[idx], self.highs[idx]
        if self.integer:
            return np.asarray(np.clip(a + np.floor(offsets * (b - a + 1)), a, b), dtype=np.float64)
        return np.asarray(a + offsets * (b - a), dtype=np.float64)


def column_bins(column: Column) -> tuple[tuple[float, float], ...]:
    """The public bins of a continuous column as ``(a, b)`` pairs (inclusive integer ranges for integers)."""
    bins = _bins_for(column)
    return tuple((float(a), float(b)) for a, b in zip(bins.lows, bins.highs))


def _bins_for(column: Column) -> _Bins:
    assert column.bounds is not None and column.type == "continuous"
    lo, hi = column.bounds
    if column.is_integer:
        return _integer_bins(column, int(lo), int(hi))
    if column.bins is not None:
        edges = np.asarray(column.bins, dtype=np.float64)
    elif lo >= 0 and hi > _HEAVY_RATIO * max(lo, 1.0):
        log_edges = lo + (np.geomspace(1.0, hi - lo + 1.0, _LOG_BINS + 1) - 1.0)
        log_edges[-1] = hi
        lows = np.concatenate([[lo], log_edges[:-1]])
        return _Bins(lows, np.concatenate([[lo], log_edges[1:]]), integer=False)
    else:
        edges = np.linspace(lo, hi, _EQUAL_BINS + 1)
        edges[-1] = hi
    return _Bins(edges[:-1].copy(), edges[1:].copy(), integer=False)


def _integer_bins(column: Column, lo: int, hi: int) -> _Bins:
    if column.bins is not None:
        starts = np.asarray(column.bins, dtype=np.float64)
        ends = np.append(starts[1:-1] - 1, starts[-1])
        starts = starts[:-1]
    elif hi - lo + 1 <= _EXACT_INT_BINS:
        starts = ends = np.arange(lo, hi + 1, dtype=np.float64)
    elif lo >= 0 and hi > _HEAVY_RATIO * max(lo, 1):
        # An exact bin for lo (zero capital gain is the common case), then log-spaced ranges over lo+1..hi.
        steps = np.unique(np.rint(np.geomspace(1.0, hi - lo + 1.0, _LOG_BINS + 1))) - 1
        starts = np.concatenate([[lo], lo + 1 + steps[:-1]])
        ends = np.concatenate([[lo], lo + steps[1:]])
    else:
        edges = np.unique(np.rint(np.linspace(lo, hi + 1, _EQUAL_BINS + 1)))
        starts, ends = edges[:-1], edges[1:] - 1
    if np.max(ends - starts + 1) > _FLOAT32_EXACT_WIDTH:
        logger.warning("column %r: a bin is wider than 2**23 values; decoding may be off by one", column.name)
    return _Bins(starts.astype(np.float64), ends.astype(np.float64), integer=True)


class TableEncoder:
    """Encodes validated frames to float32 arrays and decodes generator output back to typed frames."""

    def __init__(self, schema: Schema, blocks: tuple[OutputBlock, ...], bins: dict[str, _Bins]) -> None:
        self.schema = schema
        self.blocks = blocks
        self.dim = sum(b.width for b in blocks)
        self._bins = bins
        self._slots = {b.column: b for b in blocks if b.kind == "categorical"}
        self._offsets = {b.column: b for b in blocks if b.kind == "offset"}
        self.columns: tuple[str, ...] = tuple(c.name for c in schema.synthesized_columns)
        self.last_clip_counts: dict[str, int] = {}

    @classmethod
    def from_schema(cls, schema: Schema) -> TableEncoder:
        """Build the encoder from the public schema alone."""
        blocks: list[OutputBlock] = []
        bins: dict[str, _Bins] = {}
        start = 0
        for col in _encoded_columns(schema):
            if col.type == "categorical":
                width = len(col.categories or ()) + int(col.nullable)
                blocks.append(OutputBlock(col.name, "categorical", start, width))
                start += width
                continue
            bins[col.name] = _bins_for(col)
            width = len(bins[col.name].lows) + int(col.nullable)
            blocks.append(OutputBlock(col.name, "categorical", start, width))
            blocks.append(OutputBlock(col.name, "offset", start + width, 1))
            start += width + 1
        return cls(schema, tuple(blocks), bins)

    def encode(self, df: pd.DataFrame) -> np.ndarray:
        """Encode a validated frame (see ``shared.validation``) as float32 of shape (n, dim).

        Values outside the public bounds are clipped to them; the counts are in ``last_clip_counts``.
        """
        n = len(df)
        out = np.zeros((n, self.dim), dtype=np.float32)
        rows = np.arange(n)
        clips: dict[str, int] = {}
        for col in _encoded_columns(self.schema):
            if col.name not in df.columns:
                raise DataValidationError(f"encode: the frame has no column {col.name!r}; validate it first")
            block = self._slots[col.name]
            if col.type == "categorical":
                slot = self._category_slots(col, df[col.name])
            else:
                slot, offset, clips[col.name] = self._continuous_slots(col, df[col.name])
                out[:, self._offsets[col.name].start] = offset
            out[rows, block.start + slot] = 1.0
        self.last_clip_counts = clips
        return out

    def _category_slots(self, col: Column, series: pd.Series) -> np.ndarray:
        values = series.to_numpy(dtype=object, na_value=None)
        missing = series.isna().to_numpy()
        slot = pd.Index(list(col.categories or ())).get_indexer(values)
        if np.any((slot < 0) & ~missing):
            raise DataValidationError(
                f"encode: column {col.name!r} holds a value outside its category list; validate the frame first"
            )
        return self._missing_slot(col, slot, missing)

    def _continuous_slots(self, col: Column, series: pd.Series) -> tuple[np.ndarray, np.ndarray, int]:
        numeric = pd.to_numeric(series, errors="coerce")
        missing = series.isna().to_numpy()
        values = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
        if np.any(np.isnan(values) & ~missing) or np.any(np.isinf(values)):
            raise DataValidationError(
                f"encode: column {col.name!r} holds a value that is not a finite number; validate the frame first"
            )
        assert col.bounds is not None
        lo, hi = col.bounds
        clipped = int(np.sum(~missing & ((values < lo) | (values > hi))))
        values = np.clip(np.where(missing, lo, values), lo, hi)
        if col.is_integer:
            values = np.rint(values)
        bins = self._bins[col.name]
        idx = bins.locate(values)
        offset = np.where(missing, 0.5, bins.offsets(values, idx))
        return self._missing_slot(col, idx, missing), offset, clipped

    def _missing_slot(self, col: Column, slot: np.ndarray, missing: np.ndarray) -> np.ndarray:
        if not np.any(missing):
            return slot
        if not col.nullable:
            raise DataValidationError(
                f"encode: column {col.name!r} is not nullable but has missing values; validate the frame first"
            )
        return np.where(missing, self._slots[col.name].width - 1, slot)

    def decode(self, x: np.ndarray) -> pd.DataFrame:
        """Decode an array of this layout (one-hot or probabilities) into a typed frame in schema order."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"decode: expected an array of shape (n, {self.dim}), got {x.shape}")
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
        return self.decode_slots(slots_of(x, self.blocks))

    def decode_slots(self, encoded: EncodedSlots) -> pd.DataFrame:
        """Decode rows in compact form (``shared.slots``: a slot per categorical block, the offsets)."""
        categorical = [b for b in self.blocks if b.kind == "categorical"]
        if encoded.slots.shape[1] != len(categorical) or encoded.offsets.shape[1] != len(self._offsets):
            raise ValueError(f"decode: expected {len(categorical)} slots and {len(self._offsets)} offsets a row, got "
                             f"{encoded.slots.shape[1]} and {encoded.offsets.shape[1]}")
        decoded: dict[str, Any] = {}
        slots: dict[str, np.ndarray] = {}
        for index, block in enumerate(categorical):
            slots[block.column] = slot = encoded.slots[:, index]
            if len(slot) and (slot.min() < 0 or slot.max() >= block.width):
                raise ValueError(f"decode: a slot of column {block.column!r} lies outside 0..{block.width - 1}")
        offsets = {b.column: encoded.offsets[:, i] for i, b in enumerate(b for b in self.blocks if b.kind == "offset")}
        for col in _encoded_columns(self.schema):
            slot, width = slots[col.name], self._slots[col.name].width
            missing = (slot == width - 1) if col.nullable else np.zeros(len(slot), dtype=bool)
            if col.type == "categorical":
                decoded[col.name] = _string_array(col.categories or (), slot, missing)
                continue
            idx = np.where(missing, 0, slot)
            # A diverged generator's NaN must not crash decoding: it reads as 0, as in a block (chosen_slots).
            offset = np.clip(np.nan_to_num(offsets[col.name].astype(np.float64), nan=0.0), 0.0, 1.0)
            decoded[col.name] = _numeric_array(col, self._bins[col.name].values(idx, offset), missing)
        for col in self.schema.synthesized_columns:
            if col.derived_from is not None:
                decoded[col.name] = _derived_array(col, self.schema.column(col.derived_from), slots[col.derived_from])
        return pd.DataFrame({name: decoded[name] for name in self.columns})

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary of the layout for reports: slots and public bins per column."""
        out: dict[str, Any] = {"dim": self.dim, "columns": {}}
        for col in self.schema.synthesized_columns:
            entry: dict[str, Any]
            if col.derived_from is not None:
                entry = {"kind": "derived", "from": col.derived_from}
            elif col.type == "categorical":
                entry = {"kind": "categorical", "slots": self._slots[col.name].width, "missing_slot": col.nullable}
            else:
                bins = self._bins[col.name]
                entry = {
                    "kind": "continuous",
                    "slots": self._slots[col.name].width,
                    "missing_slot": col.nullable,
                    "bins": [[_plain(a), _plain(b)] for a, b in zip(bins.lows, bins.highs)],
                }
            out["columns"][col.name] = entry
        return out


def _encoded_columns(schema: Schema) -> tuple[Column, ...]:
    return tuple(c for c in schema.synthesized_columns if c.derived_from is None)


def _numeric_array(col: Column, values: np.ndarray, missing: np.ndarray) -> pd.api.extensions.ExtensionArray:
    if col.is_integer:
        return pd.arrays.IntegerArray(np.where(missing, 0, values).astype(np.int64), missing.copy())
    return pd.arrays.FloatingArray(np.where(missing, 0.0, values).astype(np.float64), missing.copy())


def _string_array(categories: tuple[str, ...], slot: np.ndarray, missing: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """The column's labels as pandas strings, taken from the category list by Arrow (no Python string per row)."""
    taken = pa.array(list(categories), type=pa.string()).take(pa.array(np.where(missing, 0, slot), mask=missing))
    return pd.array(taken, dtype="string")


def _derived_array(col: Column, source: Column, slot: np.ndarray) -> pd.api.extensions.ExtensionArray:
    """The derived column from its source's slots through the public mapping (the source's missing slot: NaN)."""
    mapping = col.mapping or {}
    table = np.array([mapping.get(c, np.nan) for c in source.categories or ()] + [np.nan] * int(source.nullable), dtype=np.float64)
    values = table[slot]
    missing = np.isnan(values)
    return _numeric_array(col, np.where(missing, 0.0, values), missing)


def _plain(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)
