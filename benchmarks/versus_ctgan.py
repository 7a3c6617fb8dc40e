"""fedsynth against non-private, centralized CTGAN on Adult, in one benchmark run.

- Training: a 5-site federated DP run on all of Adult (the run config's defaults: 30 rounds x 10 DP-SGD steps,
  epsilon 3; Flower's simulation engine) against CTGAN's centralized fit on the same table (the ``ctgan``
  package's defaults, 300 epochs). fedsynth's figure is the whole run as ``flwr run`` sees it: plan, rounds,
  sampling the table, signing.
- Sampling: rows per second into a pandas DataFrame from the generator that run trained (its checkpoint,
  ``server.sampling.sample_table``), against ``CTGAN.sample`` of the model just fitted. One torch thread each;
  each side samples 1,000 rows to warm up, then the median of three timed draws.

CTGAN runs in the baseline virtualenv (``benchmarks/ctgan_speed.py``). ``--quick`` fits it for a few epochs and
projects the fit to 300 epochs (its transformer fit plus 300 x the measured epoch time), and says so.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.adult import REPO, SCHEMA, TRAIN, adult_encoded
from benchmarks.federated_runs import RunFigures, RunSettings, simulated
from server.checkpoint import read_checkpoint
from server.sampling import sample_table
from shared.plan import TrainingPlan
from shared.synthesizers import build_generator

CTGAN_EPOCHS = 300  # the ctgan package's default


@dataclass(frozen=True)
class CTGANFigures:
    fit_s: float  # measured, or projected to CTGAN_EPOCHS when fewer epochs were fitted
    epochs_fitted: int
    projected: bool
    rows_per_s: float
    version: str


def ctgan(python: Path, *, epochs: int, sample_rows: int) -> CTGANFigures:
    if not python.exists():
        raise SystemExit(
            f"{python} not found: CTGAN runs in the baseline virtualenv; set it up as benchmarks/README.md says, "
            "or pass --ctgan-python, or leave out sampling_vs_ctgan and train_vs_ctgan with --only"
        )
    result = subprocess.run(
        [str(python), str(REPO / "benchmarks" / "ctgan_speed.py"), "--table", str(TRAIN), "--schema", str(SCHEMA),
         "--epochs", str(epochs), "--sample-rows", str(sample_rows)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"CTGAN failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    fit = float(figures["fit_s"])
    if epochs != CTGAN_EPOCHS:
        per_epoch = (fit - float(figures["transformer_fit_s"])) / epochs
        fit = float(figures["transformer_fit_s"]) + CTGAN_EPOCHS * per_epoch
    return CTGANFigures(fit, epochs, epochs != CTGAN_EPOCHS, float(figures["sample_rows_per_s"]),
                        str(figures["ctgan_version"]))


def federated(root: Path, *, rounds: int) -> RunFigures:
    return simulated(root, RunSettings(sites=5, rounds=rounds, local_steps=10))


def fedsynth_sampling_rate(run: RunFigures, *, rows: int) -> float:
    """Rows per second from the run's trained generator into a DataFrame (one torch thread, as CTGAN)."""
    torch.set_num_threads(1)
    encoder, _ = adult_encoded()
    plan = TrainingPlan.from_json((run.out / "plan.json").read_text())
    generator = build_generator(plan, encoder)
    generator.load_state_dict(read_checkpoint(run.out / "checkpoint" / "checkpoint.pt").generator)
    sample_table(generator, encoder, 1_000, seed=1)  # warm-up, as CTGAN's
    timings = []
    for seed in range(3):  # the median of three, as CTGAN's
        began = time.perf_counter()
        table = sample_table(generator, encoder, rows, seed=seed).table
        timings.append(time.perf_counter() - began)
        if len(table) != rows:
            raise AssertionError(f"sampled {len(table)} rows, asked for {rows}")
    return rows / sorted(timings)[1]


def device_sampling_rate(device: torch.device, *, rows: int) -> float:
    """Rows per second into a DataFrame from a freshly built default generator on ``device`` (the GPU table)."""
    from benchmarks.adult import benchmark_plan

    encoder, _ = adult_encoded()
    generator = build_generator(benchmark_plan(), encoder)
    generator.module.to(device)
    sample_table(generator, encoder, 1_000, seed=1)
    began = time.perf_counter()
    sample_table(generator, encoder, rows, seed=2)
    return rows / (time.perf_counter() - began)
