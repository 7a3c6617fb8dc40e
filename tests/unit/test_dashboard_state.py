"""The dashboard's fold: hand-built console events in, the rows, ETA, loss trend and JSON snapshot out."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

from server.dashboard.state import DashboardState
from shared.console.v1 import console_pb2 as pb

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
SITES = ("alpha", "bravo", "charlie")
DURATIONS = (10.0, 20.0, 30.0)
LOSSES = (2.0, 1.5, 1.0)


def _event(sequence: int, seconds: float, **kind: object) -> pb.RunEvent:
    moment = T0 + timedelta(seconds=seconds)
    return pb.RunEvent(sequence=sequence, time=moment, run_id="run-42", **kind)  # type: ignore[arg-type]


def _round_finished(round_: int) -> pb.RoundFinished:
    """alpha updated, bravo dropped, charlie refused; alpha and charlie spend epsilon."""
    return pb.RoundFinished(
        round=round_, planned_rounds=10, duration_seconds=DURATIONS[round_ - 1],
        sites=[pb.SiteRound(site="alpha", status=pb.SITE_STATUS_UPDATED, reply_seconds=4.0 + round_,
                            noisy_loss=LOSSES[round_ - 1]),
               pb.SiteRound(site="bravo", status=pb.SITE_STATUS_DROPPED, reason="no reply before the round closed"),
               pb.SiteRound(site="charlie", status=pb.SITE_STATUS_REFUSED, reply_seconds=6.0,
                            reason="non-finite update")],
        epsilon=[pb.EpsilonSpent(site="alpha", level="site", spent=0.4 * round_, budget=10.0),
                 pb.EpsilonSpent(site="alpha", level="record", spent=0.5 * round_, budget=3.0),
                 pb.EpsilonSpent(site="charlie", level="record", spent=0.5 * round_, budget=3.0)],
        mean_noisy_loss=LOSSES[round_ - 1],
    )


def training_events(rounds: int = 3) -> list[pb.RunEvent]:
    """A run of 10 planned rounds, ``rounds`` of them finished (each 100 s apart), still training."""
    budgets = [pb.Budget(level="site", target_epsilon=10.0, delta=1e-5, accountant="rdp", noise_multiplier=0.8),
               pb.Budget(level="record", target_epsilon=3.0, delta=1e-5, accountant="prv", noise_multiplier=1.1)]
    events = [_event(1, 0, run_started=pb.RunStarted(run_id="run-42", planned_rounds=10, budgets=budgets, min_sites=2)),
              _event(2, 1, phase_changed=pb.PhaseChanged(status=pb.RUN_STATUS_TRAINING, detail="round 1"))]
    for r in range(1, rounds + 1):
        events.append(_event(len(events) + 1, 100 * r - 50,
                             round_started=pb.RoundStarted(round=r, planned_rounds=10, sites=list(SITES))))
        events.append(_event(len(events) + 1, 100 * r, round_finished=_round_finished(r)))
    return events


def finished_events() -> list[pb.RunEvent]:
    """Three rounds, the history's end, then the run ends (stopped early, published)."""
    events = training_events(3)
    events.append(_event(len(events) + 1, 301, history_end=pb.HistoryEnd(events=len(events))))
    events.append(_event(len(events) + 1, 400, run_ended=pb.RunEnded(
        status=pb.RUN_STATUS_FINISHED, detail="stopped by admin after round 3", completed_rounds=3,
        manifest_sha256="ab" * 32)))
    return events


def fold(events: list[pb.RunEvent]) -> DashboardState:
    state = DashboardState()
    for event in events:
        state.apply_event(event)
    return state


def test_rows_show_each_sites_outcome_epsilon_and_last_reply() -> None:
    state = fold(training_events(3))

    alpha, bravo, charlie = state.sites
    assert [s.name for s in state.sites] == list(SITES)
    assert (alpha.status, bravo.status, charlie.status) == ("updated", "dropped", "refused")
    assert [level for level, _ in alpha.epsilon_levels()] == ["record", "site"]
    assert alpha.epsilon["record"].spent == 1.5 and alpha.epsilon["record"].budget == 3.0
    assert alpha.last_seen == T0 + timedelta(seconds=300) and alpha.reply_seconds == 7.0
    assert bravo.last_seen is None and bravo.reply_seconds is None and bravo.epsilon == {}
    assert bravo.reason == "no reply before the round closed" and charlie.reason == "non-finite update"
    assert (alpha.rounds_participated, bravo.rounds_participated, charlie.rounds_participated) == (3, 0, 0)  # accepted updates only
    assert (state.run_id, state.status, state.planned_rounds, state.completed_rounds) == ("run-42", "training", 10, 3)
    assert [b.level for b in state.budgets] == ["record", "site"]


def test_round_started_marks_asked_sites_training_and_the_rest_idle() -> None:
    events = training_events(1)
    events.append(_event(5, 150, round_started=pb.RoundStarted(round=2, planned_rounds=10, sites=["alpha"])))

    state = fold(events)

    assert [s.status for s in state.sites] == ["training", "idle", "idle"]
    assert state.current_round == 2 and state.completed_rounds == 1
    assert state.site_rows["charlie"].reason == ""


