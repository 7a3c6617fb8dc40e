"""Quality benchmark on Adult: fedsynth over sites, splits and epsilons, beside centralized baselines.

For every setting it trains a synthetic table and scores it against the real data with the project's own
evaluation (``shared.evaluation.evaluate``; training rows = adult_train, holdout = adult_test) plus the
gradient-boosting TSTR of ``benchmarks/tstr.py``. fedsynth runs are ``fedsynth demo`` subprocesses: one site
runs in the default local mode; three or more sites use shared noise under secure aggregation, 100 rounds of
one step (a central DP-SGD run). The baselines (non-private TVAE and CTGAN, DP MST and AIM) run centrally on
all of adult_train through ``benchmarks/baselines.py`` in their own virtualenv (see benchmarks/README.md).

    .venv/bin/python benchmarks/quality.py --quick                  # smoke run, a few minutes
    .venv/bin/python benchmarks/quality.py                          # the full grid (hours; see the README)

Writes OUT/results.json (every number, per run) and OUT/results.md (the table), and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.evaluation import evaluate  # noqa: E402
from shared.schema import Schema, load_schema  # noqa: E402
from shared.validation import read_site_table  # noqa: E402
from tstr import auc as tstr_auc  # noqa: E402  (benchmarks/tstr.py, beside this file)

DEFAULT_GENERATOR = "tvae"


@dataclass(frozen=True)
class Setting:
    """One synthetic table to make: a fedsynth run or a baseline; ``epsilon`` None means non-private."""

    name: str
    system: str  # "fedsynth" or a baseline method
    epsilon: float | None
    label: str  # the requested epsilon as the table shows it
    seed: int
    sites: int = 0
    split: str = ""
    generator: str = DEFAULT_GENERATOR


@dataclass(frozen=True)
class Reference:
    """The real tables every synthetic table is scored against, and the TRTR figures."""

    schema: Schema
    train: pd.DataFrame  # validated adult_train
    test: pd.DataFrame  # validated adult_test
    train_raw: pd.DataFrame
    test_raw: pd.DataFrame
    trtr_gb: float

    @classmethod
    def load(cls, schema_path: Path, train: Path, test: Path, seed: int) -> Reference:
        schema = load_schema(schema_path)
        train_raw, test_raw = pd.read_csv(train), pd.read_csv(test)
        return cls(schema, read_site_table(train, schema).clean, read_site_table(test, schema).clean,
                   train_raw, test_raw, tstr_auc(train_raw, test_raw, schema, seed))


# ---- the grid ----------------------------------------------------------------------------------------------


def epsilon_label(value: str, inf_epsilon: float) -> tuple[float, str]:
    """``inf`` runs fedsynth at ``inf_epsilon`` (it always adds noise) and says so in the label."""
    if math.isinf(float(value)):
        return inf_epsilon, f"{inf_epsilon:g} (≈ non-private)"
    return float(value), f"{float(value):g}"


def fedsynth_settings(args: argparse.Namespace) -> list[Setting]:
    settings = []
    for seed in args.seeds:
        for generator in args.generators:
            for sites in args.sites:
                for split in (["iid"] if sites == 1 else args.splits):  # one site has nothing to split
                    for value in args.epsilons:
                        eps, label = epsilon_label(value, args.inf_epsilon)
                        name = f"fedsynth-{generator}-s{sites}-{split}-e{eps:g}-seed{seed}"
                        settings.append(Setting(name, "fedsynth", eps, label, seed, sites, split, generator))
    return settings


def baseline_settings(args: argparse.Namespace) -> list[Setting]:
    finite = [float(v) for v in args.epsilons if not math.isinf(float(v))]
    settings = []
    for seed in args.seeds:
        for method in args.baselines:
            if method in ("tvae", "ctgan"):
                settings.append(Setting(f"central-{method}-seed{seed}", method, None, "∞ (non-private)", seed))
            else:
                settings += [Setting(f"central-{method}-eps{e:g}-seed{seed}", method, e, f"{e:g}", seed)
                             for e in finite]
    return settings


# ---- fedsynth ----------------------------------------------------------------------------------------------


def demo_command(setting: Setting, out: Path, args: argparse.Namespace) -> list[str]:
    """The `fedsynth demo` command line of a setting (printed in the results, so any row can be re-made)."""
    command = [str(args.fedsynth), "demo", "--out", str(out), "--force", "--sites", str(setting.sites),
               "--split", setting.split, "--epsilon", f"{setting.epsilon:g}", "--seed", str(setting.seed)]
    if setting.sites >= 3:
        # Shared record-level noise under secure aggregation: one central DP-SGD run (README, DESIGN.md s. 9).
        command += ["--secure-agg", "--shared-noise", "--rounds", str(args.shared_rounds)]
    elif args.local_rounds:
        command += ["--rounds", str(args.local_rounds)]
    if setting.generator != DEFAULT_GENERATOR:
        command += ["--generator", setting.generator]
    if args.rows:
        command += ["--rows", str(args.rows)]
    return command + args.demo_args


def run_fedsynth(setting: Setting, args: argparse.Namespace) -> dict[str, Any]:
    """Run (or with --resume, reuse) one fedsynth setting; the privacy figures come from its manifest."""
    out = args.out / "runs" / setting.name
    command = demo_command(setting, out, args)
    record: dict[str, Any] = {"command": " ".join(command), "csv": str(out / "synthetic.csv")}
    done_before = args.resume and (out / "manifest.json").is_file() and (out / "wall.json").is_file()
    if done_before:
        record["seconds"] = json.loads((out / "wall.json").read_text())["seconds"]
    else:
        out.mkdir(parents=True, exist_ok=True)
        print(f"quality: {setting.name}: {record['command']}", flush=True)
        began = time.monotonic()
        with open(out.parent / f"{setting.name}.log", "w") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
        record["seconds"] = round(time.monotonic() - began, 1)
        if code != 0 or not (out / "manifest.json").is_file():
            return {**record, "failed": f"exit {code}; see {out.parent / (setting.name + '.log')}"}
        (out / "wall.json").write_text(json.dumps({"seconds": record["seconds"]}))
    manifest = json.loads((out / "manifest.json").read_text())
    privacy = manifest["privacy"]["record"]
    fallback = privacy.get("epsilon_if_trust_fails_per_site") or {}
    record.update(epsilon_spent=max(privacy["epsilon_per_site"].values()),
                  noise_multiplier=privacy.get("noise_multiplier"), rests_on=privacy.get("rests_on", ["local"]),
                  epsilon_if_trust_fails=max(fallback.values()) if fallback else None,
                  rounds=manifest.get("rounds"), generator=manifest.get("generator", {}).get("name"))
    return record


# ---- baselines ---------------------------------------------------------------------------------------------


def run_baselines(settings: list[Setting], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Run benchmarks/baselines.py once per seed in the baseline virtualenv; one record per setting."""
    records: dict[str, dict[str, Any]] = {}
    for seed in sorted({s.seed for s in settings}):
        mine = [s for s in settings if s.seed == seed]
        out = args.out / "baselines" / f"seed{seed}"
        epsilons = sorted({f"{s.epsilon:g}" for s in mine if s.epsilon is not None}, key=float)
        command = [str(args.bench_python), str(ROOT / "benchmarks" / "baselines.py"), "--out", str(out),
                   "--methods", *sorted({s.system for s in mine}, key=args.baselines.index), "--seed", str(seed),
                   *(["--epsilons", *epsilons] if epsilons else []), "--tvae-epochs", str(args.tvae_epochs), "--ctgan-epochs", str(args.ctgan_epochs),
                   "--aim-seconds", str(args.aim_seconds), *(["--rows", str(args.rows)] if args.rows else []),
                   *(["--aim-rounds", str(args.aim_rounds)] if args.aim_rounds else []),
                   *(["--skip-existing"] if args.resume else [])]
        print(f"quality: baselines, seed {seed}: {' '.join(command)}", flush=True)
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "baselines.log", "a") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
        done = {r["name"]: r for r in _read_runs(out / "baselines.json")}
        for s in mine:
            run = done.get(s.name.removeprefix("central-").rsplit("-seed", 1)[0])  # baselines.py's run name
            if run is None:
                records[s.name] = {"failed": f"baselines.py exit {code}; see {out / 'baselines.log'}"}
                continue
            records[s.name] = {"command": " ".join(command), "csv": str(out / run["csv"]),
                               "seconds": run["seconds"], "params": run["params"],
                               "epsilon_spent": run["epsilon"], "noise_multiplier": None}
    return records


