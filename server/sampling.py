"""Drawing the pooled synthetic table from the trained generator: post-processing, so it costs no privacy.

Unconditionally by default. Given class shares (the DP class frequencies the run paid for, or shares the
coordinator asked for to rebalance the target, run config ``sample.class-shares``), the table is stratified by
the target: each class's quota is drawn from the generator conditioned on that class
(``TabularGenerator.sample_conditional``), so a rare class is oversampled with new rows, never copies.
``SyntheticSample.record`` is what the manifest says about how the table was drawn.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from shared.class_shares import ClassShares, resolve_shares
from shared.encoding import TableEncoder
from shared.generator import TabularGenerator

__all__ = ["SyntheticSample", "sample_table"]

logger = logging.getLogger(__name__)

_OWN_SHARE_ROWS = 10_000  # unconditional draws that estimate the generator's own class shares


@dataclass(frozen=True)
class SyntheticSample:
    """The table, and the manifest's account of how it was drawn (its ``sampling`` section)."""

    table: pd.DataFrame
    record: dict[str, Any]


def sample_table(
    generator: TabularGenerator, encoder: TableEncoder, rows: int, seed: int,
    class_frequencies: Mapping[str, Mapping[str, float]] | None = None, *, class_shares: ClassShares | None = None,
) -> SyntheticSample:
    """Sample ``rows`` rows; stratified by the target when there are DP class frequencies or requested shares.

    The generator under-represents minority classes under DP noise; matching the DP-estimated shares, or the
    shares the coordinator chose, corrects that without touching any real row.
    """
    sampler = torch.Generator().manual_seed(seed)
    if not class_frequencies and class_shares is None:
        table = encoder.decode_slots(generator.sample_slots(rows, generator=sampler))
        return SyntheticSample(table, {"method": "unconditional"})
    column = encoder.schema.target if class_shares is not None else next(iter(class_frequencies or {}))
    if column is None:
        raise ValueError("class shares need a target column in the schema")
    categories = list(encoder.schema.column(column).categories or ())
    base, base_source = _base_shares(generator, encoder, column, class_frequencies, class_shares, sampler)
    shares = resolve_shares(categories, class_shares, base)
    parts, fallbacks = [], {}
    for category, quota in _quotas(shares, rows).items():
        if not quota:
            continue
        try:
            encoded = generator.sample_conditional(quota, column, categories.index(category), generator=sampler)
        except ValueError as problem:  # a weakly trained generator may hardly make the class yet
            logger.warning("class %r of %r drawn without its condition: %s", category, column, problem)
            encoded, fallbacks[category] = generator.sample(quota, generator=sampler), quota
        parts.append(encoder.decode(encoded))
    table = pd.concat(parts).sample(frac=1.0, random_state=np.random.default_rng(seed)).reset_index(drop=True)
    record = _record(column, categories, table, shares, class_frequencies, class_shares, base_source, fallbacks)
    return SyntheticSample(table, record)


def _base_shares(
    generator: TabularGenerator, encoder: TableEncoder, column: str,
    class_frequencies: Mapping[str, Mapping[str, float]] | None, class_shares: ClassShares | None,
    sampler: torch.Generator,
) -> tuple[dict[str, float], str | None]:
    """What the classes left out of a request follow: the DP frequencies, else the generator's own shares."""
    if class_frequencies and column in class_frequencies:
        return dict(class_frequencies[column]), "DP class frequencies (preprocess.class-frequencies)"
    categories = encoder.schema.column(column).categories or ()
    if class_shares is not None and len(categories) - len(class_shares.shares) < 2:
        return {}, None  # at most one class is left: it takes the remainder whatever the base
    own = encoder.decode_slots(generator.sample_slots(_OWN_SHARE_ROWS, generator=sampler))[column]
    return {str(k): float(v) for k, v in own.value_counts(normalize=True).items()}, "the generator's own shares"


def _record(
    column: str, categories: list[str], table: pd.DataFrame, shares: dict[str, float],
    class_frequencies: Mapping[str, Mapping[str, float]] | None, class_shares: ClassShares | None,
    base_source: str | None, fallbacks: dict[str, int],
) -> dict[str, Any]:
    counts = table[column].value_counts()
    record: dict[str, Any] = {
        "method": "stratified by class: each class's rows drawn from the generator conditioned on that class",
        "column": column,
        "rebalanced": class_shares is not None,
        "requested_shares": class_shares.as_dict() if class_shares is not None else None,
        "target_shares": shares,
        "rows_per_class": {c: int(counts.get(c, 0)) for c in categories},
        "achieved_shares": {c: float(counts.get(c, 0)) / max(len(table), 1) for c in categories},
        "class_frequencies": dict(class_frequencies[column]) if class_frequencies and column in class_frequencies
        else None,
    }
    if base_source is not None and class_shares is not None:
        record["unlisted_classes_follow"] = base_source
    if class_shares is not None:
        record["note"] = (f"The shares of {column!r} were chosen by the coordinator (sample.class-shares), not "
                          "estimated from the data: the synthetic table is rebalanced on purpose.")
    if fallbacks:
        record["drawn_without_condition"] = fallbacks
    return record


def _quotas(shares: Mapping[str, float], rows: int) -> dict[str, int]:
    """Largest-remainder rounding of ``shares * rows`` so the quotas add up to ``rows`` exactly.

    The shares are normalised first, so a sum a rounding error off 1 cannot add or drop a row.
    """
    total = sum(shares.values())
    raw = {c: s / total * rows for c, s in shares.items()}
    quotas = {c: int(v) for c, v in raw.items()}
    for c in sorted(raw, key=lambda c: raw[c] - quotas[c], reverse=True)[: rows - sum(quotas.values())]:
        quotas[c] += 1
    return quotas
