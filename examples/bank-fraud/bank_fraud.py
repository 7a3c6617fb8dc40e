"""Helpers of examples/bank-fraud/run.sh: a public hold-out split, and the figures worth reading afterwards.

    python bank_fraud.py split TABLE.csv SCHEMA.json OUT_DIR [--holdout 0.2] [--rows N] [--seed 0]
    python bank_fraud.py summary RUN_DIR

``split`` keeps a stratified share of the real table apart (``holdout.csv``; the banks never see it) and writes
the rest as ``banks.csv``, which ``fedsynth demo`` deals out to the simulated banks. Both tables are public, so
the report can score the synthetic table on real held-out rows centrally (``fedsynth report --reference-*``):
a check a real consortium, with no such table, does not have. ``summary`` prints the manifest's record of the
requested class shares and the report's key figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from shared.schema import load_schema


def split(table: Path, schema_path: Path, out: Path, *, holdout: float, rows: int | None, seed: int) -> None:
    """Stratified by the target: the hold-out has the table's class shares (so does ``banks.csv``)."""
    schema = load_schema(schema_path)
    frame = pd.read_csv(table, dtype=str, keep_default_na=False)
    rng = np.random.default_rng(seed)
    if rows is not None and rows < len(frame):  # a smaller table for quick runs, still stratified
        frame = frame.groupby(schema.target, group_keys=False).sample(frac=rows / len(frame), random_state=rng)
    held = frame.groupby(schema.target, group_keys=False).sample(frac=holdout, random_state=rng)
    out.mkdir(parents=True, exist_ok=True)
    frame.drop(held.index).to_csv(out / "banks.csv", index=False)
    held.to_csv(out / "holdout.csv", index=False)
    print(f"{table.name}: {len(frame) - len(held)} rows for the banks, {len(held)} held out ({out})")


def summary(run: Path) -> None:
    """What a fraud analyst looks at first: the class shares, the privacy spent, and TSTR on real rows."""
    manifest = json.loads((run / "manifest.json").read_text())
    report = json.loads((run / "report.json").read_text())
    sampling, record = manifest["sampling"], manifest["privacy"]["record"]
    print(f"{run}: {manifest['rows']} synthetic rows from {manifest['generator']['name']} after {manifest['rounds']} "
          f"rounds at {len(manifest['sites'])} banks; epsilon {record['epsilon']:.3f} per bank "
          f"(target {record['target_epsilon']:g}, delta {record['delta']:g}, {record['accountant']})")
    if sampling.get("rebalanced"):
        print(f"  {sampling['column']} shares requested {sampling['requested_shares']}; in the table "
              + ", ".join(f"{c} {s:.3f}" for c, s in sampling["achieved_shares"].items()))
    reference = (report.get("reference") or {}).get("scores")
    if reference:
        for model in ("gradient_boosting", "logistic_regression"):
            print(f"  on real held-out rows, {model}: TSTR AUC {reference[f'tstr_auc_{model}']}, "
                  f"TRTR {reference[f'trtr_auc_{model}']} (ratio {reference[f'auc_ratio_{model}']})")
        print(f"  fidelity: mean KS {reference['mean_ks']}, mean TVD {reference['mean_tvd']} (target included); "
              f"privacy: DCR share {reference['dcr_share']}, membership AUC {reference['membership_auc']}")
    for model, scores in (report.get("utility") or {}).get("models", {}).items():
        auc, std = scores["tstr"].get("auc"), scores["tstr"].get("auc_std")
        shown = "n/a" if auc is None else f"{auc:.3f}" + ("" if std is None else f" +- {std:.3f}")
        print(f"  federated (noisy, on the banks' own hold-outs) TSTR AUC {model}: {shown}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    cut = sub.add_parser("split")
    cut.add_argument("table", type=Path)
    cut.add_argument("schema", type=Path)
    cut.add_argument("out", type=Path)
    cut.add_argument("--holdout", type=float, default=0.2)
    cut.add_argument("--rows", type=int, default=None)
    cut.add_argument("--seed", type=int, default=0)
    show = sub.add_parser("summary")
    show.add_argument("run", type=Path)
    args = parser.parse_args(argv)
    if args.command == "split":
        split(args.table, args.schema, args.out, holdout=args.holdout, rows=args.rows, seed=args.seed)
    else:
        summary(args.run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
