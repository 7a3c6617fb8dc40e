"""Loading a site's table: validate against the schema, quarantine bad rows locally, encode once.

With a privacy unit in the schema, the training rows are bounded per unit and packed one unit per sample
(``client.units``): the tensor is then (units, max rows per unit, features) instead of (rows, features).

The encoded tensor is cached per process (simulation keeps one process per virtual site across rounds), keyed
by the file's identity and the schema hash, so a changed file or schema is read again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from client.holdout import holdout_mask
from client.units import bound_rows_per_unit, pack_units, unit_ids
from shared.encoding import TableEncoder
from shared.errors import DataValidationError
from shared.schema import Schema
from shared.validation import read_site_table, write_quarantine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiteData:
    """The encoded rows of one site (or its units, padded: see ``client.units``); never serialised, never sent."""

    encoded: torch.Tensor
    rows_quarantined: int


_CACHE: dict[tuple[str, int, int, str, float, int], SiteData] = {}


def load_site_frame(path: Path, schema: Schema, quarantine: Path | None = None) -> tuple[pd.DataFrame, int]:
    """The validated rows of ``path`` and how many were quarantined (site-local: to ``quarantine``, by default
    ``<stem>.quarantine.csv`` beside the table)."""
    if not path.is_file():
        raise DataValidationError(f"{path}: the site's table does not exist; check node config 'data-path'")
    result = read_site_table(path, schema)
    quarantined = len(result.quarantined)
    if quarantined:
        side = quarantine or path.with_name(f"{path.stem}.quarantine.csv")
        write_quarantine(result, side)
        # Counts and positions only: never a value.
        logger.warning("%s: %d rows failed validation and were quarantined to %s", path.name, quarantined, side)
    if len(result.clean) == 0:
        raise DataValidationError(f"{path}: no row passed validation; run 'fedsynth schema check' on it")
    return result.clean, quarantined


def training_frame(
    frame: pd.DataFrame, schema: Schema, *, key: bytes, holdout_fraction: float, max_rows_per_unit: int
) -> pd.DataFrame:
    """The validated rows a site trains on: not held out, and at most ``max_rows_per_unit`` per unit."""
    frame = frame[~holdout_mask(frame, schema, key, holdout_fraction)]
    if schema.privacy_unit is None:
        return frame
    return bound_rows_per_unit(frame, schema, key, max_rows_per_unit)


def load_site_data(
    path: Path, schema: Schema, encoder: TableEncoder, *, holdout_key: bytes = b"", holdout_fraction: float = 0.0,
    max_rows_per_unit: int = 0, quarantine: Path | None = None,
) -> SiteData:
    """Validate and encode the training rows of ``path`` (the hold-out rows, see ``client.holdout``, stay out).

    Failing rows go to ``quarantine`` (default ``<stem>.quarantine.csv`` beside it; site-local). With a privacy unit in the schema,
    ``holdout_key`` also picks each unit's rows and the result holds one unit per sample.
    """
    if not path.is_file():
        raise DataValidationError(f"{path}: the site's table does not exist; check node config 'data-path'")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, schema.hash, holdout_fraction, max_rows_per_unit)
    if key in _CACHE:
        return _CACHE[key]
    clean, quarantined = load_site_frame(path, schema, quarantine)
    clean = training_frame(clean, schema, key=holdout_key, holdout_fraction=holdout_fraction,
                           max_rows_per_unit=max_rows_per_unit)
    if len(clean) == 0:
        raise DataValidationError(f"{path}: every row is in the hold-out; the site has no rows to train on")
    rows = encoder.encode(clean)
    units = unit_ids(clean, schema)
    encoded = torch.from_numpy(rows if units is None else pack_units(rows, units, max_rows_per_unit))
    data = SiteData(encoded=encoded, rows_quarantined=quarantined)
    _CACHE.clear()  # one table per site process; do not keep old copies of private data around
    _CACHE[key] = data
    return data
