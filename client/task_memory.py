"""What one task of a site's warm runtime leaves for the next: data it derived, kept in the runtime's memory.

Every ClientApp task is a fresh fork of the site's task runtime (``client.task_runtime``), so whatever a task
computes dies with it, and every round used to validate and encode the site's whole table again (0.3-0.5 s
of CPU a round on Adult, before training can start: benchmarks ``round_overhead``). A task may hand an
entry back to the runtime through a pipe made for its fork; the runtime keeps the newest entry of each
name, and the next fork inherits it copy-on-write.

What this is and is not:

* It never leaves the site's machine and never touches disk: the entry goes from the task to its parent
  process, which is the site's own runtime, and lives exactly as long as it.
* It is a cache of a pure function. An entry carries a key, a digest of everything its value was computed
  from (file identity, schema, secrets, code); a task that asks with another key gets nothing and computes
  afresh. One entry per name, so an older copy of private data is dropped as soon as a newer one arrives.
* The wire between task and runtime is a JSON header and raw array bytes, never pickle: the runtime only
  stores bytes, and never runs anything a task sent.

The runtime publishes its memory to tasks as ``sys.modules[REGISTRY].memory``; outside a warm runtime
(simulation, tests, Flower's own subprocess isolation) :func:`task_memory` is None and nothing is kept.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import sys
import threading
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["REGISTRY", "Kept", "TaskMemory", "publish", "task_memory"]

REGISTRY = "fedsynth_task_memory"  # a name outside the app's packages, which each task purges and re-imports
_LENGTH = struct.Struct(">Q")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kept:
    """One remembered entry: small JSON-ready facts and the arrays they describe."""

    key: str
    facts: dict[str, object]
    arrays: tuple[np.ndarray, ...]


class TaskMemory:
    """The runtime's side (``before_fork``, ``after_fork_in_parent``) and a task's (``recall``, ``keep``)."""

    def __init__(self) -> None:
        # Assigned whole, never mutated in place: a fork taken while a reader thread stores an entry sees
        # either the old dict or the new one, and needs no lock (a lock held by that thread at the fork
        # would stay held forever in the child).
        self._entries: dict[str, Kept] = {}
        self._writer: int | None = None
        self._after_reply: list[Callable[[], None]] = []

    # -- the runtime's side ------------------------------------------------------------------------------
    def before_fork(self) -> tuple[int, int]:
        """A pipe for the next task: it writes, the runtime reads."""
        return os.pipe()

    def after_fork_in_parent(self, pipe: tuple[int, int]) -> threading.Thread:
        """Close the task's end and read what it keeps, until it exits, on a thread of its own (returned)."""
        reader, writer = pipe
        os.close(writer)
        thread = threading.Thread(target=self._receive, args=(reader,), name="task-memory", daemon=True)
        thread.start()
        return thread

    def after_fork_in_child(self, pipe: tuple[int, int]) -> None:
        reader, writer = pipe
        os.close(reader)
        self._writer = writer
        self._after_reply = []

    def end_task(self) -> None:
        """Close this task's end of the pipe (a task's exit does the same)."""
        if self._writer is not None:
            os.close(self._writer)
            self._writer = None

    def _receive(self, reader: int) -> None:
        chunks: list[bytes] = []
        with os.fdopen(reader, "rb") as pipe:
            while chunk := pipe.read(1 << 20):
                chunks.append(chunk)
        received = bytearray().join(chunks)
        try:
            for name, kept in _frames(received):
                self._entries = {**self._entries, name: kept}
        except (ValueError, KeyError, TypeError) as exc:  # a task died mid-write: keep nothing of it
            logger.warning("a task's memory was incomplete and is dropped (%s)", exc)

    # -- a task's side -----------------------------------------------------------------------------------
    def recall(self, name: str, key: str) -> Kept | None:
        """The entry ``name`` if an earlier task kept it under ``key``; None otherwise."""
        kept = self._entries.get(name)
        return kept if kept is not None and kept.key == key else None

    def after_reply(self, work: Callable[[], None]) -> None:
        """Run ``work`` in this task once its reply has left (the runtime calls :meth:`run_after_reply`)."""
        self._after_reply.append(work)

    def run_after_reply(self) -> None:
        """The task's reply is out: run what it left for this moment (a failure is logged; the reply stands)."""
        work, self._after_reply = self._after_reply, []
        if work:
            # Idle time only: at the lowest priority, the site's SuperNode forwarding this reply, and anything
            # else on the machine, goes first (the work is a head start on the next round, never urgent).
            os.nice(19)
        for step in work:
            try:
                step()
            except Exception:  # noqa: BLE001 - a head start lost, nothing more: the next task computes it
                logger.warning("work a task left for after its reply failed; the next round does it itself",
                               exc_info=True)

    def keep(self, name: str, key: str, facts: dict[str, object], arrays: Sequence[np.ndarray]) -> bool:
        """Hand ``arrays`` to the runtime for later tasks; False (nothing kept) outside a runtime's fork."""
        if self._writer is None:
            return False
        arrays = [np.ascontiguousarray(a) for a in arrays]
        header = json.dumps({
            "name": name, "key": key, "facts": facts,
            "arrays": [{"dtype": a.dtype.str, "shape": list(a.shape)} for a in arrays],
        }).encode()
        try:
            with os.fdopen(os.dup(self._writer), "wb") as pipe:
                pipe.write(_LENGTH.pack(len(header)) + header)
                for array in arrays:
                    pipe.write(array.data.cast("B"))  # the array's own bytes, no copy
        except OSError as exc:  # the runtime is gone; this task still has its own copy
            logger.warning("could not hand %s to the task runtime (%s); the next round computes it again", name, exc)
            return False
        return True


def _frames(data: bytearray) -> list[tuple[str, Kept]]:
    """Split what one task wrote into its entries (header length, JSON header, raw array bytes, repeated)."""
    frames, at = [], 0
    view = memoryview(data)
    while at < len(data):
        (size,) = _LENGTH.unpack_from(data, at)
        header = json.loads(bytes(view[at + _LENGTH.size: at + _LENGTH.size + size]))
        at += _LENGTH.size + size
        arrays = []
        for spec in header["arrays"]:
            dtype, shape = np.dtype(spec["dtype"]), tuple(int(n) for n in spec["shape"])
            nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
            if at + nbytes > len(data):
                raise ValueError(f"entry {header['name']!r} is cut short")
            # A writable array over this task's own buffer: the next fork shares its pages copy-on-write.
            arrays.append(np.frombuffer(view[at: at + nbytes], dtype=dtype).reshape(shape))
            at += nbytes
        frames.append((str(header["name"]), Kept(str(header["key"]), dict(header["facts"]), tuple(arrays))))
    return frames


def publish(memory: TaskMemory) -> None:
    """Make ``memory`` the one tasks of this process (and its forks) find."""
    module = types.ModuleType(REGISTRY, "the fedsynth task runtime's memory, shared with its tasks")
    module.memory = memory  # type: ignore[attr-defined]
    sys.modules[REGISTRY] = module


def task_memory() -> TaskMemory | None:
    """The warm runtime's memory when this task runs in one, else None."""
    return getattr(sys.modules.get(REGISTRY), "memory", None)
