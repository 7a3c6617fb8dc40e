"""TSTR: train a gradient-boosting classifier on a synthetic table, test it on Adult's real test split, and
compare with the same classifier trained on the real training split (TRTR).

    python benchmarks/tstr.py fedsynth-demo/synthetic.csv

Prints AUCs and their ratio. Categorical columns are one-hot encoded by their public category lists.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.schema import Schema, load_schema  # noqa: E402


def features(frame: pd.DataFrame, schema: Schema) -> tuple[np.ndarray, np.ndarray]:
    target = schema.target
    assert target is not None
    parts = []
    for column in schema.columns:
        if column.name == target or column.type == "identifier":
            continue
        values = frame[column.name]
        if column.type == "categorical":
            assert column.categories is not None
            parts.append(np.stack([(values.astype("string") == c).fillna(False).to_numpy() for c in column.categories], 1))
        else:
            parts.append(pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)[:, None])
    positive = schema.to_dict().get("positive_label") or (schema.column(target).categories or ["", ""])[-1]
    return np.concatenate(parts, axis=1).astype(float), (frame[target].astype(str) == positive).to_numpy()


def auc(train: pd.DataFrame, test: pd.DataFrame, schema: Schema, seed: int) -> float:
    x, y = features(train, schema)
    xt, yt = features(test, schema)
    model = HistGradientBoostingClassifier(random_state=seed).fit(x, y)
    return float(roc_auc_score(yt, model.predict_proba(xt)[:, 1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("synthetic", type=Path)
    parser.add_argument("--schema", type=Path, default=ROOT / "data/adult/schema.json")
    parser.add_argument("--train", type=Path, default=ROOT / "data/adult/adult_train.csv")
    parser.add_argument("--test", type=Path, default=ROOT / "data/adult/adult_test.csv")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    schema = load_schema(args.schema)
    real, test = pd.read_csv(args.train), pd.read_csv(args.test)
    synthetic = pd.read_csv(args.synthetic)
    trtr = auc(real, test, schema, args.seed)
    tstr = auc(synthetic, test, schema, args.seed)
    print(f"rows: real train {len(real)}, synthetic {len(synthetic)}, real test {len(test)}")
    print(f"TRTR AUC (train real, test real):      {trtr:.4f}")
    print(f"TSTR AUC (train synthetic, test real): {tstr:.4f}")
    print(f"TSTR / TRTR: {tstr / trtr:.3f}")


if __name__ == "__main__":
    main()
