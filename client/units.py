"""The privacy unit at a site: whose rows one guarantee protects, and how much of each unit a site uses.

When the schema names a ``privacy_unit`` (an identifier column such as a patient id), a person with many rows
must not count as many people. The site therefore (user-level DP-SGD, as in McMahan et al., "Learning
Differentially Private Recurrent Language Models", ICLR 2018):

1. keeps at most ``k`` rows of each unit (``k`` = the plan's public ``max_rows_per_unit``). Which ones is
   decided per row by a keyed hash of the row under the site's secret key (``client.holdout``): a choice that
   looks at the unit's own rows only, so adding or removing another unit changes nothing about it;
2. trains on units, not rows: each DP-SGD sample is one unit's (<= k) rows, packed as a (k, features) block
   padded with all-zero rows (a real encoded row is never all zero: every column has a one-hot slot). The
   loss of a unit is the sum over its real rows, so the per-sample gradient Opacus clips is that unit's
   whole gradient, and Poisson sampling at the plan's rate is over units;
3. releases anything else (noisy histograms, the evaluation release) over one row per unit (the first of its
   kept rows by the same hash), so each release keeps the sensitivity of one row.

So every epsilon of such a run is per unit: it bounds what anyone learns about whether a patient, with all of
their encounters at the site, was in the data. Record-level schemas (no unit) skip all of this.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from client.holdout import keyed_fraction, row_texts
from shared.errors import DataValidationError
from shared.schema import Schema

__all__ = ["bound_rows_per_unit", "one_row_per_unit", "pack_units", "unit_ids"]

_DOMAIN = b"rows-per-unit\x1f"  # separates these hashes from the hold-out's, made with the same key


def unit_ids(frame: pd.DataFrame, schema: Schema) -> np.ndarray | None:
    """The unit of each row as text (None for a record-level schema)."""
    if schema.privacy_unit is None:
        return None
    if schema.privacy_unit not in frame.columns:
        raise DataValidationError(
            f"the table has no column {schema.privacy_unit!r}, the schema's privacy unit; a site's table must "
            "keep it so that each person's rows can be bounded and accounted together"
        )
    return frame[schema.privacy_unit].astype(str).to_numpy()


def bound_rows_per_unit(frame: pd.DataFrame, schema: Schema, key: bytes, max_rows: int) -> pd.DataFrame:
    """At most ``max_rows`` rows of each unit, the ones with the smallest keyed hash; grouped by unit.

    The frame comes back sorted by unit, then by hash (its own index kept). A record-level schema returns the
    frame unchanged.
    """
    units = unit_ids(frame, schema)
    if units is None:
        return frame
    if max_rows < 1:
        raise DataValidationError(f"dp.max-rows-per-unit must be >= 1, got {max_rows}")
    rank = np.array([keyed_fraction(key, _DOMAIN + u.encode() + b"\x1f" + r.encode())
                     for u, r in zip(units, row_texts(frame, schema), strict=True)])
    order = np.lexsort((rank, units))  # by unit, then by hash: both are functions of the unit's own rows
    position = pd.Series(units[order]).groupby(units[order]).cumcount().to_numpy()
    return frame.iloc[order[position < max_rows]]


def one_row_per_unit(frame: pd.DataFrame, schema: Schema, key: bytes) -> pd.DataFrame:
    """One row of each unit (the first one ``bound_rows_per_unit`` keeps), for releases of one-row sensitivity."""
    return bound_rows_per_unit(frame, schema, key, 1)


def pack_units(encoded: np.ndarray, units: np.ndarray, max_rows: int) -> np.ndarray:
    """Encoded rows (n, features), grouped by unit, as (units, max_rows, features) padded with zero rows.

    ``units`` gives each row's unit; rows of one unit must be adjacent (as ``bound_rows_per_unit`` leaves them)
    and at most ``max_rows`` long. A unit's real rows come first in its block.
    """
    if len(units) != len(encoded):
        raise ValueError("pack_units: one unit id per encoded row is needed")
    if len(units) == 0:
        return np.zeros((0, max_rows, encoded.shape[1]), dtype=encoded.dtype)
    starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
    if len(np.unique(units)) != len(starts):
        raise ValueError("pack_units: the rows of a unit must be adjacent (bound them first)")
    position = np.arange(len(units)) - np.repeat(starts, np.diff(np.r_[starts, len(units)]))
    if position.max() >= max_rows:
        raise ValueError(f"pack_units: a unit has more than {max_rows} rows (bound them first)")
    packed = np.zeros((len(starts), max_rows, encoded.shape[1]), dtype=encoded.dtype)
    packed[np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(units)])), position] = encoded
    return packed
