"""Round overhead, deployed vs simulated: what a round costs beyond the sites' own DP-SGD.

Runs the same federation twice on this machine: on a real loopback deployment (a TLS SuperLink with SuperNode
authentication, one SuperNode per site, subprocess isolation: what deploy/local/up.sh starts) and on Flower's
simulation engine. For every round it reads the round's wall time from the server's ``rounds.json`` and each
site's training time from the site's own log line (``... DP-SGD steps in T s``), and prints

    overhead = round wall time - slowest site's training time

(median and p90 over the rounds after the first), and on the deployment the SuperLink's CPU seconds a round and
the seconds it ran at 70% of a core or more, so what the deployment adds (message polling, a fresh
ClientApp process per message, reading the table again) is separated from the work itself.

    .venv/bin/python benchmarks/deployed_rounds.py [--sites 3] [--rounds 6] [--local-steps 10] [--rows 6000]
        [--secure-agg] [--only deployed|simulated]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.federated_runs import RunFigures, RunSettings, deployed, simulated  # noqa: E402


def _row(name: str, run: RunFigures) -> str:
    pairs = run.overheads()
    if not pairs:
        return f"| {name} | no rounds measured (see the logs) | | | | | |"
    overhead, training = run.median_overhead()
    p90 = sorted(o for o, _ in pairs)[max(int(0.9 * len(pairs)) - 1, 0)]
    traced = run.median_superlink()
    superlink = f"{traced[0]:.2f} / {traced[1]:.2f}" if traced else "–"
    return (f"| {name} | {training:.2f} | {overhead:.2f} | {p90:.2f} | {overhead / training:.2f} | {superlink} | "
            f"{run.wall_s:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--local-steps", type=int, default=10)
    parser.add_argument("--rows", type=int, default=6000, help="rows of Adult dealt to the sites")
    parser.add_argument("--only", choices=("deployed", "simulated"), default=None)
    parser.add_argument("--secure-agg", action="store_true", help="secure aggregation: 4 messages per site a round")
    args = parser.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    settings = RunSettings(sites=args.sites, rounds=args.rounds, local_steps=args.local_steps, rows=args.rows,
                           secure_agg=args.secure_agg, synthetic_rows=500)
    print(f"{args.sites} sites, {args.rounds} rounds x {args.local_steps} DP-SGD steps, {args.rows} rows of Adult"
          f"{', secure aggregation' if args.secure_agg else ''}; {os.cpu_count()} CPUs")
    print("| engine | site training, s (median) | overhead, s (median) | overhead p90 | overhead / training | "
          "SuperLink CPU / busy, s a round | run wall, s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="fedsynth-rounds-") as tmp:
        root = Path(tmp)
        if args.only in (None, "simulated"):
            print(_row("simulation", simulated(root / "sim", settings)), flush=True)
        if args.only in (None, "deployed"):
            print(_row("deployment (TLS, subprocess isolation)", deployed(root / "dep", settings)), flush=True)


if __name__ == "__main__":
    main()
