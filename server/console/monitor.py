"""What the run is doing, as the console shows it: kept from the ServerApp's own steps, told as events.

The ServerApp calls ``started``, ``phase``, ``round_started`` / ``round_finished`` and ``ended``; each
updates the state that GetRun and ListSites read and appends an event to the log that WatchRun streams.
``round_finished`` takes the very record the consortium ledger has just written to ``rounds.json``, so a
finished run rebuilt from its folder (``server.console.history``) tells the same story as the live one.
A coordinator's StopRun lands in ``request_stop``; the strategy asks ``stop_reason`` before each round.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from server.console.events import EventLog
from server.round_outcome import DROPPED, FAILED, REFUSED, UPDATED, node_name
from shared.console.v1 import console_pb2 as pb
from shared.plan import TrainingPlan

__all__ = ["ENDED", "RunMonitor", "SpentSource", "budgets_of"]

# Per level ("record", "site"), per site: the cumulative epsilon the ledger holds now.
SpentSource = Callable[[], Mapping[str, Mapping[str, float]]]
ENDED = (pb.RUN_STATUS_FINISHED, pb.RUN_STATUS_STOPPED, pb.RUN_STATUS_FAILED)
_SITE_STATUS = {
    UPDATED: pb.SITE_STATUS_UPDATED, REFUSED: pb.SITE_STATUS_REFUSED, FAILED: pb.SITE_STATUS_FAILED,
    DROPPED: pb.SITE_STATUS_DROPPED,
}


@dataclass
class _Site:
    name: str
    node_id: int = 0
    status: int = pb.SITE_STATUS_IDLE
    rounds: int = 0
    last_round: int = 0
    last_seen: float | None = None
    last_reply: float | None = None
    trust: str = ""
    reason: str = ""


def budgets_of(plan: TrainingPlan) -> list[pb.Budget]:
    """The privacy budget per level, as the plan solved it."""
    budgets = [pb.Budget(level="record", target_epsilon=plan.target_epsilon, delta=plan.delta,
                         accountant=plan.accountant, noise_multiplier=plan.noise_multiplier)]
    if plan.site_dp != "off":
        budgets.append(pb.Budget(level="site", target_epsilon=plan.site_target_epsilon, delta=plan.delta,
                                 accountant=plan.accountant, noise_multiplier=plan.site_noise_multiplier))
    return budgets


class RunMonitor:
    """Thread-safe: the round loop writes, any number of console calls read."""

    def __init__(self, run_dir: Path, *, read_only: bool = False, spent: SpentSource | None = None) -> None:
        self.run_dir, self.read_only = run_dir, read_only
        self.log = EventLog()
        self._lock = threading.RLock()
        self._spent = spent or (lambda: {})
        self._run = pb.Run(status=pb.RUN_STATUS_PLANNING, read_only=read_only)
        self._durations: list[float] = []
        self._sites: dict[str, _Site] = {}
        self._skip_publish = False

    # ---- what the ServerApp tells it ------------------------------------------------------------------
    def spent_from(self, source: SpentSource) -> None:
        """Where ListSites reads epsilon spent now (the consortium ledger, once the plan exists)."""
        self._spent = source

    def started(self, plan: TrainingPlan, config: Mapping[str, Any], *, min_sites: int, at: float | None = None) -> None:
        with self._lock:
            self.log.run_id = plan.run_id
            self._run.run_id, self._run.planned_rounds = plan.run_id, plan.rounds
            self._run.started_at.CopyFrom(_stamp(at))
            self._run.config.update({str(k): str(v) for k, v in config.items()})
            self.plan_changed(plan)
            event = pb.RunEvent(run_started=pb.RunStarted(
                run_id=plan.run_id, planned_rounds=plan.rounds, budgets=budgets_of(plan), min_sites=min_sites,
            ))
            self._append(event, at)

    def plan_changed(self, plan: TrainingPlan) -> None:
        """Preprocessing can refine the plan (DP bins): GetRun then shows the one the sites train with."""
        with self._lock:
            self._run.plan_json = plan.to_json()
            del self._run.budgets[:]
            self._run.budgets.extend(budgets_of(plan))

    def phase(self, status: int, detail: str = "", at: float | None = None) -> None:
        with self._lock:
            if self._run.status in ENDED:
                return
            self._run.status, self._run.detail = status, detail  # type: ignore[assignment]
            if status != pb.RUN_STATUS_TRAINING:
                self._run.current_round = 0
            self._append(pb.RunEvent(phase_changed=pb.PhaseChanged(status=status, detail=detail)), at)  # type: ignore[arg-type]

    def round_started(self, server_round: int, sites: list[str], at: float | None = None) -> None:
        with self._lock:
            self._run.current_round = server_round
            for site in self._sites.values():
                site.status = pb.SITE_STATUS_IDLE
            for name in sites:
                self._site(name).status = pb.SITE_STATUS_TRAINING
            event = pb.RunEvent(round_started=pb.RoundStarted(
                round=server_round, planned_rounds=self._run.planned_rounds, sites=sites,
            ))
            self._append(event, at)

    def round_finished(self, record: Mapping[str, Any]) -> None:
        """Takes one ``rounds.json`` record (server.consortium), already on disk."""
        with self._lock:
            finished = _round_finished(record, self._run.planned_rounds, self._budget_by_level())
            started_at = float(record.get("started_at", time.time()))
            for outcome in finished.sites:
                self._apply(outcome, int(record["round"]), started_at, record)
            self._run.completed_rounds = max(self._run.completed_rounds, finished.round)
            self._run.current_round = 0
            self._durations.append(finished.duration_seconds)
            self._append(pb.RunEvent(round_finished=finished), started_at + finished.duration_seconds)

    def ended(self, status: int, detail: str = "", *, manifest_sha256: str = "", at: float | None = None) -> None:
        spent = self._spent()
        budgets = self._budget_by_level()
        with self._lock:
            if self._run.status in ENDED:
                return
            self._run.status, self._run.detail = status, detail  # type: ignore[assignment]
            self._run.current_round = 0
            self._run.manifest_sha256 = manifest_sha256
            self._run.finished_at.CopyFrom(_stamp(at))
            event = pb.RunEvent(run_ended=pb.RunEnded(
                status=status, detail=detail, completed_rounds=self._run.completed_rounds,  # type: ignore[arg-type]
                manifest_sha256=manifest_sha256,
                epsilon=[pb.EpsilonSpent(site=site, level=level, spent=float(value), budget=budgets.get(level, 0.0))
                         for level, per_site in spent.items() for site, value in sorted(per_site.items())],
            ))
            self._append(event, at)
        self.log.close()

    # ---- the coordinator's stop -----------------------------------------------------------------------
    def request_stop(self, reason: str, *, skip_publish: bool) -> pb.StopRunResponse:
        with self._lock:
            status = self._run.status
            if self.read_only:
                return pb.StopRunResponse(accepted=False, status=status,
                                          message="this console serves a finished run read-only; nothing to stop")
            if status in ENDED:
                return pb.StopRunResponse(accepted=False, status=status, message="the run has already ended")
            if self._run.stop_requested:
                return pb.StopRunResponse(accepted=False, status=status, message="a stop is already requested")
            self._run.stop_requested = True
            self._run.detail = f"stop requested: {reason}" if reason else "stop requested"
            self._skip_publish = skip_publish
            after = "without publishing" if skip_publish else "then publishes what the completed rounds trained"
            message = f"training stops before its next round, {after}"
            if status != pb.RUN_STATUS_TRAINING and status != pb.RUN_STATUS_PLANNING:
                message = "training is over; the run finishes its current step, then ends"
            return pb.StopRunResponse(accepted=True, status=status, message=message)

    def stop_reason(self) -> str | None:
        with self._lock:
            return self._run.detail if self._run.stop_requested else None

    @property
    def skip_publish(self) -> bool:
        with self._lock:
            return self._run.stop_requested and self._skip_publish

    # ---- what the console reads -----------------------------------------------------------------------
    def run(self) -> pb.Run:
        with self._lock:
            run = pb.Run()
            run.CopyFrom(self._run)
            left = self._run.planned_rounds - self._run.completed_rounds
            if self._durations and self._run.status not in ENDED:
                run.eta_seconds = fmean(self._durations[-10:]) * left
            return run

    def list_sites(self) -> pb.ListSitesResponse:
        spent = self._spent()
        budgets = self._budget_by_level()
        with self._lock:
            sites = []
            for site in sorted(self._sites.values(), key=lambda s: s.name):
                message = pb.Site(
                    name=site.name, node_id=site.node_id, status=site.status, rounds_participated=site.rounds,  # type: ignore[arg-type]
                    last_round=site.last_round, trust=site.trust, reason=site.reason,
                    epsilon=[pb.EpsilonSpent(site=site.name, level=level, spent=float(per_site[site.name]),
                                             budget=budgets.get(level, 0.0))
                             for level, per_site in spent.items() if site.name in per_site],
                )
                if site.last_seen is not None:
                    message.last_seen.CopyFrom(_stamp(site.last_seen))
                if site.last_reply is not None:
                    message.last_reply_seconds = site.last_reply
                sites.append(message)
            return pb.ListSitesResponse(sites=sites)

    def spent(self) -> Mapping[str, Mapping[str, float]]:
        return self._spent()

    def budgets(self) -> dict[str, float]:
        return self._budget_by_level()

    # ---- internals ------------------------------------------------------------------------------------
    def _append(self, event: pb.RunEvent, at: float | None) -> None:
        if at is not None:
            event.time.CopyFrom(_stamp(at))
        self.log.append(event)

    def _budget_by_level(self) -> dict[str, float]:
        return {b.level: b.target_epsilon for b in self._run.budgets}

    def _site(self, name: str) -> _Site:
        if name not in self._sites:
            self._sites[name] = _Site(name)
        return self._sites[name]

    def _apply(self, outcome: pb.SiteRound, server_round: int, started_at: float, record: Mapping[str, Any]) -> None:
        detail = record.get("sites", {}).get(outcome.site, {})
        node_id = int(detail.get("node_id", 0))
        if node_id and outcome.site != node_name(node_id):
            self._sites.pop(node_name(node_id), None)  # the node has said its site name: one row, not two
        site = self._site(outcome.site)
        site.status, site.reason = outcome.status, outcome.reason
        site.node_id = node_id or site.node_id
        site.trust = str(record.get("trust", {}).get(outcome.site, site.trust))
        if outcome.HasField("reply_seconds"):
            site.last_reply = outcome.reply_seconds
            site.last_seen = started_at + outcome.reply_seconds
        if outcome.status == pb.SITE_STATUS_UPDATED:
            site.rounds += 1
            site.last_round = server_round


def _round_finished(record: Mapping[str, Any], planned: int, budgets: Mapping[str, float]) -> pb.RoundFinished:
    """A ``rounds.json`` record as a RoundFinished event (records written before timings existed still work)."""
    losses: Mapping[str, float] = record.get("noisy_loss", {})
    details: Mapping[str, Mapping[str, Any]] = record.get("sites") or {name: {"status": UPDATED} for name in losses}
    sites = []
    for name in sorted(details):
        detail = details[name]
        site = pb.SiteRound(site=name, status=_SITE_STATUS.get(str(detail.get("status")), pb.SITE_STATUS_UNSPECIFIED),
                            reason=str(detail.get("reason", "")), node_id=int(detail.get("node_id", 0)))
        if detail.get("reply_s") is not None:
            site.reply_seconds = float(detail["reply_s"])
        if name in losses:
            site.noisy_loss = float(losses[name])
        sites.append(site)
    epsilon = [pb.EpsilonSpent(site=name, level=level, spent=float(value), budget=budgets.get(level, 0.0))
               for level, key in (("record", "epsilon"), ("site", "site_epsilon"))
               for name, value in sorted(record.get(key, {}).items())]
    finished = pb.RoundFinished(round=int(record["round"]), planned_rounds=planned,
                                duration_seconds=float(record.get("duration_s", 0.0)), sites=sites, epsilon=epsilon)
    if losses:
        finished.mean_noisy_loss = fmean(float(v) for v in losses.values())
    return finished


def _stamp(at: float | None) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int((time.time() if at is None else at) * 1e9))
    return stamp
