"""What the dashboard shows, folded from the console's events and snapshots; no I/O, no clock.

``DashboardState`` is fed, in the order they arrive, the ``RunEvent``s of ``WatchRun`` (``apply_event``) and
optionally the snapshots of ``GetRun`` (``apply_run``) and ``ListSites`` (``apply_sites``). What is applied
last wins for a value (a status, a time, an epsilon); counters are kept so that a snapshot and the events that
follow it add up instead of counting a round twice.

A watcher that reconnects to a restarted server receives the whole history again, from sequence 1: it calls
``reset()`` (or the state resets itself when sequence 1 follows a later one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from shared.console.v1 import console_pb2 as pb

__all__ = ["Budget", "DashboardState", "EpsilonFigure", "RoundFigures", "SiteRow", "run_status_words",
           "site_status_words"]

RECORD_LEVEL = "record"
_TERMINAL = frozenset({pb.RUN_STATUS_FINISHED, pb.RUN_STATUS_STOPPED, pb.RUN_STATUS_FAILED})
# "Rounds" counts rounds with an accepted update, as the server's ListSites does (the two are added up).
_REPLIED = frozenset({pb.SITE_STATUS_UPDATED})


def _words(enum: Any, prefix: str, value: int) -> str:
    if value == 0:
        return "unknown"
    try:
        return str(enum.Name(value)).removeprefix(prefix).lower()
    except ValueError:  # a newer server's status: show it rather than fail
        return f"status {value}"


def run_status_words(status: int) -> str:
    """A ``RunStatus`` in words: ``RUN_STATUS_TRAINING`` -> ``"training"``."""
    return _words(pb.RunStatus, "RUN_STATUS_", status)


def site_status_words(status: int) -> str:
    """A ``SiteStatus`` in words: ``SITE_STATUS_DROPPED`` -> ``"dropped"``."""
    return _words(pb.SiteStatus, "SITE_STATUS_", status)


def level_order(level: str) -> tuple[bool, str]:
    """Sort key that puts the record level first, then the others by name."""
    return (level != RECORD_LEVEL, level)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _time(stamp: Timestamp) -> datetime | None:
    if stamp.seconds == 0 and stamp.nanos == 0:
        return None
    moment: datetime = stamp.ToDatetime(tzinfo=timezone.utc)
    return moment


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Budget:
    """One privacy level's budget, as planned."""

    level: str
    target_epsilon: float
    delta: float
    accountant: str
    noise_multiplier: float

    @classmethod
    def from_proto(cls, budget: pb.Budget) -> Budget:
        return cls(budget.level, budget.target_epsilon, budget.delta, budget.accountant, budget.noise_multiplier)


@dataclass(frozen=True)
class EpsilonFigure:
    """Cumulative epsilon a site spent at one level, against that level's budget."""

    spent: float
    budget: float


@dataclass(frozen=True)
class RoundFigures:
    """What one finished round released: its duration and the mean noisy loss (None: no update accepted)."""

    round: int
    duration_seconds: float | None
    mean_noisy_loss: float | None


@dataclass
class SiteRow:
    """One site as the dashboard shows it."""

    name: str
    status: str = "unknown"
    epsilon: dict[str, EpsilonFigure] = field(default_factory=dict)
    last_seen: datetime | None = None
    reply_seconds: float | None = None
    reason: str = ""
    trust: str = ""
    # Rounds the site answered in, from the events; a ListSites count covers the rounds up to server_as_of.
    event_rounds: set[int] = field(default_factory=set)
    server_rounds: int | None = None
    server_as_of: int = 0

    @property
    def rounds_participated(self) -> int:
        """Rounds the site answered in (its update accepted, refused or failed)."""
        if self.server_rounds is None:
            return len(self.event_rounds)
        return self.server_rounds + sum(1 for r in self.event_rounds if r > self.server_as_of)

    def epsilon_levels(self) -> list[tuple[str, EpsilonFigure]]:
        """The epsilon figures, record level first."""
        return sorted(self.epsilon.items(), key=lambda item: level_order(item[0]))


