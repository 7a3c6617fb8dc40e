"""Logging set-up for entry points: one format, to whatever ``sys.stdout`` is at the time of writing.

Flower mirrors a ServerApp's and a ClientApp's stdout to ``flwr run --stream``; resolving the stream lazily
keeps our lines flowing after Flower swaps stdout. Never log a row or a value from one.
"""

from __future__ import annotations

import logging
import sys

_ROOTS = ("server", "client", "shared")


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201 - matches StreamHandler
        return sys.stdout

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def configure_logging(level: int = logging.INFO) -> None:
    """Attach one stdout handler to fedsynth's loggers (idempotent)."""
    for name in _ROOTS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
            handler = _StdoutHandler()
            handler.setFormatter(logging.Formatter("fedsynth %(levelname)s %(message)s"))
            logger.addHandler(handler)
        logger.propagate = False
    if level <= logging.DEBUG:
        logging.getLogger("server").warning("DEBUG logging is on: it may expose sensitive details of a run")