def _read_runs(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text())["runs"]) if path.is_file() else []


# ---- scoring -----------------------------------------------------------------------------------------------


def score(csv: Path, ref: Reference, seed: int) -> dict[str, Any]:
    """TSTR/TRTR, fidelity and DCR of one synthetic table, from the project's own scoring."""
    checked = read_site_table(csv, ref.schema)
    report = evaluate(checked.clean, ref.train, ref.test, ref.schema, seed=seed).to_dict()
    models = {m["model"]: m for m in report["utility"]["models"]}
    fid, priv = report["fidelity"], report["privacy"]
    gb = tstr_auc(pd.read_csv(csv), ref.test_raw, ref.schema, seed)
    dependence = [d["max_abs_diff"] for d in (fid["cramers_v"], fid["correlation"]) if d["max_abs_diff"] is not None]
    target = ref.schema.target or ""
    return {
        "rows": len(checked.clean), "rows_quarantined": len(checked.quarantined),
        "tstr_gb_auc": gb, "tstr_gb_ratio": gb / ref.trtr_gb,
        "eval_gb_auc": _auc(models, "gradient_boosting"), "eval_gb_ratio": models["gradient_boosting"]["auc_ratio"],
        "lr_auc": _auc(models, "logistic_regression"), "lr_ratio": models["logistic_regression"]["auc_ratio"],
        "mean_tvd": fid["mean_tvd"], "mean_ks": fid["mean_ks"], "mean_wasserstein": fid["mean_wasserstein"],
        "worst_pair_diff": max(dependence, default=None),
        "worst_pairs": [fid["cramers_v"]["max_pair"], fid["correlation"]["max_pair"]],
        "dcr_share": priv["dcr_share"], "mia_auc": priv["mia_auc"], "exact_copy_rate": priv["exact_copy_rate"],
        "positive_share": float((checked.clean[target].astype("string") == _positive(ref.schema)).mean()),
    }


