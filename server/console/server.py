"""The console's gRPC server: TLS unless explicitly insecure on loopback, tokens on every call.

Each WatchRun stream holds one worker thread while it waits for events, so the pool is sized for the
watchers it admits; calls beyond ``max_calls`` are refused at once (RESOURCE_EXHAUSTED) rather than queued
behind streams that may last the whole run.
"""

from __future__ import annotations

import logging
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc

from server.console.interceptor import AuthInterceptor
from server.console.monitor import RunMonitor
from server.console.service import ConsoleService
from server.console.tokens import TokenStore
from shared.console.transport import TLSFiles, check_plaintext, server_credentials
from shared.console.v1 import console_pb2_grpc as pb_grpc
from shared.errors import ConfigError

__all__ = ["ConsoleServer", "MAX_CALLS"]

logger = logging.getLogger(__name__)
MAX_CALLS = 128
# Watchers get this long to receive the last events when the server stops.
_GRACE_SECONDS = 2.0


@dataclass(frozen=True)
class _Listen:
    address: str
    tls: TLSFiles | None
    insecure: bool


class ConsoleServer:
    """Serves one RunMonitor; a context manager that starts on enter and stops on exit."""

    def __init__(
        self, monitor: RunMonitor, *, address: str, tokens: Path | TokenStore, tls: TLSFiles | None,
        insecure: bool = False, max_calls: int = MAX_CALLS,
    ) -> None:
        if insecure:
            check_plaintext(address, insecure, "the console")
        elif tls is None:
            raise ConfigError("the console serves TLS unless told --insecure: pass --tls-cert and --tls-key")
        self.monitor = monitor
        self._listen = _Listen(address, tls, insecure)
        self._tokens = tokens if isinstance(tokens, TokenStore) else TokenStore.load(tokens)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_calls + 8, thread_name_prefix="console"),
            interceptors=[AuthInterceptor(self._tokens)], maximum_concurrent_rpcs=max_calls,
        )
        pb_grpc.add_ConsoleServicer_to_server(ConsoleService(monitor), self._server)
        self.port = 0

    @property
    def address(self) -> str:
        """The address actually bound (port 0 in the configuration becomes the port chosen)."""
        host = self._listen.address.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    def start(self) -> ConsoleServer:
        listen = self._listen
        try:
            if listen.insecure:
                self.port = self._server.add_insecure_port(listen.address)
            else:
                assert listen.tls is not None
                self.port = self._server.add_secure_port(listen.address, server_credentials(listen.tls))
        except RuntimeError as exc:
            raise ConfigError(f"the console cannot listen on {listen.address}: {exc} (is the port in use?)") from None
        self._server.start()
        logger.info("console listening on %s (%s, %d tokens)", self.address,
                    "plaintext, loopback only" if listen.insecure else "TLS", len(self._tokens.names()))
        return self

    def stop(self, grace: float = _GRACE_SECONDS) -> None:
        self.monitor.log.close()
        self._server.stop(grace).wait()

    def wait(self) -> None:
        self._server.wait_for_termination()

    def __enter__(self) -> ConsoleServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
