"""Evaluation at a site: score the pooled synthetic table on rows training never saw, release only noisy counts.

The site pays for the release before it leaves (write-ahead, like every other release), adds the Gaussian
noise of ``shared.dp_evaluation`` to every cell, and sends those cells. If the site's policy allows, it also
keeps a full local report (``shared.evaluation``: TRTR, distances to its own rows, per-group gaps) in its own
output folder: that report is computed on raw rows, so it never leaves the site.

With a privacy unit (``client.units``) the counts are over one row per unit, on both sides (a held-out unit,
and a training unit among the rows it was trained on), so a unit moves the release as one row does and the
release's sensitivity is unchanged. The local report keeps every row.
"""

from __future__ import annotations

import hashlib
import io
import logging
import secrets
from dataclasses import dataclass

import numpy as np
import pandas as pd

from client.data import load_site_frame, training_frame
from client.holdout import holdout_key, holdout_mask
from client.units import one_row_per_unit
from client.policy import check_budget
from client.site import SiteConfig
from shared.dp_evaluation import EvaluationLayout, add_noise, site_counts
from shared.errors import DataValidationError
from shared.evaluation import evaluate
from shared.evaluation.frames import check_columns
from shared.ledger import Ledger, Release, record_spend
from shared.plan import TrainingPlan
from shared.schema import Schema

logger = logging.getLogger(__name__)

LOCAL_REPORT = "site-evaluation.json"


@dataclass(frozen=True)
class SiteRelease:
    """What leaves the site: noisy cells per family, and the hash of the table they score."""

    noisy: dict[str, np.ndarray]
    synthetic_sha256: str


def evaluate_at_site(
    site: SiteConfig, plan: TrainingPlan, schema: Schema, layout: EvaluationLayout, synthetic_csv: bytes
) -> SiteRelease:
    """Charge the ledger, count on the hold-out (and training rows for distances), add noise."""
    digest = hashlib.sha256(synthetic_csv).hexdigest()
    synthetic = pd.read_csv(io.BytesIO(synthetic_csv), dtype=str, keep_default_na=False, na_values=[""])
    check_columns(synthetic, schema, "synthetic")
    frame, _ = load_site_frame(site.data_path, schema, site.quarantine_path)
    key = holdout_key(site.ledger_path)
    held = holdout_mask(frame, schema, key, plan.evaluate_holdout_fraction)
    holdout, train = frame[held].reset_index(drop=True), frame[~held].reset_index(drop=True)
    released_holdout, released_train = holdout, train
    if plan.per_unit:
        released_holdout = one_row_per_unit(holdout, schema, key).reset_index(drop=True)
        trained = training_frame(frame, schema, key=key, holdout_fraction=plan.evaluate_holdout_fraction,
                                 max_rows_per_unit=plan.max_rows_per_unit)
        released_train = one_row_per_unit(trained, schema, key).reset_index(drop=True)
    if len(holdout) == 0:
        raise DataValidationError(
            f"{site.data_path}: no row fell in the hold-out (fraction {plan.evaluate_holdout_fraction}); the site "
            "has too few rows to be scored"
        )
    releases = plan.evaluation_releases()
    check_budget(Ledger.load(site.ledger_path), site, plan, releases)
    entry = record_spend(
        site.ledger_path, site=site.site, round=plan.evaluation_round, level="record", accountant=plan.accountant,
        delta=plan.delta, releases=[Release("evaluation", *releases[0])], run_id=plan.run_id, **plan.ledger_unit(),
    )
    counts = site_counts(layout, schema, synthetic, released_train, released_holdout, seed=plan.seed)
    seed = site.noise_seed if site.noise_seed is not None else secrets.randbits(128)
    noisy = add_noise(counts, layout, plan.evaluate_noise_multiplier, np.random.default_rng(seed))
    del counts  # the exact counts are private; only the noisy ones go on
    logger.info(
        "%s released its evaluation histograms (%d families, noise std %.1f per cell; epsilon now %.4f)",
        site.site, len(noisy), plan.evaluate_noise_multiplier * layout.sensitivity, entry.epsilon,
    )
    if site.local_evaluation:
        _local_report(site, plan, schema, synthetic, train, holdout)
    return SiteRelease(noisy=noisy, synthetic_sha256=digest)


def _local_report(
    site: SiteConfig, plan: TrainingPlan, schema: Schema, synthetic: pd.DataFrame, train: pd.DataFrame,
    holdout: pd.DataFrame,
) -> None:
    """The site's own, exact scores; written to its output folder and nowhere else."""
    target = site.output_dir / plan.run_id / LOCAL_REPORT
    try:
        report = evaluate(synthetic, train, holdout, schema, seed=plan.seed)
    except (DataValidationError, ValueError) as problem:  # never fail the release over the local extra
        logger.warning("%s: the local evaluation report could not be made: %s", site.site, problem)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    report.write_json(target)
    logger.info("%s: its own exact scores (not sent) are in %s", site.site, target)