@dataclass
class DashboardState:
    """The run as the dashboard shows it; see the module docstring for how it is fed."""

    run_id: str = ""
    status: str = "unknown"
    detail: str = ""
    planned_rounds: int = 0
    completed_rounds: int = 0
    current_round: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    budgets: list[Budget] = field(default_factory=list)
    manifest_sha256: str = ""
    history_complete: bool = False
    history_events: int = 0
    ended: bool = False
    last_sequence: int = 0
    rounds: dict[int, RoundFigures] = field(default_factory=dict)
    site_rows: dict[str, SiteRow] = field(default_factory=dict)
    # GetRun's ETA holds until the next round finishes (it was computed before that round).
    _run_eta: float | None = field(default=None, init=False, repr=False)

    def reset(self) -> None:
        """Forget everything: the history is about to be replayed from the start."""
        fresh = DashboardState()
        for item in fields(self):
            setattr(self, item.name, getattr(fresh, item.name))

    # ---- events -------------------------------------------------------------------------------------
    def apply_event(self, event: pb.RunEvent) -> None:
        """Fold one ``RunEvent``; a duplicate (sequence not past the last one) is ignored."""
        if event.sequence and self.last_sequence and event.sequence <= self.last_sequence:
            if event.sequence != 1:
                return
            self.reset()  # sequence 1 again: a restarted server replays its history
        self.last_sequence = max(self.last_sequence, event.sequence)
        if event.run_id:
            self.run_id = event.run_id
        moment = _time(event.time) if event.HasField("time") else None
        kind = event.WhichOneof("kind")
        if kind == "run_started":
            self._run_started(event.run_started, moment)
        elif kind == "phase_changed":
            self.status = run_status_words(event.phase_changed.status)
            self.detail = event.phase_changed.detail
        elif kind == "round_started":
            self._round_started(event.round_started)
        elif kind == "round_finished":
            self._round_finished(event.round_finished, moment)
        elif kind == "run_ended":
            self._run_ended(event.run_ended, moment)
        elif kind == "history_end":
            self.history_complete = True
            self.history_events = event.history_end.events

    def _run_started(self, started: pb.RunStarted, moment: datetime | None) -> None:
        self.run_id = started.run_id or self.run_id
        self.planned_rounds = started.planned_rounds or self.planned_rounds
        if started.budgets:
            self.budgets = sorted((Budget.from_proto(b) for b in started.budgets), key=lambda b: level_order(b.level))
        self.started_at = moment or self.started_at

    def _round_started(self, started: pb.RoundStarted) -> None:
        self.current_round = started.round
        self.planned_rounds = started.planned_rounds or self.planned_rounds
        if not self.ended:
            self.status = run_status_words(pb.RUN_STATUS_TRAINING)  # rounds are only trained in this phase
        asked = set(started.sites)
        for name in asked:
            self._row(name).status = site_status_words(pb.SITE_STATUS_TRAINING)
        for name, row in self.site_rows.items():
            if name not in asked:
                row.status, row.reason = site_status_words(pb.SITE_STATUS_IDLE), ""

    def _round_finished(self, finished: pb.RoundFinished, moment: datetime | None) -> None:
        for reply in finished.sites:
            self._named(reply.node_id, reply.site)
            row = self._row(reply.site)
            row.status, row.reason = site_status_words(reply.status), reply.reason
            if reply.HasField("reply_seconds"):
                row.reply_seconds = _finite(reply.reply_seconds)
                row.last_seen = moment or row.last_seen
            if reply.status in _REPLIED:
                row.event_rounds.add(finished.round)
        for spent in finished.epsilon:
            self._row(spent.site).epsilon[spent.level] = EpsilonFigure(spent.spent, spent.budget)
        loss = finished.mean_noisy_loss if finished.HasField("mean_noisy_loss") else None
        self.rounds[finished.round] = RoundFigures(finished.round, _finite(finished.duration_seconds), _finite(loss))
        self.planned_rounds = finished.planned_rounds or self.planned_rounds
        self.completed_rounds = max(self.completed_rounds, finished.round)
        if self.current_round == finished.round:
            self.current_round = 0
        self._run_eta = None

    def _run_ended(self, ended: pb.RunEnded, moment: datetime | None) -> None:
        self.ended = True
        self.status = run_status_words(ended.status)
        self.detail = ended.detail
        self.completed_rounds = max(self.completed_rounds, ended.completed_rounds)
        self.current_round = 0
        self.manifest_sha256 = ended.manifest_sha256 or self.manifest_sha256
        self.finished_at = moment or self.finished_at
        for spent in ended.epsilon:  # the final figures, the evaluation release included
            self._row(spent.site).epsilon[spent.level] = EpsilonFigure(spent.spent, spent.budget)

    # ---- snapshots ----------------------------------------------------------------------------------
    def apply_run(self, run: pb.Run) -> None:
        """Fold a ``GetRun`` snapshot."""
        self.run_id = run.run_id or self.run_id
        if run.status:
            self.status = run_status_words(run.status)
            self.ended = self.ended or run.status in _TERMINAL
        self.detail = run.detail or self.detail
        self.planned_rounds = run.planned_rounds or self.planned_rounds
        self.completed_rounds = max(self.completed_rounds, run.completed_rounds)
        self.current_round = run.current_round
        self.started_at = _time(run.started_at) or self.started_at
        self.finished_at = _time(run.finished_at) or self.finished_at
        self._run_eta = _finite(run.eta_seconds) if run.HasField("eta_seconds") else None
        if run.budgets:
            self.budgets = sorted((Budget.from_proto(b) for b in run.budgets), key=lambda b: level_order(b.level))
        self.manifest_sha256 = run.manifest_sha256 or self.manifest_sha256

    def apply_sites(self, response: pb.ListSitesResponse) -> None:
        """Fold a ``ListSites`` snapshot."""
        for site in response.sites:
            self._named(site.node_id, site.name)
            row = self._row(site.name or f"node-{site.node_id}")
            if site.status:
                row.status = site_status_words(site.status)
            row.server_rounds, row.server_as_of = site.rounds_participated, self.completed_rounds
            row.last_seen = _time(site.last_seen) or row.last_seen
            if site.HasField("last_reply_seconds"):
                row.reply_seconds = _finite(site.last_reply_seconds)
            for spent in site.epsilon:
                row.epsilon[spent.level] = EpsilonFigure(spent.spent, spent.budget)
            row.reason, row.trust = site.reason, site.trust or row.trust

    def _named(self, node_id: int, name: str) -> None:
        """A node shown as ``node-<id>`` before it said its site name is that site: one row, not two."""
        placeholder = f"node-{node_id}"
        if node_id and name and name != placeholder:
            self.site_rows.pop(placeholder, None)

    def _row(self, name: str) -> SiteRow:
        if name not in self.site_rows:
            self.site_rows[name] = SiteRow(name)
        return self.site_rows[name]

    # ---- views --------------------------------------------------------------------------------------
    @property
    def sites(self) -> list[SiteRow]:
        """The sites, by name."""
        return [self.site_rows[name] for name in sorted(self.site_rows)]

    @property
    def round_figures(self) -> list[RoundFigures]:
        """The finished rounds, in order."""
        return [self.rounds[r] for r in sorted(self.rounds)]

    @property
    def loss_trend(self) -> list[float]:
        """The mean noisy loss of each finished round that accepted an update, in round order."""
        return [f.mean_noisy_loss for f in self.round_figures if f.mean_noisy_loss is not None]

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left while training: the server's estimate, else mean round duration x rounds left."""
        if self.ended or self.status != run_status_words(pb.RUN_STATUS_TRAINING):
            return None
        if self._run_eta is not None:
            return self._run_eta
        durations = [f.duration_seconds for f in self.round_figures if f.duration_seconds is not None]
        if not durations or not self.planned_rounds:
            return None
        return sum(durations) / len(durations) * max(self.planned_rounds - self.completed_rounds, 0)

    def elapsed_seconds(self, now: datetime) -> float | None:
        """Seconds since the run started, until it finished (or ``now``); None before it started."""
        if self.started_at is None:
            return None
        return max((self.finished_at or now) - self.started_at, timedelta(0)).total_seconds()

    def to_json(self) -> dict[str, Any]:
        """A snapshot in plain JSON types (times: ISO-8601 UTC; unknown numbers: null, never NaN).

        Keys: ``run_id``, ``status`` (in words), ``detail``, ``ended``, ``history_complete``, ``last_sequence``,
        ``planned_rounds``, ``completed_rounds``, ``current_round`` (null when none is trained),
        ``started_at``, ``finished_at``, ``eta_seconds``, ``manifest_sha256``, ``budgets`` (list of
        ``level``, ``target_epsilon``, ``delta``, ``accountant``, ``noise_multiplier``), ``sites`` (list, by
        name, of ``name``, ``status``, ``epsilon`` (list, record level first, of ``level``, ``spent``,
        ``budget``), ``last_seen``, ``reply_seconds``, ``rounds_participated``, ``reason``, ``trust``) and
        ``rounds`` (list of ``round``, ``duration_seconds``, ``mean_noisy_loss``).
        """
        return {
            "run_id": self.run_id,
            "status": self.status,
            "detail": self.detail,
            "ended": self.ended,
            "history_complete": self.history_complete,
            "last_sequence": self.last_sequence,
            "planned_rounds": self.planned_rounds,
            "completed_rounds": self.completed_rounds,
            "current_round": self.current_round or None,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "eta_seconds": _finite(self.eta_seconds),
            "manifest_sha256": self.manifest_sha256,
            "budgets": [{"level": b.level, "target_epsilon": _finite(b.target_epsilon), "delta": _finite(b.delta),
                         "accountant": b.accountant, "noise_multiplier": _finite(b.noise_multiplier)}
                        for b in self.budgets],
            "sites": [_site_json(row) for row in self.sites],
            "rounds": [{"round": f.round, "duration_seconds": f.duration_seconds, "mean_noisy_loss": f.mean_noisy_loss}
                       for f in self.round_figures],
        }


def _site_json(row: SiteRow) -> dict[str, Any]:
    return {
        "name": row.name,
        "status": row.status,
        "epsilon": [{"level": level, "spent": _finite(fig.spent), "budget": _finite(fig.budget)}
                    for level, fig in row.epsilon_levels()],
        "last_seen": _iso(row.last_seen),
        "reply_seconds": row.reply_seconds,
        "rounds_participated": row.rounds_participated,
        "reason": row.reason,
        "trust": row.trust,
    }
