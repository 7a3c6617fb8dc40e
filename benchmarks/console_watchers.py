"""Does the live console slow the round loop? Round bookkeeping with 0 and with N watchers over TLS.

    .venv/bin/python benchmarks/console_watchers.py [--watchers 50] [--rounds 60] [--sites 3] [--train-seconds 0.5]

Each "round" is what the ServerApp does for the console besides training: the strategy's RoundStarted, the
consortium ledger's real work (epsilon by the accountant, ledger.json and rounds.json written atomically) and
the RoundFinished event; between rounds the loop sleeps --train-seconds in place of the sites' training (a
real round lasts seconds). Printed: the bookkeeping's milliseconds per round without a console, with a console
and no watcher, and with N watchers reading over TLS on loopback; and how late the watchers got RoundStarted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from server.certs import make_consortium_certs  # noqa: E402
from server.consortium import ConsortiumLedger  # noqa: E402
from server.console.monitor import RunMonitor  # noqa: E402
from server.console.server import ConsoleServer  # noqa: E402
from server.console.tokens import add_token  # noqa: E402
from server.round_outcome import UPDATED, RoundOutcome, SiteOutcome, SiteReport  # noqa: E402
from shared.accounting import epsilon  # noqa: E402
from shared.console.auth import bearer  # noqa: E402
from shared.console.transport import TLSFiles, open_channel  # noqa: E402
from shared.console.v1 import console_pb2 as pb  # noqa: E402
from shared.console.v1 import console_pb2_grpc as pb_grpc  # noqa: E402
from shared.plan import TrainingPlan  # noqa: E402


def _plan(rounds: int) -> TrainingPlan:
    schema = {"dataset": "b", "target": "y", "columns": [{"name": "y", "type": "categorical", "categories": ["a", "b"]}]}
    return TrainingPlan(run_id="bench", rounds=rounds, local_steps=10, sample_rate=0.01, noise_multiplier=3.0,
                        max_grad_norm=1.0, lr=1.0, delta=1e-5, accountant="rdp", target_epsilon=1e6,
                        metric_noise_multiplier=100.0, hidden=8, latent=2, kl_weight=0.3, seed=0,
                        schema_json=json.dumps(schema))


def round_loop(run_dir: Path, monitor: RunMonitor, rounds: int, sites: int, train_seconds: float) -> list[float]:
    """Seconds per round of the console-facing bookkeeping, as the ServerApp does it."""
    plan = _plan(rounds)
    ledger = ConsortiumLedger(run_dir / "ledger.json", plan, on_progress=monitor.round_finished)
    monitor.spent_from(lambda: {"record": ledger.spent()})
    monitor.started(plan, {}, min_sites=sites)
    monitor.phase(pb.RUN_STATUS_TRAINING)
    names = [f"site-{i}" for i in range(sites)]
    per_round = []
    for number in range(1, rounds + 1):
        start = time.perf_counter()
        monitor.round_started(number, names)
        eps = epsilon(ledger.ledger.history(names[0], "record") + list(plan.round_releases()), delta=plan.delta,
                      accountant="rdp")
        reports = [SiteReport(i, n, 1.0, eps, eps, 10) for i, n in enumerate(names)]
        outcomes = [SiteOutcome(i, n, UPDATED, 0.1) for i, n in enumerate(names)]
        now = time.time()
        ledger.record_round(RoundOutcome(number, now, now, reports, outcomes))
        per_round.append(time.perf_counter() - start)
        time.sleep(train_seconds)
    monitor.ended(pb.RUN_STATUS_FINISHED)
    return per_round


def _watch(stub: pb_grpc.ConsoleStub, token: str, ready: threading.Barrier, lags: list[float]) -> None:
    for event in stub.WatchRun(pb.WatchRunRequest(), metadata=bearer(token), timeout=600):
        if event.HasField("history_end"):
            ready.wait()
        elif event.HasField("round_started"):  # stamped when appended: the lag is the console's alone
            lags.append(time.time() - event.time.ToNanoseconds() / 1e9)


def measure(
    watchers: int, rounds: int, sites: int, console: bool, train_seconds: float
) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        monitor = RunMonitor(root)
        if not console:
            return round_loop(root, monitor, rounds, sites, train_seconds), []
        make_consortium_certs(root / "pki", ["127.0.0.1"])
        token = add_token(root / "tokens.json", "viewer", "viewer")
        tls = TLSFiles(cert=root / "pki" / "server.crt", key=root / "pki" / "server.key")
        with ConsoleServer(monitor, address="127.0.0.1:0", tokens=root / "tokens.json", tls=tls) as server:
            channel = open_channel(server.address, TLSFiles(ca=root / "pki" / "ca.crt"), insecure=False)
            stub = pb_grpc.ConsoleStub(channel)
            ready = threading.Barrier(watchers + 1)
            lags: list[list[float]] = [[] for _ in range(watchers)]
            threads = [threading.Thread(target=_watch, args=(stub, token, ready, lags[i])) for i in range(watchers)]
            for thread in threads:
                thread.start()
            ready.wait()
            per_round = round_loop(root, monitor, rounds, sites, train_seconds)
            for thread in threads:
                thread.join()
            channel.close()
        return per_round, [lag for each in lags for lag in each]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--sites", type=int, default=3)
    parser.add_argument("--train-seconds", type=float, default=0.5, help="pause between rounds (the training)")
    args = parser.parse_args()
    print(f"{args.rounds} rounds x {args.sites} sites, {args.train_seconds} s of 'training' each; the bookkeeping's "
          "ms per round (median, p95) and how late watchers got each event")
    for label, watchers, console in (("no console", 0, False), ("console, 0 watchers", 0, True),
                                     (f"console, {args.watchers} watchers", args.watchers, True)):
        per_round, lags = measure(watchers, args.rounds, args.sites, console, args.train_seconds)
        ms = sorted(1000 * s for s in per_round)
        line = f"  {label:<24} {statistics.median(ms):7.2f} ms  p95 {ms[int(0.95 * len(ms))]:7.2f} ms"
        if lags:
            lag_ms = sorted(1000 * s for s in lags)
            line += f"   lag median {statistics.median(lag_ms):6.1f} ms  p95 {lag_ms[int(0.95 * len(lag_ms))]:6.1f} ms"
        print(line, flush=True)


if __name__ == "__main__":
    main()
