"""Real federated runs for the speed benchmarks: the fedsynth app on Flower's simulation engine, or on a loopback
deployment (a TLS SuperLink with SuperNode authentication, one SuperNode per site, subprocess isolation: what
deploy/local/up.sh starts), on Adult dealt to the sites.

Every run reports its wall time, each round's wall time from the server's ``rounds.json``, each site's own
DP-SGD time per round (the site's log line ``... DP-SGD steps in T s``) and the peak memory of the whole
process tree (``benchmarks.process_memory``). A deployed run also reports, for each round, the SuperLink's CPU
seconds and the seconds it ran at 70% of a core or more (``benchmarks.process_cpu``): every message and object
of every site goes through that one process.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from benchmarks.adult import ADULT, REPO, SCHEMA
from benchmarks.process_cpu import CpuTrace
from benchmarks.process_memory import PeakMemory
from server.local_federation import local_superlink, run_app
from server.split import deal_rows

TRAINED = re.compile(r"(site-\d+) round (\d+): \d+ DP-SGD steps in ([0-9.]+) s")


@dataclass(frozen=True)
class RunSettings:
    sites: int
    rounds: int
    local_steps: int = 10
    rows: int | None = None  # rows of Adult dealt to the sites (None: all 32,561)
    secure_agg: bool = False
    evaluate: bool = False  # federated evaluation after the last round (off: the rounds alone are measured)
    synthetic_rows: int = 1000
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class RunFigures:
    settings: RunSettings
    wall_s: float  # submit to finished, as `flwr run` sees it (plan, rounds, sampling, signing)
    round_s: dict[int, float]  # each round's wall time at the server
    training_s: dict[int, float]  # each round's slowest site's DP-SGD time
    peak_memory_bytes: int
    out: Path
    started_at: dict[int, float] = field(default_factory=dict)  # each round's start, wall-clock (rounds.json)
    superlink_cpu_s: dict[int, float] = field(default_factory=dict)  # deployed: the SuperLink's CPU in each round
    superlink_busy_s: dict[int, float] = field(default_factory=dict)  # ... and its seconds at >= 70% of a core

    def overheads(self, skip_first: bool = True) -> list[tuple[float, float]]:
        """(overhead, slowest site's training) for each round with both figures (after the first: it also pays
        for the first imports and the plan)."""
        rounds = self.measured_rounds() if skip_first else sorted(r for r in self.round_s if r in self.training_s)
        return [(self.round_s[r] - self.training_s[r], self.training_s[r]) for r in rounds]

    def median_overhead(self) -> tuple[float, float]:
        """Median (overhead seconds, slowest site's training seconds) over the measured rounds."""
        pairs = self.overheads()
        if not pairs:
            raise RuntimeError(f"no round could be measured; see the logs under {self.out.parent}")
        return statistics.median(o for o, _ in pairs), statistics.median(t for _, t in pairs)

    def measured_rounds(self) -> list[int]:
        """The rounds with both figures, after the first (it also pays for the first imports and the plan)."""
        rounds = sorted(r for r in self.round_s if r in self.training_s)
        return rounds[1:] if len(rounds) > 1 else rounds

    def median_superlink(self) -> tuple[float, float] | None:
        """Median (SuperLink CPU seconds, seconds it was busy) over the measured rounds; None if not traced."""
        rounds = [r for r in self.measured_rounds() if r in self.superlink_cpu_s]
        if not rounds:
            return None
        return (statistics.median(self.superlink_cpu_s[r] for r in rounds),
                statistics.median(self.superlink_busy_s[r] for r in rounds))

    @property
    def rounds_s(self) -> float:
        return sum(self.round_s.values())


def adult_table(root: Path, rows: int | None) -> Path:
    """The first ``rows`` rows of Adult's training table (all of it with None)."""
    if rows is None:
        return ADULT / "adult_train.csv"
    lines = (ADULT / "adult_train.csv").read_text().splitlines()
    path = root / "table.csv"
    path.write_text("\n".join(lines[: rows + 1]) + "\n")
    return path


def run_config(out: Path, settings: RunSettings) -> dict[str, object]:
    return {
        "schema-path": str(SCHEMA), "out-dir": str(out), "signing-key": str(out.parent / "key.pem"),
        "num-rounds": settings.rounds, "min-sites": settings.sites, "synthetic-rows": settings.synthetic_rows,
        "train.local-steps": settings.local_steps, "dp.target-epsilon": 3.0,
        "evaluate.noise-multiplier": 10.0 if settings.evaluate else 0.0, "secure-agg": settings.secure_agg,
        **settings.extra,
    }


def _figures(settings: RunSettings, out: Path, logs: list[Path], wall: float, peak: int) -> RunFigures:
    trained: dict[int, float] = {}
    for log in logs:
        for _, server_round, seconds in TRAINED.findall(log.read_text(errors="replace")):
            trained[int(server_round)] = max(trained.get(int(server_round), 0.0), float(seconds))
    path = out / "rounds.json"
    if not path.exists():
        raise RuntimeError(f"the run wrote no rounds.json; see the logs under {out.parent}")
    records = json.loads(path.read_text())["rounds"]
    rounds = {int(r["round"]): float(r["duration_s"]) for r in records}
    if len(rounds) != settings.rounds:
        raise RuntimeError(f"the run finished {len(rounds)} of {settings.rounds} rounds; see {out.parent}")
    started = {int(r["round"]): float(r["started_at"]) for r in records}
    return RunFigures(settings, wall, rounds, trained, peak, out, started)


def simulated(root: Path, settings: RunSettings) -> RunFigures:
    """The run on Flower's simulation engine (a private SuperLink; sites are virtual SuperNodes)."""
    root.mkdir(parents=True, exist_ok=True)
    sites = root / "sites"
    deal_rows(adult_table(root, settings.rows), SCHEMA, settings.sites, sites)
    config = {**run_config(root / "out", settings), "sites-dir": str(sites), "simulation.site-epsilon-cap": 10.0,
              "simulation.local-evaluation": False}
    log = root / "simulation.log"
    with PeakMemory() as peak, local_superlink(root / ".flower") as env, log.open("w") as handle:
        began = time.monotonic()
        run_app(REPO, num_sites=settings.sites, run_config=config, env=env, log=handle)
        wall = time.monotonic() - began
    return _figures(settings, root / "out", [log], wall, peak.bytes)


def deployed(root: Path, settings: RunSettings) -> RunFigures:
    """The run on a loopback deployment, as deploy/local/up.sh starts it (TLS, SuperNode auth, subprocesses)."""
    from tests.integration.deployment import LocalDeployment  # the test suite's driver of the same processes

    root.mkdir(parents=True, exist_ok=True)
    deployment = LocalDeployment(root, settings.sites, adult_table(root, settings.rows), SCHEMA)
    with PeakMemory() as peak:
        try:
            deployment.start_all()
            with CpuTrace(deployment.processes["superlink"].pid) as superlink:
                began = time.monotonic()
                deployment.submit(run_config(root / "out", settings)).wait(timeout=3600)
                wall = time.monotonic() - began
        finally:
            deployment.stop()
    logs = [root / "logs" / f"supernode-{name}.log" for name in deployment.names]
    figures = _figures(settings, root / "out", logs, wall, peak.bytes)
    windows = {r: (figures.started_at[r], figures.started_at[r] + figures.round_s[r]) for r in figures.started_at}
    return replace(figures, superlink_cpu_s={r: superlink.seconds(*w) for r, w in windows.items()},
                   superlink_busy_s={r: superlink.busy_seconds(*w) for r, w in windows.items()})
