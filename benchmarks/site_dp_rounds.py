"""Seconds per round of a simulated federation: no site-level DP, central, and distributed (SecAgg).

Runs `fedsynth demo` on the bundled Adult table for each (sites, mode) and reads Flower's own timestamps:
per-round time is (strategy finished - round 2 started) / (rounds - 1), so start-up and publishing are left
out. Usage:

    .venv/bin/python benchmarks/site_dp_rounds.py [--sites 3 10] [--rounds 5] [--out /tmp/fedsynth-bench]

Prints one line per configuration. Wall-clock figures depend on the machine; the docs say which one.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

MODES = {"none": [], "central": ["--site-dp"], "distributed": ["--site-dp", "--secure-agg"]}
_STAMP = r"(\d\d/\d\d/\d{4} \d\d:\d\d:\d\d):INFO:"


def seconds_per_round(log: str, rounds: int) -> float:
    start = re.search(_STAMP + r"\[ROUND 2/", log)
    end = re.search(_STAMP + r"Strategy execution finished", log)
    if not start or not end:
        raise RuntimeError("the run's log lacks Flower's round timestamps; did it fail?")
    parse = lambda s: datetime.strptime(s, "%m/%d/%Y %H:%M:%S")  # noqa: E731
    return (parse(end.group(1)) - parse(start.group(1))).total_seconds() / (rounds - 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sites", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("/tmp/fedsynth-bench"))
    args = parser.parse_args()
    fedsynth = str(Path(sys.executable).with_name("fedsynth"))
    print(f"{'sites':>5} {'mode':>12} {'s/round':>8} {'wall s':>7}")
    for sites in args.sites:
        for mode in args.modes:
            out = args.out / f"{sites}-{mode}"
            command = [fedsynth, "demo", "--out", str(out), "--sites", str(sites), "--rounds", str(args.rounds),
                       "--rows", "2000", "--force", *MODES[mode]]
            began = time.monotonic()
            done = subprocess.run(command, capture_output=True, text=True)
            wall = time.monotonic() - began
            (args.out / f"{sites}-{mode}.log").write_text(done.stdout + done.stderr)
            if done.returncode != 0:
                print(f"{sites:>5} {mode:>12} failed (exit {done.returncode}); see {args.out}/{sites}-{mode}.log")
                continue
            per_round = seconds_per_round(done.stdout + done.stderr, args.rounds)
            print(f"{sites:>5} {mode:>12} {per_round:8.1f} {wall:7.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
