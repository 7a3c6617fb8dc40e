"""Utility: does a classifier trained on the synthetic table predict the schema's target on real rows?

TSTR trains on the synthetic table and tests on the real holdout; TRTR trains on the real training rows and
tests on the same holdout, so TSTR / TRTR says how much of the real table's predictive value survives. Both
use the same pipeline (public category lists one-hot, continuous columns median-imputed with a missing flag
and standardized), fitted on the training side only, and the same fixed-seed models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from shared.evaluation.frames import MISSING, categories, labels, numeric
from shared.schema import Schema

__all__ = ["HoldoutPredictions", "ModelUtility", "Scores", "UtilityReport", "macro_auc", "utility"]

BIAS_MODEL = "gradient_boosting"  # the model whose holdout predictions the bias metrics break down by group


@dataclass(frozen=True)
class Scores:
    """Scores on the real holdout: macro one-vs-rest AUC (None with one class present), accuracy, macro F1."""

    auc: float | None
    accuracy: float
    f1_macro: float


@dataclass(frozen=True)
class ModelUtility:
    """One model's TSTR and TRTR scores and their AUC ratio; ``skipped`` says why a side has no scores."""

    model: str
    tstr: Scores | None
    trtr: Scores | None
    auc_ratio: float | None
    skipped: str | None = None


@dataclass(frozen=True)
class UtilityReport:
    """TSTR vs TRTR for each model on the schema's target; ``skipped`` is set when no model could be scored."""

    target: str | None
    models: tuple[ModelUtility, ...]
    skipped: str | None = None


@dataclass(frozen=True, eq=False)
class HoldoutPredictions:
    """Class probabilities of one model on the holdout, for per-group breakdowns; never leaves the library.

    ``kept`` marks the holdout rows with a target; ``y`` and the probability matrices (columns in
    ``classes`` order) cover those rows only. A side is None when its model could not be trained.
    """

    classes: tuple[str, ...]
    kept: np.ndarray
    y: np.ndarray
    tstr: np.ndarray | None
    trtr: np.ndarray | None


def _models(seed: int) -> dict[str, ClassifierMixin]:
    return {
        "logistic_regression": LogisticRegression(max_iter=1000, random_state=seed),
        BIAS_MODEL: HistGradientBoostingClassifier(random_state=seed),
    }


def utility(
    synthetic: pd.DataFrame, train: pd.DataFrame, holdout: pd.DataFrame, schema: Schema, *, seed: int
) -> tuple[UtilityReport, HoldoutPredictions | None]:
    """Score TSTR and TRTR for each model; also return the bias model's holdout probabilities."""
    target = schema.target
    if target is None or schema.column(target).type != "categorical":
        return UtilityReport(target, (), skipped="the schema names no categorical target"), None
    classes = categories(schema.column(target))
    kept = labels(holdout, target) != MISSING
    x_test, y_test = _features(holdout[kept], schema), labels(holdout, target)[kept]
    if len(np.unique(y_test)) < 2:
        return UtilityReport(target, (), skipped="the holdout has a single target class"), None
    reports: list[ModelUtility] = []
    bias: HoldoutPredictions | None = None
    for name, model in _models(seed).items():
        tstr, tstr_proba, why_tstr = _fit_score(model, synthetic, x_test, y_test, schema, classes, "synthetic")
        trtr, trtr_proba, why_trtr = _fit_score(model, train, x_test, y_test, schema, classes, "real training")
        ratio = None
        if tstr is not None and trtr is not None and tstr.auc is not None and trtr.auc:
            ratio = tstr.auc / trtr.auc
        reports.append(ModelUtility(name, tstr, trtr, ratio, skipped=why_tstr or why_trtr))
        if name == BIAS_MODEL:
            bias = HoldoutPredictions(classes, kept, y_test, tstr_proba, trtr_proba)
    return UtilityReport(target, tuple(reports)), bias


def macro_auc(y: np.ndarray, proba: np.ndarray, classes: tuple[str, ...]) -> float | None:
    """Mean one-vs-rest AUC over the classes present in ``y``; None when fewer than two are present.

    With two classes and probabilities that sum to one this is the usual binary AUC.
    """
    present = [i for i, c in enumerate(classes) if np.any(y == c)]
    if len(present) < 2:
        return None
    return float(np.mean([roc_auc_score(y == classes[i], proba[:, i]) for i in present]))


def _fit_score(
    model: ClassifierMixin,
    train: pd.DataFrame,
    x_test: pd.DataFrame,
    y_test: np.ndarray,
    schema: Schema,
    classes: tuple[str, ...],
    side: str,
) -> tuple[Scores | None, np.ndarray | None, str | None]:
    assert schema.target is not None
    y = labels(train, schema.target)
    keep = y != MISSING
    if len(np.unique(y[keep])) < 2:
        return None, None, f"the {side} table has fewer than two target classes; no model can be trained"
    pipeline = make_pipeline(_preprocessor(schema), clone(model))
    # One thread: gradient boosting's OpenMP workers spin against any other busy process, which made one fit
    # 40x slower on a shared two-core machine (and one thread is deterministic).
    with threadpool_limits(1):
        pipeline.fit(_features(train[keep], schema), y[keep])
        fitted = pipeline.predict_proba(x_test)
    # Align to the public class order; a class the training side never saw gets probability 0.
    proba = np.zeros((len(x_test), len(classes)))
    for j, label in enumerate(pipeline.classes_):
        proba[:, classes.index(str(label))] = fitted[:, j]
    predicted = np.asarray(pipeline.classes_, dtype=object)[np.argmax(fitted, axis=1)]
    scores = Scores(
        auc=macro_auc(y_test, proba, classes),
        accuracy=float(accuracy_score(y_test, predicted)),
        f1_macro=float(f1_score(y_test, predicted, average="macro", zero_division=0)),
    )
    return scores, proba, None


def _feature_columns(schema: Schema) -> tuple[list[str], list[str]]:
    features = [c for c in schema.synthesized_columns if c.name != schema.target]
    return [c.name for c in features if c.type == "categorical"], [c.name for c in features if c.type == "continuous"]


def _features(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    cat, num = _feature_columns(schema)
    data: dict[str, np.ndarray] = {name: labels(frame, name) for name in cat}
    data.update({name: numeric(frame, name) for name in num})
    return pd.DataFrame(data, index=pd.RangeIndex(len(frame)))


def _preprocessor(schema: Schema) -> ColumnTransformer:
    cat, num = _feature_columns(schema)
    onehot = OneHotEncoder(
        categories=[list(categories(schema.column(name))) for name in cat],
        handle_unknown="ignore",
        sparse_output=False,  # gradient boosting needs dense input
    )
    scale = Pipeline(
        [
            ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]
    )
    return ColumnTransformer([("categorical", onehot, cat), ("continuous", scale, num)])
