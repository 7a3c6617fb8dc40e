"""The site's hold-out rows: kept out of training so the synthetic table can be scored on rows it never saw.

A row goes to the hold-out when a keyed hash of its content falls below the plan's fraction. Deciding row by
row, on the row alone, matters for the privacy proof: adding or removing one person changes which side that
person is on and nothing else, so the training release and the evaluation release see disjoint rows and
the ledger's accounting holds (row indices would not do: removing one row would shift every later one).
The key is a secret of the site, made once and kept beside its ledger, so the split is the same in every
round and after a restart, and nobody else can tell which rows were held out. Equal rows share a side, so an
exact copy in the synthetic table cannot be a hold-out row's twin that was trained on.

When the schema names a privacy unit (a patient), the hash is of the unit's id instead, so all of a patient's
rows fall on one side: a patient is never both trained on and scored as unseen, and adding or removing a
patient again changes that patient's side only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import numpy as np
import pandas as pd

from shared.errors import ConfigError
from shared.evaluation.frames import labels, numeric
from shared.schema import Schema

KEY_BYTES = 32


def holdout_key(ledger_path: Path) -> bytes:
    """The site's split key (``<ledger>.holdout-key``), created on first use and never rewritten."""
    path = ledger_path.with_name(ledger_path.name + ".holdout-key")
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this site made it first: use theirs
        return _read(path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(secrets.token_bytes(KEY_BYTES).hex().encode())
        handle.flush()
        os.fsync(handle.fileno())
    return _read(path)


def _read(path: Path) -> bytes:
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(
            f"{path}: the hold-out key is damaged; restore it from a backup (deleting it would move rows "
            "between training and hold-out, so scores would no longer be on unseen rows)"
        )
    return key


def holdout_mask(frame: pd.DataFrame, schema: Schema, key: bytes, fraction: float) -> np.ndarray:
    """True for the rows held out; ``fraction`` 0 holds out nothing. By unit when the schema names one."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"evaluate.holdout-fraction must be in [0, 1), got {fraction}")
    if fraction == 0.0 or len(frame) == 0:
        return np.zeros(len(frame), dtype=bool)
    if schema.privacy_unit is not None:
        names, inverse = np.unique(frame[schema.privacy_unit].astype(str).to_numpy(), return_inverse=True)
        # Domain-separated from the row hashes of client.units, which use the same site key.
        held = np.array([keyed_fraction(key, b"holdout-unit\x1f" + str(n).encode()) < fraction for n in names])
        return np.asarray(held[inverse], dtype=bool)
    return np.array([keyed_fraction(key, row.encode()) < fraction for row in row_texts(frame, schema)], dtype=bool)


def row_texts(frame: pd.DataFrame, schema: Schema) -> list[str]:
    """Each row's synthesized content as one string (identifiers left out), the input of the keyed hashes.

    The strings decide which rows a site holds out, for good: they must never change. Built column by column
    (every training task makes them, ~0.2 s per 10,000 rows less than cell by cell); tests/unit/test_holdout.py
    checks them against the cell-by-cell definition.
    """
    parts = [
        labels(frame, c.name).astype(str).tolist() if c.type == "categorical"
        else [_number(v) for v in numeric(frame, c.name).tolist()]
        for c in schema.synthesized_columns
    ]
    return ["\x1f".join(texts) for texts in zip(*parts, strict=True)] if parts else [""] * len(frame)


def keyed_fraction(key: bytes, message: bytes) -> float:
    """HMAC-SHA256 of ``message`` under the site's key, as a number in [0, 1)."""
    digest = hmac.digest(key, message, hashlib.sha256)  # one-shot: the same HMAC, without a Python object per row
    return int.from_bytes(digest[:8], "big") / 2**64


def _number(value: float) -> str:
    return "" if value != value else repr(float(value))  # value != value: NaN
