"""Deal one table's rows to N site tables: for demos, the loopback deployment and the examples.

IID deals each row to a uniformly drawn site. Non-IID deals each category of a column (``--split-by``, default
the schema's ``split_by``, else its target) to sites in Dirichlet(0.5) proportions, so sites see different
mixtures. Rows are kept byte-for-byte as text; a ``.gz`` input is read as gzip'd CSV.

When the schema names a privacy unit (a patient), units are dealt instead of rows: all of a patient's rows go
to one site (non-IID: by the column's value in the patient's first row), as in a consortium where a patient's
encounters are at one hospital.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path
from typing import IO

import numpy as np

from shared.errors import ConfigError, FedsynthError
from shared.schema import Schema, load_schema

__all__ = ["SPLITS", "deal_rows"]

SPLITS = ("iid", "non-iid")


def deal_rows(
    data: Path, schema: Path, sites: int, sites_dir: Path, *, split: str = "iid", seed: int = 0,
    split_by: str | None = None,
) -> list[int]:
    """Write ``sites_dir/site-N.csv`` for N in 0..sites-1; return the row count of each."""
    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {SPLITS}, got {split!r}")
    if sites < 1:
        raise ConfigError(f"--sites must be >= 1, got {sites}")
    with _open(data) as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise FedsynthError(f"{data}: the file is empty")
        records = list(reader)
    rng = np.random.default_rng(seed)
    parsed = load_schema(schema)
    if parsed.privacy_unit is not None:
        assignment = _deal_units(parsed, header, records, sites, rng, split, split_by)
    elif split == "iid":
        assignment = rng.integers(0, sites, size=len(records))
    else:
        index = header.index(_column(parsed, split_by, header))
        values = sorted({r[index] for r in records if len(r) > index})
        shares = {v: rng.dirichlet([0.5] * sites) for v in values}
        assignment = np.array([rng.choice(sites, p=shares[r[index]]) if len(r) > index else 0 for r in records])
    sites_dir.mkdir(parents=True, exist_ok=True)
    counts = []
    for site in range(sites):
        chosen = [r for r, a in zip(records, assignment) if a == site]
        with open(sites_dir / f"site-{site}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(chosen)
        counts.append(len(chosen))
    return counts


def _deal_units(
    schema: Schema, header: list[str], records: list[list[str]], sites: int, rng: np.random.Generator, split: str,
    split_by: str | None,
) -> np.ndarray:
    """Each row's site, dealing whole units: a unit's rows all go where its first row goes."""
    unit = str(schema.privacy_unit)
    if unit not in header:
        raise ConfigError(f"the table has no column {unit!r}, the schema's privacy unit; it is needed to keep "
                          "each unit's rows at one site")
    owner = [r[header.index(unit)] for r in records]
    first = {u: i for i, u in reversed(list(enumerate(owner)))}  # each unit's first row
    units = sorted(first, key=first.__getitem__)
    if split == "iid":
        site_of = dict(zip(units, rng.integers(0, sites, size=len(units)).tolist(), strict=True))
    else:
        index = header.index(_column(schema, split_by, header))
        values = sorted({records[first[u]][index] for u in units})
        shares = {v: rng.dirichlet([0.5] * sites) for v in values}
        site_of = {u: int(rng.choice(sites, p=shares[records[first[u]][index]])) for u in units}
    return np.array([site_of[u] for u in owner], dtype=np.int64)


def _open(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", newline="", encoding="utf-8")
    return open(path, newline="", encoding="utf-8")


def _column(schema: Schema, split_by: str | None, header: list[str]) -> str:
    column = split_by or schema.split_by or schema.target
    if not column or column not in header:
        raise ConfigError("--split non-iid needs a categorical column: pass --split-by COLUMN")
    return column
