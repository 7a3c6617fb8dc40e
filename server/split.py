"""Deal one table's rows to N site tables: for demos, the loopback deployment and the examples.

IID deals each row to a uniformly drawn site. Non-IID deals each category of a column (``--split-by``, default
the schema's ``split_by``, else its target) to sites in Dirichlet(0.5) proportions, so sites see different
mixtures. Rows are kept byte-for-byte as text.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from shared.errors import ConfigError, FedsynthError
from shared.schema import load_schema

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
    with open(data, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise FedsynthError(f"{data}: the file is empty")
        records = list(reader)
    rng = np.random.default_rng(seed)
    if split == "iid":
        assignment = rng.integers(0, sites, size=len(records))
    else:
        index = header.index(_split_column(schema, split_by, header))
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


def _split_column(schema_path: Path, split_by: str | None, header: list[str]) -> str:
    schema = load_schema(schema_path)
    column = split_by or schema.split_by or schema.target
    if not column or column not in header:
        raise ConfigError("--split non-iid needs a categorical column: pass --split-by COLUMN")
    return column
