"""Loading a site's table: validate against the schema, quarantine bad rows locally, encode once.

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
from shared.encoding import TableEncoder
from shared.errors import DataValidationError
from shared.schema import Schema
from shared.validation import read_site_table, write_quarantine

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiteData:
    """The encoded rows of one site; never serialised, never sent."""

    encoded: torch.Tensor
    rows_quarantined: int


_CACHE: dict[tuple[str, int, int, str, float], SiteData] = {}


def load_site_frame(path: Path, schema: Schema) -> tuple[pd.DataFrame, int]:
    """The validated rows of ``path`` and how many were quarantined (to ``<stem>.quarantine.csv``, site-local)."""
    if not path.is_file():
        raise DataValidationError(f"{path}: the site's table does not exist; check node config 'data-path'")
    result = read_site_table(path, schema)
    quarantined = len(result.quarantined)
    if quarantined:
        side = path.with_name(f"{path.stem}.quarantine.csv")
        write_quarantine(result, side)
        # Counts and positions only: never a value.
        logger.warning("%s: %d rows failed validation and were quarantined to %s", path.name, quarantined, side)
    if len(result.clean) == 0:
        raise DataValidationError(f"{path}: no row passed validation; run 'fedsynth schema check' on it")
    return result.clean, quarantined


def load_site_data(
    path: Path, schema: Schema, encoder: TableEncoder, *, holdout_key: bytes = b"", holdout_fraction: float = 0.0
) -> SiteData:
    """Validate and encode the training rows of ``path`` (the hold-out rows, see ``client.holdout``, stay out).

    Failing rows go to ``<stem>.quarantine.csv`` beside it (site-local).
    """
    if not path.is_file():
        raise DataValidationError(f"{path}: the site's table does not exist; check node config 'data-path'")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, schema.hash, holdout_fraction)
    if key in _CACHE:
        return _CACHE[key]
    clean, quarantined = load_site_frame(path, schema)
    clean = clean[~holdout_mask(clean, schema, holdout_key, holdout_fraction)]
    if len(clean) == 0:
        raise DataValidationError(f"{path}: every row is in the hold-out; the site has no rows to train on")
    encoded = torch.from_numpy(encoder.encode(clean))
    data = SiteData(encoded=encoded, rows_quarantined=quarantined)
    _CACHE.clear()  # one table per site process; do not keep old copies of private data around
    _CACHE[key] = data
    return data
