"""`fedsynth console`: watch a run through the coordinator's console API, live or as one snapshot.

Live, the dashboard follows ``WatchRun`` (the history, then each event as it happens) and redraws the frame;
when the server goes away it says so, backs off and reconnects until the run ends or the user presses Ctrl-C.
A restarted server replays its history from sequence 1, so the state is folded afresh on every connection.

Exit codes: 0 the run ended (live) or the snapshot was printed (``--once``); 1 the server answered with an
unexpected error; 2 bad settings, or the server refused the token; 3 ``--once`` could not reach the server;
130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import logging
import math
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import grpc
from rich.console import Console
from rich.live import Live

from server.dashboard.render import render
from server.dashboard.state import DashboardState
from shared.console.auth import bearer
from shared.console.transport import TLSFiles, open_channel
from shared.console.v1 import console_pb2 as pb
from shared.console.v1.console_pb2_grpc import ConsoleStub
from shared.errors import ConfigError

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_REFUSED", "EXIT_UNREACHABLE", "DashboardOptions",
           "run_dashboard"]

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_REFUSED = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

_PROG = "fedsynth console"
_FIRST_BACKOFF_SECONDS = 0.5
# A history-only call streams every event so far: a long run's history may take longer than one unary call.
_HISTORY_TIMEOUT_FACTOR = 6
_NOT_CONSOLE = "check --address: it must be the console's port (run config console.address, or `fedsynth console serve --address`), not one of Flower's own ports"


@dataclass(frozen=True)
class DashboardOptions:
    """What ``fedsynth console`` was asked to do; the token is left out of the repr."""

    address: str
    token: str = field(repr=False)
    tls: TLSFiles | None
    insecure: bool
    once: bool
    json: bool
    refresh_seconds: float = 0.5
    reconnect_max_seconds: float = 5.0
    connect_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        if not self.token.strip():
            raise ConfigError("--token is empty: pass the viewer or admin token the console server issued")
        if self.json and not self.once:
            raise ConfigError("--json needs --once: the live dashboard draws on the terminal; add --once")
        for name in ("refresh_seconds", "reconnect_max_seconds", "connect_timeout_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"dashboard option {name} must be a positive number of seconds, got {value}")


class _Fatal(Exception):
    """An outcome that ends the dashboard: the exit code and what to tell the user on stderr."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def run_dashboard(options: DashboardOptions, console: Console | None = None) -> int:
    """Show the run at ``options.address``; returns the exit code (see the module docstring)."""
    console = console or Console()
    try:
        if options.once:
            return _snapshot(options, console)
        return _LiveDashboard(options, console).run()
    except _Fatal as fatal:
        print(fatal.message, file=sys.stderr)
        return fatal.code
    except ConfigError as exc:
        message = str(exc)
        print(message if message.startswith(_PROG) else f"{_PROG}: {message}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _snapshot(options: DashboardOptions, console: Console) -> int:
    """``--once``: the history so far, then the run and site snapshots, printed as JSON or as one frame."""
    state = DashboardState()
    metadata, timeout = bearer(options.token), options.connect_timeout_seconds
    channel = open_channel(options.address, options.tls, options.insecure, who=_PROG)
    try:
        stub = ConsoleStub(channel)
        for event in stub.WatchRun(pb.WatchRunRequest(history_only=True), metadata=metadata,
                                   timeout=timeout * _HISTORY_TIMEOUT_FACTOR):
            state.apply_event(event)
        # Applied after the history: the snapshots are newer than every event in it.
        state.apply_run(stub.GetRun(pb.GetRunRequest(), metadata=metadata, timeout=timeout))
        state.apply_sites(stub.ListSites(pb.ListSitesRequest(), metadata=metadata, timeout=timeout))
    except grpc.RpcError as err:
        raise _snapshot_failure(err, options) from None
    finally:
        channel.close()
    if options.json:
        sys.stdout.write(json.dumps(state.to_json(), indent=2, allow_nan=False) + "\n")
        sys.stdout.flush()
    else:
        console.print(render(state, datetime.now(timezone.utc), f"snapshot from {options.address}"))
    return EXIT_OK


def _code(err: Any) -> grpc.StatusCode | None:
    code = getattr(err, "code", None)
    return code() if callable(code) else None


def _detail(err: Any, token: str) -> str:
    details = getattr(err, "details", None)
    text = (details() if callable(details) else None) or "no detail given"
    # The server should never echo a token, but the detail goes to a terminal and maybe a log: make sure.
    return str(text).replace(token, "<token>") if token else str(text)


def _refusal(err: Any, options: DashboardOptions) -> _Fatal | None:
    """The fatal outcome for an error no retry can fix (token refused, not a console); None otherwise."""
    code, detail, where = _code(err), _detail(err, options.token), options.address
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return _Fatal(EXIT_REFUSED, f"{_PROG}: the server at {where} refused the token (UNAUTHENTICATED): "
                                    f"{detail}. Check --token: it must be a token from the tokens file this console "
                                    "server uses (`fedsynth console token add FILE NAME` makes one).")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return _Fatal(EXIT_REFUSED, f"{_PROG}: the server at {where} does not let this token watch the run "
                                    f"(PERMISSION_DENIED): {detail}. Use a viewer or admin token this server "
                                    "issued.")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return _Fatal(EXIT_ERROR, f"{_PROG}: the server at {where} does not serve the fedsynth console "
                                  f"(UNIMPLEMENTED: {detail}); {_NOT_CONSOLE}.")
    return None


def _snapshot_failure(err: Any, options: DashboardOptions) -> _Fatal:
    refusal = _refusal(err, options)
    if refusal is not None:
        return refusal
    code, detail, where = _code(err), _detail(err, options.token), options.address
    if code == grpc.StatusCode.UNAVAILABLE:
        hint = ("is the console server running and listening there? If it is, the TLS handshake may have "
                "failed: pass --tls-ca with the CA that signed the server's certificate (ca.crt, "
                "written by `fedsynth certs`), or --insecure for a plaintext console on a loopback address")
        return _Fatal(EXIT_UNREACHABLE, f"{_PROG}: cannot reach the console at {where} (UNAVAILABLE: {detail}); "
                                        f"{hint}.")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return _Fatal(EXIT_UNREACHABLE, f"{_PROG}: the console at {where} did not answer in time "
                                        f"(DEADLINE_EXCEEDED: {detail}); check that the server is up and "
                                        f"reachable, or raise the connect timeout.")
    name = code.name if code is not None else "an error"
    return _Fatal(EXIT_ERROR, f"{_PROG}: the console at {where} answered {name}: {detail}.")


def _reason(err: Any, token: str) -> str:
    """Why a stream broke, short enough for the connection line."""
    code = _code(err)
    if code == grpc.StatusCode.UNAVAILABLE:
        return "server unavailable"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "the server did not answer in time"
    if code == grpc.StatusCode.CANCELLED:
        return "the server cancelled the stream"
    name = code.name if code is not None else "error"
    return f"{name}: {_detail(err, token)[:80]}"


def _pump(call: Any, inbox: queue.Queue[object]) -> None:
    """Move the stream's events into ``inbox``, then the error that broke it or None for its end."""
    try:
        for event in call:
            inbox.put(event)
    except grpc.RpcError as err:
        inbox.put(err)
    else:
        inbox.put(None)


@dataclass(frozen=True)
class _Outcome:
    """How one connection ended: the run ended, or why to reconnect (and whether it got anywhere)."""

    ended: bool = False
    progressed: bool = False
    reason: str = ""


class _LiveDashboard:
    """The live loop: connect, fold and draw, back off and reconnect; the state lives as long as the loop."""

    def __init__(self, options: DashboardOptions, console: Console) -> None:
        self._options = options
        self._console = console
        self._metadata = bearer(options.token)
        self._state = DashboardState()
        self._connection = f"connecting to {options.address}…"
        self._live: Live | None = None
        self._last_shown = -math.inf

    def run(self) -> int:
        with Live(console=self._console, auto_refresh=False, redirect_stdout=False,
                  redirect_stderr=False) as live:
            self._live = live
            self._show(force=True)
            attempt = 0
            while True:
                outcome = self._watch_once()
                if outcome.ended:
                    self._connection = f"run ended; disconnected from {self._options.address}"
                    self._show(force=True)
                    return EXIT_OK
                # A connection that delivered events was fine until it broke: start the backoff over.
                attempt = 1 if outcome.progressed else attempt + 1
                self._back_off(attempt, outcome.reason)

    def _watch_once(self) -> _Outcome:
        options = self._options
        channel = open_channel(options.address, options.tls, options.insecure, who=_PROG)
        call: Any = None
        try:
            stub = ConsoleStub(channel)
            call = stub.WatchRun(pb.WatchRunRequest(), metadata=self._metadata)
            inbox: queue.Queue[object] = queue.Queue()
            # The stream blocks between events; a reader thread lets this one keep the clock moving.
            threading.Thread(target=_pump, args=(call, inbox), name="fedsynth-console-watch", daemon=True).start()
            return self._consume(stub, inbox)
        finally:
            if call is not None:
                call.cancel()
            # A fresh channel per connection: a reused one keeps gRPC's own backoff (up to minutes).
            channel.close()

    def _consume(self, stub: ConsoleStub, inbox: queue.Queue[object]) -> _Outcome:
        fresh, ended = True, False
        while True:
            try:
                batch = [inbox.get(timeout=self._options.refresh_seconds)]
            except queue.Empty:
                self._show(force=True)  # nothing new, but "last seen 3s ago" moves on
                continue
            while not inbox.empty():
                batch.append(inbox.get_nowait())
            refresh = False
            for item in batch:
                if item is None:
                    return _Outcome(ended=True) if ended else _Outcome(
                        progressed=not fresh, reason="the server closed the stream before the run ended")
                if not isinstance(item, pb.RunEvent):
                    self._raise_if_fatal(item)
                    return _Outcome(progressed=not fresh, reason=_reason(item, self._options.token))
                if fresh:  # the server replays its history on every connection: fold it afresh
                    fresh = False
                    self._state.reset()
                    self._connection = f"connected to {self._options.address}"
                self._state.apply_event(item)
                kind = item.WhichOneof("kind")
                ended = ended or kind == "run_ended"
                live_news = self._state.history_complete and kind in ("round_finished", "run_ended")
                refresh = refresh or kind == "history_end" or live_news
            if refresh:
                self._refresh(stub)
            if ended and self._state.history_complete:
                return _Outcome(ended=True)
            self._show()

    def _refresh(self, stub: ConsoleStub) -> None:
        """Fold fresh GetRun and ListSites snapshots; a lost server is left to the stream to report."""
        timeout = self._options.connect_timeout_seconds
        try:
            run = stub.GetRun(pb.GetRunRequest(), metadata=self._metadata, timeout=timeout)
            sites = stub.ListSites(pb.ListSitesRequest(), metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as err:
            self._raise_if_fatal(err)
            logger.debug("Refreshing the run snapshot failed: %s", _code(err))
            return
        self._state.apply_run(run)
        self._state.apply_sites(sites)

    def _raise_if_fatal(self, err: object) -> None:
        refusal = _refusal(err, self._options)
        if refusal is not None:
            raise refusal

    def _back_off(self, attempt: int, reason: str) -> None:
        delay = min(self._options.reconnect_max_seconds, _FIRST_BACKOFF_SECONDS * 2 ** min(attempt - 1, 30))
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            self._connection = f"reconnecting in {math.ceil(left)}s (attempt {attempt}): {reason}"
            self._show(force=True)
            time.sleep(min(left, 1.0))  # the backoff itself, counted down once a second
        self._connection = f"reconnecting to {self._options.address} (attempt {attempt}): {reason}"
        self._show(force=True)

    def _show(self, force: bool = False) -> None:
        """Redraw, at most once per refresh interval unless ``force``."""
        moment = time.monotonic()
        if self._live is None or (not force and moment - self._last_shown < self._options.refresh_seconds):
            return
        self._live.update(render(self._state, datetime.now(timezone.utc), self._connection), refresh=True)
        self._last_shown = moment
