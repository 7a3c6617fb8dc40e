"""A console watcher for end-to-end tests: follows a run's live console from before it starts to its end.

The console only exists while the ServerApp runs, so the follower retries UNAVAILABLE until a deadline;
joining late is fine, the history comes first. On each RoundFinished it may call back (to stop the run).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from server.certs import make_consortium_certs
from server.console.tokens import add_token
from shared.console.auth import bearer
from shared.console.transport import TLSFiles, open_channel
from shared.console.v1 import console_pb2 as pb
from shared.console.v1 import console_pb2_grpc as pb_grpc
from server.local_federation import _free_port


class ConsoleFollower:
    def __init__(self, root: Path, on_round: Callable[[pb_grpc.ConsoleStub, str], None] | None = None) -> None:
        make_consortium_certs(root / "pki", ["127.0.0.1"])
        self.tokens = root / "console-tokens.json"
        self.admin = add_token(self.tokens, "coordinator", "admin")
        self.viewer = add_token(self.tokens, "observer", "viewer")
        self.address = f"127.0.0.1:{_free_port()}"
        self.ca = root / "pki" / "ca.crt"
        self.run_config = {
            "console.address": self.address, "console.tokens": str(self.tokens),
            "console.tls-cert": str(root / "pki" / "server.crt"), "console.tls-key": str(root / "pki" / "server.key"),
        }
        self.events: list[pb.RunEvent] = []
        self.connections = 0
        self._on_round = on_round
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> ConsoleFollower:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=30)

    def _follow(self, deadline_seconds: float = 600.0) -> None:
        deadline = time.monotonic() + deadline_seconds
        with open_channel(self.address, TLSFiles(ca=self.ca), insecure=False) as channel:
            stub = pb_grpc.ConsoleStub(channel)
            while not self._done.is_set() and time.monotonic() < deadline:
                try:
                    received: list[pb.RunEvent] = []
                    self.connections += 1
                    for event in stub.WatchRun(pb.WatchRunRequest(), metadata=bearer(self.viewer)):
                        if event.HasField("history_end"):
                            continue  # joined before the run started, or late: the log reads the same either way
                        received.append(event)
                        if event.HasField("round_finished") and self._on_round is not None:
                            self._on_round(stub, self.admin)
                    self.events = received
                    if received and received[-1].HasField("run_ended"):
                        return
                except grpc.RpcError as error:
                    if error.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                self._done.wait(0.2)  # the ServerApp (and its console) has not started yet

    def kinds(self) -> list[str]:
        return [str(e.WhichOneof("kind")) for e in self.events]
