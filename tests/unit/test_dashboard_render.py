"""One dashboard frame, drawn by rich into a recording console and read back as text."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from rich.console import Console

from server.dashboard.render import format_ago, render, sparkline
from server.dashboard.state import DashboardState
from shared.console.v1 import console_pb2 as pb
from tests.unit.test_dashboard_state import T0, finished_events, fold, training_events

NOW = T0 + timedelta(seconds=303)


def _draw(state: DashboardState, now: datetime = NOW, connection: str = "connected to 127.0.0.1:1") -> str:
    console = Console(record=True, width=120, force_terminal=True, color_system="truecolor")
    console.print(render(state, now, connection))
    return console.export_text()


def _line_of(text: str, needle: str) -> str:
    return next(line for line in text.splitlines() if needle in line)


def test_frame_shows_header_rows_trend_budgets_and_connection() -> None:
    text = _draw(fold(training_events(3)), connection="reconnecting in 2s (attempt 3): server unavailable")

    assert "run-42" in text and "training" in text
    assert "round 3/10" in text and "30%" in text and "ETA 2m 20s" in text and "elapsed 5m 03s" in text
    alpha = _line_of(text, "alpha")
    assert "updated" in alpha and "record 1.50/3.00 ████░░░░" in alpha
    assert "3s ago" in alpha and "7.0s" in alpha
    assert "site 1.20/10.00 █░░░░░░░" in text
    bravo = _line_of(text, "bravo")
    assert "dropped" in bravo and "never" in bravo and "no reply before the round" in bravo
    assert "refused" in _line_of(text, "charlie") and "non-finite update" in text
    assert "█▅▁" in text and "2 → 1" in text
    assert "record ε 3 δ 1e-05 (prv, σ 1.1)" in text
    assert "reconnecting in 2s (attempt 3): server unavailable" in text


def test_a_hostile_site_name_is_shown_literally() -> None:
    state = fold(training_events(0))
    hostile = "[bold red]x[/]"
    state.apply_event(pb.RunEvent(sequence=3, round_finished=pb.RoundFinished(
        round=1, planned_rounds=10, duration_seconds=1.0,
        sites=[pb.SiteRound(site=hostile, status=pb.SITE_STATUS_FAILED, reason="[link=http://x]y[/link]")])))

    text = _draw(state)

    assert hostile in text and "[link=http://x]y[/link]" in text


def test_an_empty_state_renders() -> None:
    text = _draw(DashboardState(), connection="connecting to 127.0.0.1:1…")

    assert "(not started)" in text and "round 0/?" in text and "none heard from yet" in text
    assert "no round has accepted an update yet" in text and "not known yet" in text


def test_a_finished_run_shows_its_end() -> None:
    text = _draw(fold(finished_events()), now=T0 + timedelta(hours=2))

    assert "finished" in text and "run ended" in text and "stopped by admin after round 3" in text
    assert "ETA —" in text and "elapsed 6m 40s" in text and "manifest sha256 abababab" in text


def test_sparkline_and_ago() -> None:
    assert sparkline([]) == "" and sparkline([1.0, 1.0]) == "▅▅" and sparkline([0.0, 0.5, 1.0]) == "▁▅█"
    assert format_ago(None, NOW) == "never" and format_ago(NOW + timedelta(seconds=2), NOW) == "just now"
    assert format_ago(NOW - timedelta(seconds=125), NOW) == "2m 05s ago"


def test_drawing_uses_the_time_given() -> None:
    state = fold(training_events(1))

    later = _draw(state, now=datetime(2025, 3, 1, 12, 10, 0, tzinfo=timezone.utc))

    assert "8m 20s ago" in _line_of(later, "alpha")
