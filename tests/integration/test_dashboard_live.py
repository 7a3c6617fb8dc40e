"""`fedsynth console` against a real gRPC server on a free port: snapshot, refusal, live run, reconnect, tmux.

The server is a minimal in-test console that replays a fixed list of events (it stands in for the real one,
whose own tests live beside it): its history, then HistoryEnd, then its live events.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from rich.console import Console

from server.dashboard.watch import DashboardOptions, run_dashboard
from shared.console.auth import token_from_metadata
from shared.console.v1 import console_pb2 as pb
from shared.console.v1 import console_pb2_grpc
from tests.conftest import require_tool
from tests.unit.test_dashboard_state import training_events

pytestmark = pytest.mark.timeout(60)

TOKEN = f"viewer-{uuid.uuid4().hex}"
REPO = Path(__file__).resolve().parents[2]
RUN_ENDED = pb.RunEnded(status=pb.RUN_STATUS_FINISHED, detail="all rounds trained", completed_rounds=3)


class FakeConsole(console_pb2_grpc.ConsoleServicer):
    """Replays ``history``, HistoryEnd and ``live``; with ``hold`` keeps the stream open until hung up."""

    def __init__(self, history: list[pb.RunEvent], live: Sequence[pb.RunEvent | pb.RunEnded] = (),
                 *, hold: bool = False, token: str = TOKEN) -> None:
        self.events = list(history) + [pb.RunEvent(sequence=len(history) + 1, history_end=pb.HistoryEnd(
            events=len(history)))]
        for item in live:
            event = pb.RunEvent(run_ended=item) if isinstance(item, pb.RunEnded) else item
            event.sequence = len(self.events) + 1
            self.events.append(event)
        self.hold, self.token = hold, token
        self.sent = threading.Event()
        self.watchers = 0

    def _check(self, context: grpc.ServicerContext) -> None:
        presented = token_from_metadata(context.invocation_metadata())
        if presented != self.token:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"token {presented} is not known here")

    def WatchRun(self, request: pb.WatchRunRequest, context: grpc.ServicerContext) -> Iterator[pb.RunEvent]:
        self._check(context)
        self.watchers += 1
        for event in self.events:
            yield event
            if request.history_only and event.HasField("history_end"):
                return
        self.sent.set()
        done = threading.Event()
        if self.hold and context.add_callback(done.set):
            done.wait()  # until the watcher hangs up or the server stops

    def GetRun(self, request: pb.GetRunRequest, context: grpc.ServicerContext) -> pb.Run:
        self._check(context)
        ended = any(e.HasField("run_ended") for e in self.events)
        done = sum(1 for e in self.events if e.HasField("round_finished"))
        return pb.Run(run_id="run-42", planned_rounds=10, completed_rounds=done,
                      status=pb.RUN_STATUS_FINISHED if ended else pb.RUN_STATUS_TRAINING)

    def ListSites(self, request: pb.ListSitesRequest, context: grpc.ServicerContext) -> pb.ListSitesResponse:
        self._check(context)
        done = sum(1 for e in self.events if e.HasField("round_finished"))
        return pb.ListSitesResponse(sites=[pb.Site(name="alpha", status=pb.SITE_STATUS_UPDATED, trust="local",
                                                   rounds_participated=done)])


@contextmanager
def serving(servicer: FakeConsole, port: int = 0) -> Iterator[int]:
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    console_pb2_grpc.add_ConsoleServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield bound
    finally:
        server.stop(grace=None).wait()


def options(port: int, **overrides: Any) -> DashboardOptions:
    settings: dict[str, Any] = {"address": f"127.0.0.1:{port}", "token": TOKEN, "tls": None, "insecure": True,
                                "once": False, "json": False, "refresh_seconds": 0.05,
                                "reconnect_max_seconds": 0.2, "connect_timeout_seconds": 2.0}
    settings.update(overrides)
    return DashboardOptions(**settings)


def recording() -> Console:
    return Console(record=True, width=120, file=io.StringIO())


def test_once_json_prints_the_snapshot(capsys: pytest.CaptureFixture[str]) -> None:
    with serving(FakeConsole(training_events(3), [RUN_ENDED])) as port:
        code = run_dashboard(options(port, once=True, json=True))

    out = capsys.readouterr().out
    snapshot = json.loads(out)
    assert code == 0
    assert [s["name"] for s in snapshot["sites"]] == ["alpha", "bravo", "charlie"]
    assert [s["status"] for s in snapshot["sites"]] == ["updated", "dropped", "refused"]
    assert snapshot["history_complete"] is True and snapshot["completed_rounds"] == 3
    # GetRun and ListSites are applied after the history: the fake says the run finished, alpha trusts no one.
    assert snapshot["sites"][0]["trust"] == "local" and snapshot["status"] == "finished"


def test_once_frame_is_drawn(capsys: pytest.CaptureFixture[str]) -> None:
    console = recording()
    with serving(FakeConsole(training_events(3))) as port:
        code = run_dashboard(options(port, once=True), console)

    text = console.export_text()
    assert code == 0 and "round 3/10" in text and "charlie" in text and "snapshot from 127.0.0.1" in text


@pytest.mark.parametrize("once", [True, False], ids=["once", "live"])
def test_a_refused_token_exits_2_without_printing_it(once: bool, capsys: pytest.CaptureFixture[str]) -> None:
    console = recording()
    with serving(FakeConsole(training_events(1), token="another-token")) as port:
        code = run_dashboard(options(port, once=once), console)

    captured = capsys.readouterr()
    assert code == 2
    assert f"the server at 127.0.0.1:{port} refused the token (UNAUTHENTICATED)" in captured.err
    assert "token <token> is not known here" in captured.err and "Check --token" in captured.err
    assert TOKEN not in captured.out + captured.err + console.export_text()


def test_once_against_no_server_exits_3_and_mentions_tls(capsys: pytest.CaptureFixture[str]) -> None:
    with serving(FakeConsole([])) as port:
        pass  # the port was free a moment ago and nothing listens on it now

    code = run_dashboard(options(port, once=True, json=True))

    err = capsys.readouterr().err
    assert code == 3 and "cannot reach the console at" in err and "--tls-ca" in err


def test_live_follows_the_run_to_its_end() -> None:
    console = recording()
    with serving(FakeConsole(training_events(3), [RUN_ENDED])) as port:
        code = run_dashboard(options(port), console)

    text = console.export_text()
    assert code == 0
    assert "finished" in text and "all rounds trained" in text and "run ended; disconnected" in text
    assert "alpha" in text and "dropped" in text and "round 3/10" in text


def test_live_reconnects_to_a_restarted_server_and_replays_its_history() -> None:
    console = recording()
    first = FakeConsole(training_events(2), hold=True)
    second = FakeConsole(training_events(3), [RUN_ENDED])
    outcome: list[int] = []
    with serving(first) as port:
        watcher = threading.Thread(target=lambda: outcome.append(run_dashboard(options(port), console)), daemon=True)
        watcher.start()
        assert first.sent.wait(timeout=10), "the dashboard never watched the first server"
    # The first server is gone mid-run; its successor on the same port starts its sequence over.
    with serving(second, port):
        watcher.join(timeout=15)

    text = console.export_text()
    assert not watcher.is_alive() and outcome == [0]
    assert second.watchers >= 1 and "round 3/10" in text and "finished" in text


def test_dashboard_draws_in_a_real_terminal_and_quits_on_ctrl_c(tmp_path: Path) -> None:
    require_tool("tmux", "apt-get install tmux to draw the dashboard in a real terminal")
    exit_file = tmp_path / "exit-code"
    with serving(FakeConsole(training_events(3), hold=True)) as port:
        script = tmp_path / "dashboard.py"
        script.write_text(
            f"import pathlib, sys\nsys.path.insert(0, {str(REPO)!r})\n"
            "from server.dashboard.watch import DashboardOptions, run_dashboard\n"
            f"code = run_dashboard(DashboardOptions(address='127.0.0.1:{port}', token={TOKEN!r}, tls=None, "
            "insecure=True, once=False, json=False, refresh_seconds=0.1))\n"
            f"pathlib.Path({str(exit_file)!r}).write_text(str(code))\n"
            "input()\n"  # keep the pane, and what the dashboard left on it, until the test has read it
        )
        tmux = ["tmux", "-L", f"fedsynth-test-{uuid.uuid4().hex[:12]}", "-f", "/dev/null"]
        # The pane inherits the tmux server's environment: a COLUMNS/LINES set by pytest would override its size.
        environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        subprocess.run([*tmux, "new-session", "-d", "-s", "dash", "-x", "120", "-y", "40", "-c", str(REPO),
                        f"{sys.executable} {script}"], check=True, env=environment)
        try:
            screen = _poll(tmux, lambda text: all(n in text for n in ("alpha", "bravo", "charlie", "connected to")))
            lines = screen.splitlines()
            assert any("bravo" in line and "dropped" in line for line in lines), screen
            assert any("round 3/10" in line for line in lines), screen
            assert f"connected to 127.0.0.1:{port}" in screen, screen

            subprocess.run([*tmux, "send-keys", "-t", "dash", "C-c"], check=True)
            screen = _poll(tmux, lambda _: exit_file.exists())
            assert exit_file.read_text() == "130" and "Traceback" not in screen, screen
        finally:
            subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)


def _poll(tmux: list[str], done: Callable[[str], bool], seconds: float = 10.0) -> str:
    """The pane's text once ``done`` says so, or at the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "dash"], capture_output=True, text=True,
                                check=False).stdout
        if done(screen) or time.monotonic() > deadline:
            return screen
        time.sleep(0.05)  # polling a terminal we do not control, up to a deadline
