"""The SuperNode wakes its site's task runtime when it creates a task, so the runtime need not ask 10 times a second.

Flower's SuperExec loop (``flwr.supercore.superexec.run_superexec``) asks the SuperNode's Runtime API for a task
(``AcquireTask``, one HTTP request) and then sleeps ``FLWR_SUPEREXEC_TASK_POLL_INTERVAL`` seconds, whether or not a
message has come. At Flower's 1 s a task started up to a second after its message; at the 0.1 s we ran with,
ten sites' runtimes sent about 80 requests a second all run long, and the SuperNodes answering them, with the
runtimes, took about a quarter of a 2-core machine (``/proc``, 10-site deployment, 2026-12-06): CPU that a
round's start and end, when every site moves a message at once, were short of.

Here ``fedsynth-supernode`` makes a pipe before it starts the runtime. The SuperNode writes a byte into it each
time it creates a task (the moment a message from the SuperLink becomes a task the runtime can acquire), and
the runtime's sleep between two asks returns as soon as a byte arrives. The loop keeps asking at its own
interval too, so a lost byte costs latency, never a task. Only the two processes of one site share the pipe;
nothing crosses the network and no content goes through it, only the fact that a task exists.
"""

from __future__ import annotations

import logging
import os
import select
import time
import types
from typing import Any

logger = logging.getLogger("fedsynth.task_wakeup")
FALLBACK_POLL_INTERVAL = "1"  # Flower's own default: the runtime's ask when no wake-up came (a lost byte, a restart)


class WakeUp:
    """A pipe from the SuperNode (``notify``) to its runtime (``wait``), both ends non-blocking.

    The SuperNode keeps the read end open as well, so that a write never fails while the runtime is being
    restarted; a full pipe means a wake-up is already pending, and that is enough.
    """

    def __init__(self) -> None:
        self.reader, self.writer = os.pipe()
        os.set_blocking(self.reader, False)
        os.set_blocking(self.writer, False)

    def notify(self) -> None:
        try:
            os.write(self.writer, b"\0")
        except BlockingIOError:
            pass


def wait(fd: int, seconds: float) -> bool:
    """Sleep up to ``seconds``, less if a wake-up arrives on ``fd``; True if one did (all pending ones are read)."""
    readable, _, _ = select.select([fd], [], [], max(seconds, 0.0))
    if not readable:
        return False
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
    return True


def notify_on_new_tasks(wake: WakeUp) -> bool:
    """Make the SuperNode's state call ``wake.notify()`` after each task it creates; False if this Flower's
    SuperNode has no such state (the runtime then finds tasks at its fallback interval)."""
    from flwr.supernode.nodestate import nodestate_factory

    factory = getattr(nodestate_factory, "NodeStateFactory", None)
    original = getattr(factory, "state", None)
    if factory is None or original is None or not hasattr(getattr(nodestate_factory, "InMemoryNodeState", None),
                                                           "create_task"):
        logger.warning("this Flower's SuperNode state has no create_task to hook; the task runtime will poll")
        return False

    def state(self: Any) -> Any:
        made = original(self)
        create = made.create_task
        if not getattr(create, "_fedsynth_wakes", False):  # the factory returns one state; wrap it once
            def create_task(*args: Any, **kwargs: Any) -> int | None:
                task_id = create(*args, **kwargs)
                if task_id is not None:
                    wake.notify()
                return task_id

            create_task._fedsynth_wakes = True  # type: ignore[attr-defined]
            made.create_task = create_task
        return made

    factory.state = state  # type: ignore[method-assign]
    return True


class _WakeableTime:
    """The ``time`` module as Flower's SuperExec loop sees it: ``sleep`` ends early on a wake-up."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def sleep(self, seconds: float) -> None:
        wait(self.fd, seconds)

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def wake_superexec_on(fd: int) -> bool:
    """Make this process's SuperExec loop sleep on ``fd``; False (and a warning) if the loop has no such sleep."""
    from flwr.supercore.superexec import run_superexec as loop

    if not isinstance(getattr(loop, "time", None), types.ModuleType | _WakeableTime):
        logger.warning("this Flower's SuperExec loop has no sleep to wake; the task runtime polls at its interval")
        return False
    loop.time = _WakeableTime(fd)  # type: ignore[assignment]
    return True
