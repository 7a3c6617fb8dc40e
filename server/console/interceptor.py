"""Authentication and roles for every console call, before any servicer code runs.

A call without a bearer token, or with one the tokens file does not know, ends UNAUTHENTICATED; a known
caller whose role is too low for the method ends PERMISSION_DENIED. The caller's name is kept for the call
(``current_caller``) so that an admin action is logged with who did it. Tokens are never logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import grpc

from server.console import messages
from server.console.tokens import Caller, TokenStore
from shared.console.auth import ADMIN, ROLES, VIEWER, token_from_metadata

__all__ = ["AuthInterceptor", "METHOD_ROLES", "current_caller"]

SERVICE = "/fedsynth.console.v1.Console/"
# The least role each method needs. A method missing here is refused to everyone (fail closed).
METHOD_ROLES = {
    "GetRun": VIEWER, "WatchRun": VIEWER, "GetLedger": VIEWER, "ListSites": VIEWER, "StreamSynthetic": VIEWER,
    "StopRun": ADMIN,
}
_local = threading.local()
logger = logging.getLogger(__name__)


def current_caller() -> Caller | None:
    """Who made the call this worker thread is serving."""
    return getattr(_local, "caller", None)


class AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, tokens: TokenStore) -> None:
        self._tokens = tokens

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method.removeprefix(SERVICE)
        token = token_from_metadata(details.invocation_metadata)
        caller = self._tokens.caller(token) if token else None
        if caller is None:
            problem = messages.NO_TOKEN if token is None else messages.UNKNOWN_TOKEN
            logger.warning("console: %s refused: %s", method, "no token" if token is None else "unknown token")
            return _refusing(handler, grpc.StatusCode.UNAUTHENTICATED, problem)
        needed = METHOD_ROLES.get(method)
        if needed is None or ROLES.index(caller.role) < ROLES.index(needed):
            logger.warning("console: %s refused to %s (role %s)", method, caller.name, caller.role)
            detail = messages.NEEDS_ADMIN.format(method=method, name=caller.name, role=caller.role)
            return _refusing(handler, grpc.StatusCode.PERMISSION_DENIED, detail)
        return _as(handler, caller)


def _refusing(handler: Any, code: grpc.StatusCode, detail: str) -> Any:
    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, detail)

    return _rebuilt(handler, refuse)


def _as(handler: Any, caller: Caller) -> Any:
    """The same handler, run with ``current_caller()`` set (streams run their generator in the same thread)."""
    behavior = handler.unary_unary or handler.unary_stream

    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        _local.caller = caller
        try:
            return behavior(request, context)
        finally:
            _local.caller = None

    def stream(request: Any, context: grpc.ServicerContext) -> Any:
        _local.caller = caller
        try:
            yield from behavior(request, context)
        finally:
            _local.caller = None

    return _rebuilt(handler, unary if handler.unary_unary else stream)


def _rebuilt(handler: Any, behavior: Callable[..., Any]) -> Any:
    if handler.unary_unary:
        factory = grpc.unary_unary_rpc_method_handler
    elif handler.unary_stream:
        factory = grpc.unary_stream_rpc_method_handler
    else:  # the console has no client-streaming methods; refuse rather than guess
        raise TypeError("console methods are unary or server-streaming")
    return factory(behavior, request_deserializer=handler.request_deserializer,
                   response_serializer=handler.response_serializer)
