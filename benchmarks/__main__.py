"""Every performance goal of fedsynth, measured side by side with the alternatives in one run.

    python -m benchmarks [--quick] [--json FILE] [--only KEY [KEY ...]] [--ctgan-python PATH]

prints a table (figure, goal, met or not) and with ``--json`` writes the figures under these keys:

- ``dp_step_overhead``: a DP-SGD step's time over a non-private step's, same generator, batch and device.
- ``round_overhead``: (round wall time - slowest site's DP-SGD time) / that time, on a loopback deployment with
  3 and 10 sites, with the fixed cost of an (almost) empty round.
- ``wire_ratio``: bytes Flower sends per update over parameters x 4, and serialisation time against training.
- ``sampling_vs_ctgan``: synthetic rows per second into a DataFrame over CTGAN's, same schema, same run.
- ``train_vs_ctgan``: a 5-site federated DP run on Adult over CTGAN's centralized fit on the same table.
- ``scale_100_sites``: 10, 30 and 100 simulated sites x 10 rounds: wall time and peak memory (process tree).
- ``gpu``: where CUDA is available, the DP step (private and plain) and sampling on the GPU; it is added to any
  run on a machine with CUDA, and ``--only gpu`` runs it alone (``benchmarks/gpu_check.sh`` does, on a GPU machine).

``--quick`` runs a reduced version (fewer steps, rounds and CTGAN epochs, projected to its 300) in a few
minutes. Figures and the machine they came from are in benchmarks/README.md ("Speed").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks import dp_step, federated_runs, versus_ctgan, wire
from benchmarks.adult import REPO
from benchmarks.federated_runs import RunSettings

KEYS = ("dp_step_overhead", "round_overhead", "wire_ratio", "sampling_vs_ctgan", "train_vs_ctgan",
        "scale_100_sites")
GPU = "gpu"  # not in KEYS: added to any run where CUDA is available, or run alone with --only gpu
MAIN_JOB_BATCH = 434  # the README demo's expected Poisson batch: 0.05 x (32,561 / 3 sites x 0.8 kept for training)


@dataclass(frozen=True)
class Settings:
    quick: bool
    work: Path
    ctgan_python: Path
    ctgan_epochs: int  # fitted; a fit shorter than the package's 300 epochs is projected to 300


Figure = dict[str, Any]


def _goal(value: float, goal: str, met: bool, **details: Any) -> Figure:
    return {"value": round(value, 4), "goal": goal, "met": bool(met), **details}


def dp_step_overhead(s: Settings) -> Figure:
    torch.set_num_threads(1)  # a site's setting (shared/device.py)
    blocks, steps = (5, 10) if s.quick else (9, 20)
    by_batch = {}
    for batch in (64, 256, MAIN_JOB_BATCH, 1024):
        times = dp_step.measure(batch=batch, blocks=blocks, steps_per_block=steps)
        by_batch[str(batch)] = {"private_ms": round(times.private_ms, 3), "plain_ms": round(times.plain_ms, 3),
                                "ratio": round(times.ratio, 3)}
    gan = dp_step.measure(generator_name="gan", batch=MAIN_JOB_BATCH, blocks=blocks, steps_per_block=steps)
    value = by_batch[str(MAIN_JOB_BATCH)]["ratio"]
    return _goal(value, "<= 2.0", value <= 2.0, generator="tvae (default)", batch=MAIN_JOB_BATCH,
                 by_batch=by_batch, gan_ratio=round(gan.ratio, 3), threads=1,
                 note="batch 434 is the README demo's expected Poisson batch per site")


def round_overhead(s: Settings) -> Figure:
    if s.quick:
        plans = {"3_sites": RunSettings(sites=3, rounds=3, local_steps=100),
                 "10_sites": RunSettings(sites=10, rounds=2, local_steps=30),
                 "empty_round": RunSettings(sites=3, rounds=3, local_steps=1)}
    else:
        plans = {"3_sites": RunSettings(sites=3, rounds=5, local_steps=400),
                 "10_sites": RunSettings(sites=10, rounds=4, local_steps=250),
                 "empty_round": RunSettings(sites=3, rounds=5, local_steps=1)}
    details: dict[str, Any] = {}
    for name, settings in plans.items():
        run = federated_runs.deployed(s.work / f"deployed-{name}", settings)
        overhead, training = run.median_overhead()
        details[name] = {"sites": settings.sites, "local_steps": settings.local_steps,
                         "rounds_measured": len(run.overheads()), "round_s": round(overhead + training, 3),
                         "slowest_site_training_s": round(training, 3), "overhead_s": round(overhead, 3),
                         "ratio": round(overhead / training, 3) if training else None}
        traced = run.median_superlink()
        if traced is not None:  # where the seconds beyond training go: the coordinator's one Python process
            details[name] |= {"superlink_cpu_s": round(traced[0], 3), "superlink_busy_s": round(traced[1], 3)}
    ratios = [details[k]["ratio"] for k in ("3_sites", "10_sites")]
    trained_enough = all(details[k]["slowest_site_training_s"] >= 10 for k in ("3_sites", "10_sites"))
    value = max(ratios)
    return _goal(value, "<= 0.10 when local training >= 10 s", value <= 0.10 and trained_enough, **details,
                 empty_round_fixed_cost_s=details["empty_round"]["overhead_s"],
                 training_at_least_10_s=trained_enough,
                 engine="loopback deployment: TLS SuperLink, SuperNode auth, fedsynth-supernode (warm task runtime)")


def wire_ratio(s: Settings) -> Figure:
    torch.set_num_threads(1)
    figures = wire.measure(repeats=3 if s.quick else 7)
    met = figures.ratio <= 1.05 and figures.serialize_share <= 0.02
    return _goal(figures.ratio, "<= 1.05, serialisation <= 2% of training", met, parameters=figures.parameters,
                 update_bytes=figures.update_bytes, serialize_s=round(figures.serialize_s, 5),
                 deserialize_s=round(figures.deserialize_s, 5),
                 training_round_s=round(figures.training_s, 3), serialize_share=round(figures.serialize_share, 4),
                 secure_agg_ratio=round(figures.secure_agg_ratio, 4), update_objects=figures.objects)


_shared: dict[str, Any] = {}  # the 5-site run and CTGAN's figures serve both CTGAN comparisons


def _ctgan_and_run(s: Settings) -> tuple[versus_ctgan.CTGANFigures, federated_runs.RunFigures]:
    if "ctgan" not in _shared:
        _shared["ctgan"] = versus_ctgan.ctgan(s.ctgan_python, epochs=s.ctgan_epochs,
                                              sample_rows=50_000 if s.quick else 200_000)
        _shared["run"] = versus_ctgan.federated(s.work / "five-sites", rounds=10 if s.quick else 30)
    return _shared["ctgan"], _shared["run"]


def sampling_vs_ctgan(s: Settings) -> Figure:
    reference, run = _ctgan_and_run(s)
    ours = versus_ctgan.fedsynth_sampling_rate(run, rows=50_000 if s.quick else 200_000)
    value = ours / reference.rows_per_s
    return _goal(value, ">= 2.5", value >= 2.5, fedsynth_rows_per_s=round(ours), ctgan_rows_per_s=round(reference.rows_per_s),
                 ctgan_version=reference.version, threads=1)


def train_vs_ctgan(s: Settings) -> Figure:
    reference, run = _ctgan_and_run(s)
    value = run.wall_s / reference.fit_s
    return _goal(value, "<= 1.0", value <= 1.0, fedsynth_run_s=round(run.wall_s, 1),
                 fedsynth_rounds_s=round(run.rounds_s, 1), rounds=run.settings.rounds, sites=5,
                 ctgan_fit_s=round(reference.fit_s, 1), ctgan_epochs=versus_ctgan.CTGAN_EPOCHS,
                 ctgan_epochs_fitted=reference.epochs_fitted, ctgan_fit_projected=reference.projected,
                 engine="simulation")


def scale_100_sites(s: Settings) -> Figure:
    rounds = 2 if s.quick else 10
    points: dict[str, Any] = {}
    for sites in (10, 30, 100):
        run = federated_runs.simulated(s.work / f"scale-{sites}", RunSettings(sites=sites, rounds=rounds))
        points[str(sites)] = {"wall_s": round(run.wall_s, 1), "rounds_s": round(run.rounds_s, 1),
                              "peak_memory_mb": round(run.peak_memory_bytes / 2**20, 1)}
    xs = [10.0, 30.0, 100.0]
    ys = [points[str(int(x))]["peak_memory_mb"] for x in xs]
    mean_x, mean_y = sum(xs) / 3, sum(ys) / 3
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs)
    fitted = [mean_y + slope * (x - mean_x) for x in xs]
    spread = sum((y - mean_y) ** 2 for y in ys)
    r2 = 1 - sum((y - f) ** 2 for y, f in zip(ys, fitted, strict=True)) / spread if spread else 1.0
    linear = slope >= 0 and r2 >= 0.9
    return _goal(points["100"]["wall_s"], "memory grows linearly in sites", linear, rounds=rounds, points=points,
                 memory_mb_per_site=round(slope, 2), memory_fit_r2=round(r2, 3), engine="simulation",
                 note="value = wall time of the 100-site run, seconds")


def gpu(s: Settings) -> Figure | None:
    if not torch.cuda.is_available():
        return None
    device = torch.device("cuda")
    steps = dp_step.measure(batch=MAIN_JOB_BATCH, device=device, blocks=5 if s.quick else 9)
    large = dp_step.measure(batch=4096, device=device, blocks=5 if s.quick else 9)
    rate = versus_ctgan.device_sampling_rate(device, rows=200_000)
    return {"device": torch.cuda.get_device_name(0), "batch": MAIN_JOB_BATCH,
            "dp_step_overhead": round(steps.ratio, 3), "dp_step_ms": round(steps.private_ms, 3),
            "plain_step_ms": round(steps.plain_ms, 3), "dp_step_overhead_batch_4096": round(large.ratio, 3),
            "dp_step_ms_batch_4096": round(large.private_ms, 3), "plain_step_ms_batch_4096": round(large.plain_ms, 3),
            "sampling_rows_per_s": round(rate), "torch": torch.__version__, "cuda": torch.version.cuda}


BENCHMARKS: dict[str, Callable[[Settings], Figure]] = {
    "dp_step_overhead": dp_step_overhead, "round_overhead": round_overhead, "wire_ratio": wire_ratio,
    "sampling_vs_ctgan": sampling_vs_ctgan, "train_vs_ctgan": train_vs_ctgan, "scale_100_sites": scale_100_sites,
}


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    memory = next((int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0) if Path("/proc/meminfo").exists() else 0
    return {"cpu": cpu, "cpus": os.cpu_count(), "memory_gib": round(memory / 2**30, 1), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.cuda.is_available(), "platform": platform.platform()}


def _row(key: str, figure: Figure) -> str:
    return f"| {key} | {figure['value']} | {figure['goal']} | {'yes' if figure['met'] else 'NO'} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a reduced version, a few minutes on 2 cores")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--only", nargs="+", choices=(*KEYS, GPU),
                        help="run these benchmarks only ('gpu' alone needs a CUDA device)")
    parser.add_argument("--ctgan-python", type=Path, default=REPO / ".venv-bench" / "bin" / "python",
                        help="the interpreter with the ctgan package (default .venv-bench/bin/python)")
    parser.add_argument("--ctgan-epochs", type=int,
                        help="epochs CTGAN is fitted for (default 300, its package default; 3 with --quick); fewer "
                             "than 300 are projected to 300 from the measured epoch time, and the figures say so")
    parser.add_argument("--work", type=Path, help="keep the runs' folders and logs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    keys = [key for key in args.only or KEYS if key != GPU]
    if args.only and GPU in args.only and not torch.cuda.is_available():
        parser.error("--only gpu needs a CUDA device, and torch sees none here")
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick,
                               "command": " ".join(["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])])}
    print(f"fedsynth benchmarks{' (quick)' if args.quick else ''} on {results['machine']['cpus']} CPUs "
          f"({results['machine']['cpu']}), {results['machine']['memory_gib']} GiB", flush=True)
    print("| key | figure | goal | met |\n|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory(prefix="fedsynth-bench-") as tmp:
        work = args.work or Path(tmp)
        epochs = args.ctgan_epochs or (3 if args.quick else versus_ctgan.CTGAN_EPOCHS)
        settings = Settings(args.quick, work, args.ctgan_python, epochs)
        for key in keys:
            began = time.monotonic()
            figure = BENCHMARKS[key](settings)
            figure["seconds"] = round(time.monotonic() - began, 1)
            results[key] = figure
            print(_row(key, figure), flush=True)
            if args.json:  # after every benchmark: an interrupted run keeps what it measured
                args.json.write_text(json.dumps(results, indent=2) + "\n")
        gpu_figures = gpu(settings)
        if gpu_figures is not None:
            results["gpu"] = gpu_figures
            print(f"GPU ({gpu_figures['device']}): {gpu_figures}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    for key in keys:
        details = {k: v for k, v in results[key].items() if k not in ("value", "goal", "met")}
        print(f"\n{key}: {json.dumps(details)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