def test_eta_is_mean_round_duration_times_rounds_left_and_prefers_the_servers() -> None:
    state = fold(training_events(3))
    assert state.eta_seconds == 20.0 * 7

    state.apply_run(pb.Run(run_id="run-42", status=pb.RUN_STATUS_TRAINING, planned_rounds=10, completed_rounds=3,
                           eta_seconds=99.0))
    assert state.eta_seconds == 99.0

    state.apply_event(_event(9, 350, round_started=pb.RoundStarted(round=4, planned_rounds=10, sites=["alpha"])))
    state.apply_event(_event(10, 400, round_finished=pb.RoundFinished(round=4, planned_rounds=10,
                                                                      duration_seconds=40.0)))
    assert state.eta_seconds == 25.0 * 6  # the server's estimate predates round 4


def test_eta_is_unknown_before_any_round_and_after_the_end() -> None:
    assert fold(training_events(0)).eta_seconds is None
    assert fold(finished_events()).eta_seconds is None


def test_loss_trend_and_round_durations_follow_the_rounds() -> None:
    state = fold(training_events(3))

    assert state.loss_trend == list(LOSSES)
    assert [(f.round, f.duration_seconds) for f in state.round_figures] == [(1, 10.0), (2, 20.0), (3, 30.0)]


def test_run_end_and_history_end_are_recorded() -> None:
    state = fold(finished_events())

    assert state.ended and state.history_complete and state.history_events == 8
    assert state.status == "finished" and state.detail == "stopped by admin after round 3"
    assert state.finished_at == T0 + timedelta(seconds=400)
    assert state.elapsed_seconds(T0 + timedelta(days=1)) == 400.0


def test_to_json_is_plain_json_with_iso_times_and_no_nan() -> None:
    events = finished_events()
    events[3].round_finished.duration_seconds = math.nan  # a broken figure must not make invalid JSON
    state = fold(events)

    snapshot = state.to_json()
    text = json.dumps(snapshot, allow_nan=False)

    assert json.loads(text) == snapshot
    assert snapshot["started_at"] == "2025-03-01T12:00:00Z"
    assert snapshot["rounds"][0] == {"round": 1, "duration_seconds": None, "mean_noisy_loss": 2.0}
    assert [s["name"] for s in snapshot["sites"]] == list(SITES)
    assert snapshot["sites"][0]["epsilon"][0] == {"level": "record", "spent": 1.5, "budget": 3.0}
    assert snapshot["sites"][0]["last_seen"] == "2025-03-01T12:05:00Z"
    assert snapshot["current_round"] is None and snapshot["eta_seconds"] is None and snapshot["ended"] is True


def test_reset_forgets_everything_and_sequence_one_resets_by_itself() -> None:
    state = fold(finished_events())
    state.reset()
    assert state == DashboardState()

    restarted = fold(training_events(3) + training_events(1))

    assert restarted.completed_rounds == 1 and restarted.site_rows["alpha"].rounds_participated == 1


def test_duplicate_events_are_ignored() -> None:
    events = training_events(3)

    state = fold(events + events[2:])

    assert state.site_rows["alpha"].rounds_participated == 3 and state.last_sequence == len(events)


def test_site_snapshot_and_later_rounds_add_up_without_double_counting() -> None:
    state = fold(training_events(2))
    seen = T0 + timedelta(seconds=222)
    state.apply_sites(pb.ListSitesResponse(sites=[pb.Site(
        name="alpha", status=pb.SITE_STATUS_UPDATED, rounds_participated=2, last_seen=seen, last_reply_seconds=3.5,
        epsilon=[pb.EpsilonSpent(site="alpha", level="record", spent=1.0, budget=3.0)], trust="local")]))
    assert state.site_rows["alpha"].rounds_participated == 2 and state.site_rows["alpha"].last_seen == seen

    state.apply_event(_event(7, 250, round_started=pb.RoundStarted(round=3, planned_rounds=10, sites=list(SITES))))
    state.apply_event(_event(8, 300, round_finished=_round_finished(3)))

    alpha = state.site_rows["alpha"]
    assert alpha.rounds_participated == 3 and alpha.trust == "local" and alpha.reply_seconds == 7.0


def test_a_node_shown_before_it_said_its_name_becomes_that_site() -> None:
    state = DashboardState()
    state.apply_event(pb.RunEvent(sequence=1, round_started=pb.RoundStarted(round=1, planned_rounds=3, sites=["node-42"])))
    assert [row.name for row in state.sites] == ["node-42"]

    state.apply_event(pb.RunEvent(sequence=2, round_finished=pb.RoundFinished(
        round=1, planned_rounds=3, sites=[pb.SiteRound(site="site-a", node_id=42, status=pb.SITE_STATUS_UPDATED)])))

    assert [row.name for row in state.sites] == ["site-a"]