def _auc(models: dict[str, Any], name: str) -> float | None:
    tstr = models[name]["tstr"]
    return None if tstr is None else tstr["auc"]


def _positive(schema: Schema) -> str:
    column = schema.column(schema.target or "")
    return str(schema.to_dict().get("positive_label") or (column.categories or ("",))[-1])


# ---- the table ---------------------------------------------------------------------------------------------

_COLUMNS = ("setting", "ε requested", "ε spent", "σ", "TSTR GB AUC", "TSTR/TRTR", "LR AUC (ratio)",
            "mean TVD", "worst pair Δ", "DCR share", "wall s")


def markdown(results: list[dict[str, Any]], ref: Reference, trtr_lr: float | None) -> str:
    """One row per setting (mean ± sd over seeds where there are several); failed runs say so."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(r["setting"].rsplit("-seed", 1)[0], []).append(r)
    lines = [f"TRTR (trained on adult_train, tested on adult_test): gradient boosting AUC {ref.trtr_gb:.3f}, "
             f"logistic regression AUC {trtr_lr if trtr_lr is None else round(trtr_lr, 3)}.", "",
             "| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for name, runs in groups.items():
        ok = [r for r in runs if "failed" not in r]
        if not ok:
            lines.append(f"| {name} | {runs[0]['label']} | failed: {runs[0]['failed']} |" + " |" * (len(_COLUMNS) - 3))
            continue
        cell = lambda key, fmt="{:.3f}": _mean_sd([r.get(key) for r in ok], fmt)  # noqa: E731
        lr = f"{cell('lr_auc')} ({cell('lr_ratio', '{:.2f}')})"
        row = [name + (f" ({len(ok)} seeds)" if len(ok) > 1 else ""), runs[0]["label"], cell("epsilon_spent"),
               cell("noise_multiplier"), cell("tstr_gb_auc"), cell("tstr_gb_ratio", "{:.2f}"), lr,
               cell("mean_tvd"), cell("worst_pair_diff"), cell("dcr_share"), cell("seconds", "{:.0f}")]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _mean_sd(values: list[Any], fmt: str) -> str:
    numbers = [float(v) for v in values if v is not None]
    if not numbers:
        return "–"
    text = fmt.format(statistics.fmean(numbers))
    return text + (" ± " + fmt.format(statistics.stdev(numbers)) if len(numbers) > 1 else "")


# ---- driver ------------------------------------------------------------------------------------------------


def main() -> int:
    args = _parser().parse_args()
    if args.quick:
        args = _quick(args)
    args.out.mkdir(parents=True, exist_ok=True)
    # One OpenMP thread for scikit-learn: on shared cores, gradient boosting's spinning OpenMP workers took 185 s
    # for a fit that takes 7 s on one thread.
    threadpool_limits(limits=args.score_threads)
    ref = Reference.load(args.schema, args.train, args.test, seed=0)
    records: dict[str, dict[str, Any]] = {}
    settings: list[Setting] = []
    if not args.skip_baselines:
        baselines = baseline_settings(args)
        settings += baselines
        records.update(run_baselines(baselines, args))
    if not args.skip_fedsynth:
        for setting in fedsynth_settings(args):
            settings.append(setting)
            records[setting.name] = run_fedsynth(setting, args)
    results = []
    for s in settings:
        record = {"setting": s.name, "system": s.system, "label": s.label, "epsilon_requested": s.epsilon,
                  "sites": s.sites, "split": s.split, "seed": s.seed, **records[s.name]}
        if "failed" not in record:
            record.update(score(Path(record["csv"]), ref, s.seed))
        results.append(record)
        print(f"quality: scored {s.name}", flush=True)
    trtr_lr = next((r.get("lr_auc", 0) / r["lr_ratio"] for r in results if r.get("lr_ratio")), None)
    table = markdown(results, ref, trtr_lr)
    summary = {"trtr_gb_auc": ref.trtr_gb, "trtr_lr_auc": trtr_lr, "command": " ".join(sys.argv),
               "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "runs": results}
    (args.out / "results.json").write_text(json.dumps(summary, indent=2, default=str))
    (args.out / "results.md").write_text(f"Command: `{' '.join(sys.argv)}`\n\n{table}")
    print(table)
    return 0


def _quick(args: argparse.Namespace) -> argparse.Namespace:
    """A smoke run of every path: 3 IID sites at epsilon 1 for 3 rounds, and every baseline, all tiny."""
    return argparse.Namespace(**{**vars(args), "sites": [3], "splits": ["iid"], "epsilons": ["1"],
                                 "seeds": args.seeds[:1], "shared_rounds": 3, "rows": 4000, "tvae_epochs": 1,
                                 "ctgan_epochs": 1, "aim_seconds": 20.0, "aim_rounds": 20})


def _parser() -> argparse.ArgumentParser:
    venv = ROOT / ".venv" / "bin"
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--sites", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--splits", nargs="+", choices=("iid", "non-iid"), default=["iid", "non-iid"])
    parser.add_argument("--epsilons", nargs="+", default=["1", "3", "8", "inf"],
                        help="record-level epsilons; inf = non-private baselines, fedsynth at --inf-epsilon")
    parser.add_argument("--inf-epsilon", type=float, default=100.0,
                        help="the epsilon fedsynth runs at for 'inf' (the PRV accountant fails beyond ~500)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--generators", nargs="+", default=[DEFAULT_GENERATOR], help="fedsynth's --generator")
    parser.add_argument("--baselines", nargs="+", choices=("tvae", "ctgan", "mst", "aim"),
                        default=["tvae", "ctgan", "mst", "aim"])
    parser.add_argument("--shared-rounds", type=int, default=100, help="rounds with 3+ sites (shared noise)")
    parser.add_argument("--local-rounds", type=int, default=None, help="rounds with 1-2 sites (demo default)")
    parser.add_argument("--rows", type=int, default=None, help="synthetic rows (default: as many as adult_train)")
    parser.add_argument("--demo-args", nargs=argparse.REMAINDER, default=[],
                        help="extra `fedsynth demo` arguments for every run (last option; takes the rest)")
    parser.add_argument("--tvae-epochs", type=int, default=300, help="the package default; ~0.6 s an epoch")
    parser.add_argument("--ctgan-epochs", type=int, default=150, help="300 is the package default; ~4-6 s an epoch")
    parser.add_argument("--aim-seconds", type=float, default=900.0, help="AIM's wall-clock cap (see baselines.py)")
    parser.add_argument("--aim-rounds", type=int, default=None, help="AIM's round budget (default 16 x columns)")
    parser.add_argument("--bench-python", type=Path, default=ROOT / ".venv-bench" / "bin" / "python")
    parser.add_argument("--fedsynth", type=Path, default=venv / "fedsynth")
    parser.add_argument("--schema", type=Path, default=ROOT / "data" / "adult" / "schema.json")
    parser.add_argument("--train", type=Path, default=ROOT / "data" / "adult" / "adult_train.csv")
    parser.add_argument("--test", type=Path, default=ROOT / "data" / "adult" / "adult_test.csv")
    parser.add_argument("--score-threads", type=int, default=1, help="BLAS/OpenMP threads while scoring")
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--skip-fedsynth", action="store_true")
    parser.add_argument("--resume", action="store_true", help="reuse finished runs in --out instead of re-training")
    parser.add_argument("--quick", action="store_true", help="a tiny grid: checks every path in a few minutes")
    return parser


if __name__ == "__main__":
    sys.exit(main())
