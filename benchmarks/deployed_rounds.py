"""Round overhead, deployed vs simulated: what a round costs beyond the sites' own DP-SGD.

Runs the same federation twice on this machine: on a real loopback deployment (a TLS SuperLink with SuperNode
authentication, one SuperNode per site, subprocess isolation: what deploy/local/up.sh starts) and on Flower's
simulation engine. For every round it reads the round's wall time from the server's ``rounds.json`` and each
site's training time from the site's own log line (``... DP-SGD steps in T s``), and prints

    overhead = round wall time - slowest site's training time

(median and p90 over the rounds after the first), so what the deployment adds (message polling, a fresh
ClientApp process per message, reading the table again) is separated from the work itself.

    .venv/bin/python benchmarks/deployed_rounds.py [--sites 3] [--rounds 6] [--local-steps 10] [--rows 6000]
        [--secure-agg] [--only deployed|simulated]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from server.local_federation import local_superlink, run_app  # noqa: E402
from server.split import deal_rows  # noqa: E402
from tests.integration.deployment import LocalDeployment  # noqa: E402

TRAINED = re.compile(r"(site-\d+) round (\d+): \d+ DP-SGD steps in ([0-9.]+) s")
ADULT = REPO / "data" / "adult"


def _table(root: Path, rows: int) -> Path:
    lines = (ADULT / "adult_train.csv").read_text().splitlines()
    path = root / "table.csv"
    path.write_text("\n".join(lines[: rows + 1]) + "\n")
    return path


def _run_config(out: Path, args: argparse.Namespace) -> dict[str, object]:
    return {
        "schema-path": str(ADULT / "schema.json"), "out-dir": str(out), "signing-key": str(out.parent / "key.pem"),
        "num-rounds": args.rounds, "min-sites": args.sites, "synthetic-rows": 500,
        "train.local-steps": args.local_steps, "dp.target-epsilon": 3.0, "evaluate.noise-multiplier": 0.0,
        "secure-agg": args.secure_agg,
    }


def _overheads(out: Path, logs: list[Path]) -> tuple[list[float], list[float]]:
    """Per round after the first: (overhead, slowest site's training), from rounds.json and the site logs."""
    trained: dict[int, float] = {}
    for log in logs:
        for site, server_round, seconds in TRAINED.findall(log.read_text(errors="replace")):
            trained[int(server_round)] = max(trained.get(int(server_round), 0.0), float(seconds))
    rounds = json.loads((out / "rounds.json").read_text())["rounds"]
    overhead, training = [], []
    for record in rounds[1:]:  # round 1 also pays for the first imports and the plan
        number = int(record["round"])
        if number in trained:
            overhead.append(float(record["duration_s"]) - trained[number])
            training.append(trained[number])
    return overhead, training


def deployed(root: Path, table: Path, args: argparse.Namespace) -> tuple[list[float], list[float], float]:
    deployment = LocalDeployment(root, args.sites, table, ADULT / "schema.json")
    try:
        deployment.start_all()
        began = time.monotonic()
        deployment.submit(_run_config(root / "out", args)).wait(timeout=3600)
        wall = time.monotonic() - began
    finally:
        deployment.stop()
    logs = [root / "logs" / f"supernode-{name}.log" for name in deployment.names]
    return (*_overheads(root / "out", logs), wall)


def simulated(root: Path, table: Path, args: argparse.Namespace) -> tuple[list[float], list[float], float]:
    sites = root / "sites"
    deal_rows(table, ADULT / "schema.json", args.sites, sites)
    run_config = {**_run_config(root / "out", args), "sites-dir": str(sites),
                  "simulation.site-epsilon-cap": 10.0}
    log = root / "simulation.log"
    began = time.monotonic()
    with local_superlink(root / ".flower") as env, log.open("w") as handle:
        run_app(REPO, num_sites=args.sites, run_config=run_config, env=env, log=handle)
    wall = time.monotonic() - began
    return (*_overheads(root / "out", [log]), wall)


def _row(name: str, overhead: list[float], training: list[float], wall: float) -> str:
    if not overhead:
        return f"| {name} | no rounds measured (see the logs) | | | |"
    p90 = sorted(overhead)[max(int(0.9 * len(overhead)) - 1, 0)]
    return (f"| {name} | {statistics.median(training):.2f} | {statistics.median(overhead):.2f} | {p90:.2f} | "
            f"{statistics.median(overhead) / statistics.median(training):.2f} | {wall:.0f} |")


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
    print(f"{args.sites} sites, {args.rounds} rounds x {args.local_steps} DP-SGD steps, {args.rows} rows of Adult"
          f"{', secure aggregation' if args.secure_agg else ''}; "
          f"{os.cpu_count()} CPUs")
    print("| engine | site training, s (median) | overhead, s (median) | overhead p90 | overhead / training | "
          "run wall, s |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="fedsynth-rounds-") as tmp:
        root = Path(tmp)
        table = _table(root, args.rows)
        if args.only in (None, "simulated"):
            print(_row("simulation", *simulated(root / "sim", table, args)), flush=True)
        if args.only in (None, "deployed"):
            print(_row("deployment (TLS, subprocess isolation)", *deployed(root / "dep", table, args)), flush=True)


if __name__ == "__main__":
    main()
