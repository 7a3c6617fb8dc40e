"""The SuperNode wakes its task runtime when it creates a task (client/task_wakeup.py), on Flower's real state and
SuperExec loop."""

from __future__ import annotations

import argparse
import os
import threading
import time

import pytest
from flwr.supercore.constant import TaskType
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supercore.superexec import run_superexec
from flwr.supernode.nodestate import nodestate_factory

from client.supernode import _runtime_command
from client.task_wakeup import WakeUp, notify_on_new_tasks, wait, wake_superexec_on


def _pending(wake: WakeUp) -> int:
    try:
        return len(os.read(wake.reader, 4096))
    except BlockingIOError:
        return 0


def test_the_supernodes_state_wakes_the_runtime_once_per_task_it_creates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nodestate_factory.NodeStateFactory, "state", nodestate_factory.NodeStateFactory.state)
    wake = WakeUp()
    assert notify_on_new_tasks(wake)
    factory = nodestate_factory.NodeStateFactory(ObjectStoreFactory())
    state = factory.state()
    assert factory.state() is state  # one state, wrapped once: asking again adds no second wake-up per task

    assert _pending(wake) == 0
    task_id = state.create_task(task_type=TaskType.CLIENT_APP, run_id=1, fab_hash="ab" * 32)

    assert task_id is not None
    assert _pending(wake) == 1
    assert [t.task_id for t in state.get_tasks(task_ids=[task_id])] == [task_id]  # Flower's state still made it


def test_a_wake_up_ends_the_wait_early_and_all_pending_ones_are_read() -> None:
    wake = WakeUp()
    threading.Timer(0.2, wake.notify).start()

    began = time.monotonic()
    assert wait(wake.reader, 30)
    assert time.monotonic() - began < 5

    for _ in range(3):
        wake.notify()
    assert wait(wake.reader, 30)  # three pending wake-ups end one wait ...
    assert not wait(wake.reader, 0.05)  # ... and are all consumed by it


def test_a_full_pipe_does_not_block_the_supernode() -> None:
    wake = WakeUp()
    for _ in range(100_000):  # far more than a pipe holds: the writes that do not fit are dropped, not waited on
        wake.notify()
    assert wait(wake.reader, 0)


def test_the_superexec_loop_sleeps_until_woken(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_superexec, "time", run_superexec.time)  # restored afterwards
    wake = WakeUp()
    assert wake_superexec_on(wake.reader)
    threading.Timer(0.2, wake.notify).start()

    began = time.monotonic()
    run_superexec.time.sleep(60)  # the loop's wait between two asks for a task, at the longest Flower allows

    assert time.monotonic() - began < 5
    assert run_superexec.time.monotonic() > 0  # everything else is the real module


def test_the_runtime_is_told_which_pipe_to_wait_on() -> None:
    flower = argparse.Namespace(host=None, port=9094, ssl_certfile=None, ssl_ca_certfile=None,
                                superexec_auth_secret_file=None)

    command = _runtime_command(flower, wake_fd=7)

    assert command[command.index("--wake-fd") + 1] == "7"
    assert "--wake-fd" not in _runtime_command(flower)
