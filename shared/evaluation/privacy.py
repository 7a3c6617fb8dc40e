"""Privacy: does the synthetic table sit closer to the rows it was trained on than to rows it never saw?

- DCR share: for each synthetic row, is its closest real record in the training rows or in the holdout (of
  equal size)? 0.5 is what a synthesizer that learnt only the distribution gets; near 1 means it copies.
- Exact-copy rate: synthetic rows equal, over every synthesized column, to some training row. Coarse tables
  have natural duplicates, so the same rate against the holdout is reported as a baseline (a lower one
  when the holdout is the smaller set, as it usually is).
- Membership-inference AUC: score each real row by minus its distance to the closest synthetic row; the AUC
  of telling training rows (members) from holdout rows (non-members). 0.5 means no distance-based attacker
  learns membership.

Distances are Euclidean in the public space (``frames.public_space``), which is built from the schema only.
The work is capped by seeded subsamples so that a census-sized table is scored in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from shared.evaluation.frames import public_space, row_keys, subsample
from shared.schema import Schema

__all__ = ["MAX_QUERIES", "MAX_REFERENCE", "PrivacyReport", "privacy"]

MAX_QUERIES = 5000  # rows whose nearest neighbour is looked up, per side
MAX_REFERENCE = 50_000  # rows searched for nearest neighbours


@dataclass(frozen=True)
class PrivacyReport:
    """Distance- and copy-based privacy scores, with the (subsampled) row counts they rest on."""

    dcr_share: float
    exact_copy_rate: float
    exact_copy_rate_holdout: float
    mia_auc: float
    real_rows_per_side: int
    synthetic_rows_compared: int


def privacy(
    synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, schema: Schema, *, seed: int
) -> PrivacyReport:
    """Score ``synthetic`` against the training rows (members) and the holdout (non-members)."""
    rng = np.random.default_rng(seed)
    syn_keys = row_keys(synthetic, schema)
    # Equal sizes, so that a synthetic row with no preference lands on either side with probability 1/2.
    per_side = min(len(train), len(holdout), MAX_REFERENCE)
    members = _space(train, schema, subsample(len(train), per_side, rng))
    others = _space(holdout, schema, subsample(len(holdout), per_side, rng))
    queries = _space(synthetic, schema, subsample(len(synthetic), MAX_QUERIES, rng))
    reference = _space(synthetic, schema, subsample(len(synthetic), MAX_REFERENCE, rng))
    to_members, to_others = _nearest(members, queries), _nearest(others, queries)
    dcr_share = float(np.mean(to_members < to_others) + 0.5 * np.mean(to_members == to_others))
    mia_size = min(per_side, MAX_QUERIES)
    m = members[subsample(len(members), mia_size, rng)]
    o = others[subsample(len(others), mia_size, rng)]
    scores = -np.concatenate([_nearest(reference, m), _nearest(reference, o)])
    truth = np.concatenate([np.ones(len(m)), np.zeros(len(o))])
    return PrivacyReport(
        dcr_share=dcr_share,
        exact_copy_rate=float(np.mean(np.isin(syn_keys, row_keys(train, schema)))),
        exact_copy_rate_holdout=float(np.mean(np.isin(syn_keys, row_keys(holdout, schema)))),
        mia_auc=float(roc_auc_score(truth, scores)),
        real_rows_per_side=per_side,
        synthetic_rows_compared=len(queries),
    )


def _space(frame: pd.DataFrame, schema: Schema, rows: np.ndarray) -> np.ndarray:
    return public_space(frame.iloc[rows], schema)


def _nearest(reference: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Distance from each query to its nearest reference row, rounded so that float noise makes no ties differ."""
    index = NearestNeighbors(n_neighbors=1).fit(reference)
    distances, _ = index.kneighbors(queries)
    return np.round(distances[:, 0], 9)
