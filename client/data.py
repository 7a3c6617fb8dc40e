"""Loading a site's table: validate against the schema, quarantine bad rows locally, encode once.

With a privacy unit in the schema, the training rows are bounded per unit and packed one unit per sample
(``client.units``): the tensor is then (units, max rows per unit, features) instead of (rows, features).

The encoded tensor is cached per process (simulation keeps one process per virtual site across rounds), keyed
by the file's identity and the schema hash, so a changed file or schema is read again. A deployed site runs
every task in a fresh fork of its warm runtime; there the encoded tensor is kept in the runtime's memory
(``client.task_memory``) under a digest of everything it was computed from, the code included.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pandas as pd
import torch

from client.holdout import holdout_mask
from client.task_memory import task_memory
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
    memory = task_memory()  # None outside a deployed site's warm runtime
    digest = _digest(path, schema, encoder, holdout_key, holdout_fraction, max_rows_per_unit) if memory else ""
    kept = memory.recall(MEMORY_NAME, digest) if memory else None
    if kept is not None:
        logger.info("%s: validated and encoded in an earlier round of this runtime; reused", path.name)
        quarantined = cast(int, kept.facts["rows_quarantined"])  # written by this module, below
        data = SiteData(encoded=torch.from_numpy(kept.arrays[0]), rows_quarantined=int(quarantined))
    else:
        data = _encode(path, schema, encoder, holdout_key, holdout_fraction, max_rows_per_unit, quarantine)
        if memory:
            memory.keep(MEMORY_NAME, digest, {"rows_quarantined": data.rows_quarantined}, [data.encoded.numpy()])
    _CACHE.clear()  # one table per site process; do not keep old copies of private data around
    _CACHE[key] = data
    return data


def _encode(
    path: Path, schema: Schema, encoder: TableEncoder, holdout_key: bytes, holdout_fraction: float,
    max_rows_per_unit: int, quarantine: Path | None,
) -> SiteData:
    clean, quarantined = load_site_frame(path, schema, quarantine)
    clean = training_frame(clean, schema, key=holdout_key, holdout_fraction=holdout_fraction,
                           max_rows_per_unit=max_rows_per_unit)
    if len(clean) == 0:
        raise DataValidationError(f"{path}: every row is in the hold-out; the site has no rows to train on")
    rows = encoder.encode(clean)
    units = unit_ids(clean, schema)
    encoded = torch.from_numpy(rows if units is None else pack_units(rows, units, max_rows_per_unit))
    return SiteData(encoded=encoded, rows_quarantined=quarantined)


MEMORY_NAME = "site-table"
# The modules whose code decides what the encoded table holds: a change to any of them is a new table.
_ENCODING_CODE = ("client.data", "client.holdout", "client.units", "shared.encoding", "shared.validation",
                  "shared.schema")


def _digest(path: Path, schema: Schema, encoder: TableEncoder, holdout_key: bytes, holdout_fraction: float,
            max_rows_per_unit: int) -> str:
    """Everything the encoded table is a function of. The file is named by its identity (device, inode, size,
    mtime and ctime: an edit in place changes ctime even when mtime is set back), the secret key by a hash."""
    stat = path.stat()
    digest = hashlib.sha256()
    for part in (str(path.resolve()), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns,
                 schema.hash, encoder.blocks, holdout_fraction, max_rows_per_unit,
                 hashlib.sha256(holdout_key).hexdigest()):
        digest.update(repr(part).encode() + b"\0")
    for name in _ENCODING_CODE:
        digest.update(Path(sys.modules[name].__file__ or "").read_bytes())
    return digest.hexdigest()
