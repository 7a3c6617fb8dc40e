"""Centralized baselines for the quality benchmark, trained on the whole Adult training table.

- TVAE and CTGAN from the ``ctgan`` package: non-private, as published (their ``DataTransformer`` is fitted on
  the raw rows, which is exactly what fedsynth must not do).
- MST (McKenna et al. 2021, "Winning the NIST Contest") and AIM (McKenna et al. 2022, "AIM: An Adaptive and
  Iterative Mechanism") from ``smartnoise-synth``, at each finite epsilon. Both need discrete data: every
  column is mapped to a cell of the *public* domain (category lists, and the bins the fedsynth encoder
  derives from the schema's bounds or explicit ``bins``, ``shared.encoding.column_bins``), never to a range
  read off the data; smartnoise's own transformer, which learns the category set from the rows, is bypassed.
  A bin is decoded by drawing a value uniformly inside it; ``derived_from`` columns (``education_num``) are
  left out of every model and recomputed from their public mapping.

This runs in its own virtualenv (see benchmarks/README.md): smartnoise-synth pins an old opacus and torch.

    .venv-bench/bin/python benchmarks/baselines.py --out benchmarks/results/baselines --epsilons 1 3 8

Writes OUT/<name>.csv in the project's column format (validated by ``read_site_table`` like any other table)
and OUT/baselines.json with each run's parameters and seconds (fit plus sample).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.encoding import column_bins  # noqa: E402
from shared.schema import Column, Schema, load_schema  # noqa: E402
from shared.validation import read_site_table  # noqa: E402

METHODS = ("tvae", "ctgan", "mst", "aim")
MISSING = "(missing)"  # the category CTGAN/TVAE see for an empty categorical cell
# mbi 1.1.0's default "round" sampling ranks the rows of each parent group in index order without shuffling,
# so sibling columns come out comonotonic (Adult: capital_gain/capital_loss correlation 0.65 against -0.03
# real; every row with a capital loss also had a gain). Plain i.i.d. sampling from the model has no such bias.
_SAMPLING = "sample"


@dataclass(frozen=True)
class PublicDomain:
    """Each modelled column as a list of public cells: categories (plus missing) or bins (plus missing)."""

    schema: Schema
    columns: tuple[Column, ...]

    @classmethod
    def from_schema(cls, schema: Schema) -> PublicDomain:
        return cls(schema, tuple(c for c in schema.synthesized_columns if c.derived_from is None))

    def size(self, column: Column) -> int:
        width = len(column.categories or ()) if column.type == "categorical" else len(column_bins(column))
        return width + int(column.nullable)

    def encode(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Cell index of every value; a missing value takes the last cell of a nullable column."""
        codes: dict[str, np.ndarray] = {}
        for column in self.columns:
            missing = frame[column.name].isna().to_numpy()
            if column.type == "categorical":
                index = pd.Index(list(column.categories or ()))
                cells = index.get_indexer(frame[column.name].astype("string").fillna(""))
            else:
                lows = np.array([a for a, _ in column_bins(column)])
                lo, hi = column.bounds or (0.0, 0.0)
                values = np.clip(pd.to_numeric(frame[column.name]).to_numpy(dtype=float, na_value=lo), lo, hi)
                cells = np.clip(np.searchsorted(lows, values, side="right") - 1, 0, len(lows) - 1)
            codes[column.name] = np.where(missing, self.size(column) - 1, cells).astype(np.int64)
        return codes

    def decode(self, codes: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Rows in the project's format: categories by name, a bin as a uniform draw inside it."""
        out: dict[str, Any] = {}
        for column in self.columns:
            cells = codes[column.name].to_numpy(dtype=np.int64)
            missing = column.nullable & (cells == self.size(column) - 1)
            if column.type == "categorical":
                names = np.array([*(column.categories or ()), ""], dtype=object)
                out[column.name] = np.where(missing, None, names[np.minimum(cells, len(names) - 1)])
                continue
            bins = np.array(column_bins(column))[np.minimum(cells, len(column_bins(column)) - 1)]
            if column.is_integer:
                values = rng.integers(bins[:, 0].astype(np.int64), bins[:, 1].astype(np.int64) + 1).astype(float)
            else:
                values = rng.uniform(bins[:, 0], bins[:, 1])
            out[column.name] = np.where(missing, np.nan, values)
        return finish(pd.DataFrame(out), self.schema)


def finish(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Add ``derived_from`` columns from their mapping, round integer columns, order columns as the schema."""
    for column in schema.synthesized_columns:
        if column.derived_from is not None:
            source = frame[column.derived_from].astype("string")
            frame[column.name] = pd.to_numeric(source.map(column.mapping or {}), errors="coerce")
        if column.is_integer:
            frame[column.name] = pd.to_numeric(frame[column.name]).round().astype("Int64")
    return frame[[c.name for c in schema.synthesized_columns]]


# ---- non-private deep baselines (ctgan package) ------------------------------------------------------------


def fit_ctgan_family(method: str, train: pd.DataFrame, schema: Schema, *, rows: int, epochs: int,
                     seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Fit TVAE or CTGAN (defaults of the ctgan package, only ``epochs`` set) and sample ``rows`` rows."""
    from ctgan import CTGAN, TVAE

    modelled = [c for c in schema.synthesized_columns if c.derived_from is None]
    data = pd.DataFrame({c.name: _raw_column(train, c) for c in modelled})
    discrete = [c.name for c in modelled if c.type == "categorical"]
    model = TVAE(epochs=epochs, enable_gpu=False) if method == "tvae" else CTGAN(epochs=epochs, enable_gpu=False)
    model.set_random_state(seed)
    model.fit(data, discrete_columns=discrete)
    sampled = model.sample(rows)
    for column in modelled:
        if column.type == "categorical":
            sampled[column.name] = sampled[column.name].astype(object).where(sampled[column.name] != MISSING, None)
        else:
            lo, hi = column.bounds or (0.0, 0.0)
            sampled[column.name] = pd.to_numeric(sampled[column.name]).clip(lo, hi)
    return finish(sampled, schema), {"epochs": epochs, "batch_size": 500, "package_defaults": True}


def _raw_column(train: pd.DataFrame, column: Column) -> pd.Series:
    if column.type == "categorical":
        return train[column.name].astype("string").fillna(MISSING).astype(object)
    values = pd.to_numeric(train[column.name])
    if values.isna().any():
        raise SystemExit(f"column {column.name!r} has missing numbers; the CTGAN/TVAE adapter cannot model them")
    return values.astype(float)


# ---- DP marginal baselines (smartnoise-synth) -------------------------------------------------------------


def fit_marginal(method: str, train: pd.DataFrame, domain: PublicDomain, *, rows: int, epsilon: float,
                 delta: float, aim_rounds: int | None, aim_seconds: float,
                 seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Run MST or AIM on the public-domain cells of ``train``; sample ``rows`` rows and decode them."""
    from mbi import Dataset, Domain
    from snsynth.utils import cdp_rho

    np.random.seed(seed)  # selection and sampling use numpy's global generator; DP noise comes from OpenDP
    mbi_domain = Domain([c.name for c in domain.columns], [domain.size(c) for c in domain.columns])
    data = Dataset(domain.encode(train), mbi_domain)
    if method == "mst":
        from snsynth.mst import MSTSynthesizer

        mst = MSTSynthesizer(epsilon=epsilon, delta=delta)
        mst.MST(data, epsilon, delta)
        codes = mst.undo_compress_fn(mst.synthesizer.synthetic_data(rows=rows, method=_SAMPLING)).df
        params: dict[str, Any] = {"cliques": len(mst.synthesizer.cliques)}
    else:
        aim = _capped_aim(epsilon=epsilon, delta=delta, rounds=aim_rounds, seconds=aim_seconds)
        aim.rho = cdp_rho(epsilon, delta)
        aim.AIM(data, aim.get_workload(data, degree=aim.degree, max_cells=aim.max_cells))
        codes = aim.synthesizer.synthetic_data(rows=rows, method=_SAMPLING).df
        params = {"rounds_planned": aim_rounds or 16 * len(domain.columns), "rounds_run": aim.rounds_run,
                  "time_cap_s": aim_seconds, "time_cap_hit": aim.cap_hit, "max_model_size_mb": aim.max_model_size}
    params["domain_sizes"] = {c.name: domain.size(c) for c in domain.columns}
    return domain.decode(codes, np.random.default_rng(seed)), params


def _capped_aim(*, epsilon: float, delta: float, rounds: int | None, seconds: float) -> Any:
    """smartnoise's AIMSynthesizer with a wall-clock cap that keeps the guarantee and spends the whole budget.

    The loop is smartnoise-synth 1.0.8's ``AIMSynthesizer.AIM`` (itself private-pgm's ``mechanisms/aim.py``);
    the one change: once ``seconds`` have passed, the next round is AIM's own *last* round, which measures
    with all the remaining budget. Stopping early only reallocates zCDP budget, so epsilon is unchanged.
    """
    from mbi import LinearMeasurement, estimation, marginal_oracles
    from snsynth.aim import AIMSynthesizer
    from snsynth.aim.aim import compile_workload, filter_candidates
    from snsynth.utils import gaussian_noise

    def fit(data: Any, measurements: list[Any]) -> Any:
        return estimation.mirror_descent(data.domain, measurements, iters=1000,
                                         marginal_oracle=marginal_oracles.message_passing_stable)

    class CappedAIM(AIMSynthesizer):  # type: ignore[misc]
        rounds_run = 0
        cap_hit = False

        def AIM(self, data: Any, workload: list[Any]) -> None:  # noqa: N802 - the parent's name
            deadline = time.monotonic() + seconds
            candidates = compile_workload(workload)
            answers = {cl: data.project(cl).datavector() for cl in candidates}
            rounds = self.rounds or 16 * len(data.domain)
            sigma = np.sqrt(rounds / (2 * 0.9 * self.rho))
            eps = np.sqrt(8 * 0.1 * self.rho / rounds)
            oneway = [cl for cl in candidates if len(cl) == 1]
            rho_used = len(oneway) * 0.5 / sigma**2
            measurements = []
            for cl in oneway:
                x = np.asarray(data.project(cl).datavector())
                measurements.append(LinearMeasurement(x + np.asarray(gaussian_noise(sigma, x.size)), cl, sigma))
            model, terminate = fit(data, measurements), False
            while not terminate:
                self.rounds_run += 1
                out_of_time = time.monotonic() > deadline
                if out_of_time or self.rho - rho_used < 2 * (0.5 / sigma**2 + 1.0 / 8 * eps**2):
                    self.cap_hit = self.cap_hit or out_of_time
                    remaining = self.rho - rho_used
                    sigma, eps, terminate = np.sqrt(1 / (2 * 0.9 * remaining)), np.sqrt(8 * 0.1 * remaining), True
                rho_used += 1.0 / 8 * eps**2 + 0.5 / sigma**2
                small = filter_candidates(candidates, model, self.max_model_size * rho_used / self.rho)
                cl = self._worst_approximated(small, answers, model, eps, sigma)
                n = data.domain.size(cl)
                y = np.asarray(data.project(cl).datavector()) + np.asarray(gaussian_noise(sigma, n))
                z = model.project(cl).datavector()
                measurements.append(LinearMeasurement(y, cl, sigma))
                model = fit(data, measurements)
                if np.linalg.norm(model.project(cl).datavector() - z, 1) <= sigma * np.sqrt(2 / np.pi) * n:
                    sigma, eps = sigma / 2, eps * 2
            self.synthesizer = model

    return CappedAIM(epsilon=epsilon, delta=delta, rounds=rounds)


# ---- driver ------------------------------------------------------------------------------------------------


def _runs(args: argparse.Namespace) -> list[tuple[str, str, float | None]]:
    """(name, method, epsilon) for every requested run, in a fixed order."""
    runs: list[tuple[str, str, float | None]] = []
    for method in args.methods:
        if method in ("tvae", "ctgan"):
            runs.append((method, method, None))
        else:
            runs.extend((f"{method}-eps{e:g}", method, e) for e in args.epsilons)
    return runs


def main() -> int:
    args = _parser().parse_args()
    import torch

    torch.set_num_threads(args.threads)
    schema = load_schema(args.schema)
    train = read_site_table(args.train, schema).clean
    rows = args.rows or len(train)
    domain = PublicDomain.from_schema(schema)
    args.out.mkdir(parents=True, exist_ok=True)
    report_path = args.out / "baselines.json"
    report: dict[str, Any] = {"train_rows": len(train), "versions": _versions(), "runs": []}
    runs = _runs(args)
    # Keep earlier runs in the same folder (other methods, or with --skip-existing the same ones).
    previous = json.loads(report_path.read_text())["runs"] if report_path.is_file() else []
    redo = set() if args.skip_existing else {name for name, _, _ in runs}
    report["runs"] = [r for r in previous if (args.out / r["csv"]).is_file() and r["name"] not in redo]
    done = {r["name"] for r in report["runs"]}
    for name, method, epsilon in runs:
        if name in done:
            print(f"baselines: {name} already in {report_path}; kept", flush=True)
            continue
        print(f"baselines: {name} ...", flush=True)
        began = time.monotonic()
        fit: Callable[[], tuple[pd.DataFrame, dict[str, Any]]]
        if epsilon is None:
            epochs = args.tvae_epochs if method == "tvae" else args.ctgan_epochs
            fit = lambda: fit_ctgan_family(method, train, schema, rows=rows, epochs=epochs, seed=args.seed)  # noqa: E731
        else:
            fit = lambda: fit_marginal(method, train, domain, rows=rows, epsilon=epsilon, delta=args.delta,  # noqa: E731
                                       aim_rounds=args.aim_rounds, aim_seconds=args.aim_seconds, seed=args.seed)
        synthetic, params = fit()
        seconds = time.monotonic() - began
        synthetic.to_csv(args.out / f"{name}.csv", index=False)
        report["runs"].append({"name": name, "method": method, "epsilon": epsilon,
                               "delta": args.delta if epsilon is not None else None, "seconds": round(seconds, 1),
                               "rows": len(synthetic), "seed": args.seed, "csv": f"{name}.csv", "params": params})
        report_path.write_text(json.dumps(report, indent=2))  # after every run: a crash keeps what is done
        print(f"baselines: {name} done in {seconds:.0f} s", flush=True)
    return 0


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("ctgan", "smartnoise-synth", "mbi", "torch", "numpy", "pandas")}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 8.0], help="for MST and AIM")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--schema", type=Path, default=ROOT / "data/adult/schema.json")
    parser.add_argument("--train", type=Path, default=ROOT / "data/adult/adult_train.csv")
    parser.add_argument("--rows", type=int, default=None, help="synthetic rows (default: as many as the training rows)")
    parser.add_argument("--tvae-epochs", type=int, default=300, help="the package default; ~0.6 s an epoch")
    parser.add_argument("--ctgan-epochs", type=int, default=150, help="300 is the package default; ~4-6 s an epoch")
    parser.add_argument("--aim-rounds", type=int, default=None, help="AIM's round budget T (default 16 x columns)")
    parser.add_argument("--aim-seconds", type=float, default=900.0,
                        help="wall-clock cap on AIM's selection loop; the last round spends what is left")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: OpenMP spins on shared cores)")
    parser.add_argument("--skip-existing", action="store_true", help="reuse runs already in OUT/baselines.json")
    return parser


if __name__ == "__main__":
    sys.exit(main())
