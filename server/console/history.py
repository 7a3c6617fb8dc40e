"""A finished run, rebuilt from its folder, for ``fedsynth console serve RUN_DIR`` (read-only).

The story comes from the files the run signed or kept: ``plan.json`` (budgets, rounds), ``rounds.json``
(each round's sites, timings, noisy losses and epsilon, exactly the records the live console announced),
``ledger.json`` (epsilon now, evaluation included) and ``manifest.json`` (published or not).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from server.console.monitor import RunMonitor
from server.consortium import ROUNDS_FILE
from shared.console.v1 import console_pb2 as pb
from shared.errors import ConfigError
from shared.ledger import Ledger
from shared.manifest import MANIFEST_NAME
from shared.plan import TrainingPlan

__all__ = ["monitor_from_run_dir", "replay_rounds"]


def monitor_from_run_dir(run_dir: Path) -> RunMonitor:
    """A read-only monitor whose history replays the run in ``run_dir``."""
    plan_path = run_dir / "plan.json"
    if not plan_path.is_file():
        raise ConfigError(f"{run_dir} is not a fedsynth run folder (no plan.json); pass the folder a run wrote")
    plan = TrainingPlan.from_json(plan_path.read_text())
    ledger_path = run_dir / "ledger.json"

    def spent() -> Mapping[str, Mapping[str, float]]:
        if not ledger_path.is_file():
            return {}
        ledger = Ledger.load(ledger_path)
        return {level: {site: ledger.spent(site, level) for site in ledger.sites() if ledger.entries_for(site, level)}
                for level in ("record", "site")}

    rounds = _rounds(run_dir / ROUNDS_FILE)
    monitor = RunMonitor(run_dir, read_only=True, spent=spent)
    first = float(rounds[0].get("started_at", plan_path.stat().st_mtime)) if rounds else plan_path.stat().st_mtime
    monitor.started(plan, {}, min_sites=plan.secagg_threshold or 1, at=first)
    monitor.phase(pb.RUN_STATUS_TRAINING, at=first)
    replay_rounds(monitor, rounds)
    manifest = run_dir / MANIFEST_NAME
    if manifest.is_file():
        data = manifest.read_bytes()
        done = json.loads(data)
        status = pb.RUN_STATUS_FINISHED if done.get("rounds") == done.get("rounds_planned") else pb.RUN_STATUS_STOPPED
        detail = f"published {done.get('rows', 0)} synthetic rows after {done.get('rounds')} of {done.get('rounds_planned')} rounds"
        monitor.ended(status, detail, manifest_sha256=hashlib.sha256(data).hexdigest(), at=manifest.stat().st_mtime)
    else:
        last = rounds[-1] if rounds else {}
        at = float(last.get("started_at", first)) + float(last.get("duration_s", 0.0))
        monitor.ended(pb.RUN_STATUS_STOPPED, "not published: the run stopped, failed, or is still running elsewhere",
                      at=at)
    return monitor


def replay_rounds(monitor: RunMonitor, rounds: list[dict[str, Any]]) -> None:
    """Announce recorded rounds again, as they happened (a served folder, or a resumed run's earlier rounds)."""
    for record in rounds:
        started_at = record.get("started_at")
        monitor.round_started(int(record["round"]), sorted(record.get("sites") or record.get("noisy_loss", {})),
                              at=None if started_at is None else float(started_at))
        monitor.round_finished(record)


def _rounds(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    try:
        rounds = json.loads(path.read_text())["rounds"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is unreadable ({type(exc).__name__}); the run's round history is lost") from None
    if not isinstance(rounds, list):
        raise ConfigError(f"{path}: 'rounds' must be a list")
    return rounds
