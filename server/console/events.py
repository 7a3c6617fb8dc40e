"""The run's event log: an append-only history that any number of watchers follow at their own pace.

The round loop only appends under a lock and wakes the watchers; it never waits on one. Each watcher
(a WatchRun stream, in its own gRPC worker thread) copies what it has not yet sent and sends it outside the
lock, so a slow or stalled watcher holds back only itself (gRPC's flow control blocks its thread, not ours).
A watcher that joins late starts from the first event: the history is the log itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from google.protobuf.timestamp_pb2 import Timestamp

from shared.console.v1 import console_pb2 as pb

__all__ = ["EventLog"]

# How often a waiting watcher wakes to check whether its caller has gone away.
_POLL_SECONDS = 0.5


class EventLog:
    """Thread-safe, append-only list of ``RunEvent``s numbered 1, 2, 3..."""

    def __init__(self, run_id: str = "") -> None:
        self._events: list[pb.RunEvent] = []
        self._closed = False
        self._cond = threading.Condition()
        self.run_id = run_id

    def append(self, event: pb.RunEvent) -> pb.RunEvent:
        """Number, time-stamp and store ``event`` (its ``kind`` already set); wake every watcher."""
        with self._cond:
            event.sequence = len(self._events) + 1
            if not event.HasField("time"):
                event.time.CopyFrom(_now())
            event.run_id = self.run_id
            self._events.append(event)
            self._cond.notify_all()
        return event

    def close(self) -> None:
        """No event follows: watchers drain what is left and their streams end."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed

    def snapshot(self) -> list[pb.RunEvent]:
        with self._cond:
            return list(self._events)

    def follow(self, *, history_only: bool = False, active: Callable[[], bool] = lambda: True) -> Iterator[pb.RunEvent]:
        """Every event from the first; a ``HistoryEnd`` marker after the ones already there; then live ones.

        Ends when the log is closed and drained, when ``active()`` turns false (the caller hung up), or,
        with ``history_only``, right after the marker.
        """
        with self._cond:
            sent = len(self._events)
            backlog = list(self._events)
        yield from backlog
        yield pb.RunEvent(
            sequence=0, time=_now(), run_id=self.run_id, history_end=pb.HistoryEnd(events=len(backlog))
        )
        if history_only:
            return
        while active():
            with self._cond:
                if sent == len(self._events) and not self._closed:
                    self._cond.wait(_POLL_SECONDS)
                fresh = self._events[sent:]
                done = self._closed and not fresh
            sent += len(fresh)
            yield from fresh
            if done:
                return


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(time.time_ns())
    return stamp
