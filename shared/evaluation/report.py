"""The evaluation entry points: score a synthetic table against real rows, and the report that holds the scores.

The report carries aggregate numbers only (distances, shares, AUCs, row counts) and names only what the
public schema names (columns, categories, public intervals), never a row or a value from one: it is meant to
leave the site, be printed and be attached to a release.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from shared.atomic import atomic_write_json
from shared.errors import ConfigError, DataValidationError
from shared.evaluation.bias import GroupBias, bias
from shared.evaluation.fidelity import FidelityReport, fidelity
from shared.evaluation.frames import check_columns
from shared.evaluation.privacy import PrivacyReport, privacy
from shared.evaluation.summary import format_summary
from shared.evaluation.utility import UtilityReport, utility
from shared.schema import Schema, load_schema
from shared.validation import read_site_table

__all__ = ["EvaluationReport", "evaluate", "evaluate_files"]

logger = logging.getLogger(__name__)

_SIGNIFICANT = 4


@dataclass(frozen=True)
class EvaluationReport:
    """Fidelity, utility, privacy and bias scores of one synthetic table (aggregates only)."""

    schema: str
    synthetic_rows: int
    train_rows: int
    holdout_rows: int
    seed: int
    fidelity: FidelityReport
    utility: UtilityReport
    privacy: PrivacyReport
    bias: tuple[GroupBias, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: floats to 4 significant digits, undefined scores as None."""
        return dict(_plain(dataclasses.asdict(self)))

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` to ``path`` atomically."""
        atomic_write_json(path, self.to_dict())

    def summary(self) -> str:
        """A short readable account of the headline scores and the bias table."""
        return format_summary(self)


def evaluate(
    synthetic: pd.DataFrame,
    train_real: pd.DataFrame,
    holdout_real: pd.DataFrame,
    schema: Schema,
    *,
    seed: int = 0,
) -> EvaluationReport:
    """Score ``synthetic`` against real rows it was trained on (``train_real``) and rows it never saw.

    The frames are validated tables (``read_site_table(...).clean``); identifier columns are ignored.
    Fidelity compares with the holdout; utility trains on each side and tests on the holdout; privacy
    compares distances to the two real sets; bias breaks representation and utility down by the schema's
    ``sensitive_attributes``.
    """
    for frame, role in ((synthetic, "synthetic"), (train_real, "real training"), (holdout_real, "real holdout")):
        check_columns(frame, schema, role)
    synthetic, train_real, holdout_real = (f.reset_index(drop=True) for f in (synthetic, train_real, holdout_real))
    with threadpool_limits(1):  # as in utility: no OpenMP workers spinning against a busy neighbour
        return _evaluate(synthetic, train_real, holdout_real, schema, seed)


def _evaluate(
    synthetic: pd.DataFrame, train_real: pd.DataFrame, holdout_real: pd.DataFrame, schema: Schema, seed: int
) -> EvaluationReport:
    utility_report, predictions = utility(synthetic, train_real, holdout_real, schema, seed=seed)
    return EvaluationReport(
        schema=schema.name,
        synthetic_rows=len(synthetic),
        train_rows=len(train_real),
        holdout_rows=len(holdout_real),
        seed=seed,
        fidelity=fidelity(synthetic, holdout_real, schema),
        utility=utility_report,
        privacy=privacy(synthetic, train_real, holdout_real, schema, seed=seed),
        bias=bias(synthetic, holdout_real, schema, predictions),
    )


def evaluate_files(
    synthetic_csv: str | os.PathLike[str],
    real_csv: str | os.PathLike[str],
    schema_path: str | os.PathLike[str],
    *,
    holdout_fraction: float = 0.2,
    seed: int = 0,
) -> EvaluationReport:
    """Validate both tables, split the real rows into training and holdout with ``seed``, and evaluate.

    Rows that fail validation are left out (and counted in the log), as a site's training would leave them.
    """
    if not 0.0 < holdout_fraction < 1.0:
        raise ConfigError(f"--holdout-fraction must lie strictly between 0 and 1, got {holdout_fraction}")
    schema = load_schema(schema_path)
    synthetic = _clean(synthetic_csv, schema)
    real = _clean(real_csv, schema)
    holdout_rows = int(round(len(real) * holdout_fraction))
    if holdout_rows < 1 or holdout_rows >= len(real):
        raise DataValidationError(
            f"{real_csv}: {len(real)} valid rows cannot be split into a training part and a holdout of "
            f"fraction {holdout_fraction}; use more rows or another --holdout-fraction"
        )
    order = np.random.default_rng(seed).permutation(len(real))
    holdout = real.iloc[np.sort(order[:holdout_rows])]
    train = real.iloc[np.sort(order[holdout_rows:])]
    return evaluate(synthetic, train, holdout, schema, seed=seed)


def _clean(path: str | os.PathLike[str], schema: Schema) -> pd.DataFrame:
    result = read_site_table(path, schema)
    if not result.ok:
        logger.warning("%s: %d rows fail validation and are left out of the evaluation", path, len(result.quarantined))
    if len(result.clean) == 0:
        raise DataValidationError(f"{path}: no row passes validation; check it with `fedsynth schema check`")
    return result.clean


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (float, np.floating)):
        x = float(value)
        return float(f"{x:.{_SIGNIFICANT}g}") if math.isfinite(x) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
