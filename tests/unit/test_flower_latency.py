"""Flower's fixed waits, shortened in our processes (shared/flower_latency.py), and fedsynth-supernode's flags."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from flwr.supercore.constant import TaskType
from flwr.supercore.inflatable import inflatable_utils
from flwr.supercore.superexec.executor.types import ExecutionSpec, LaunchResultStatus
from flwr.supernode import start_client_internal

from client.task_runtime import ForkExecutor
from shared.flower_latency import prompt_object_pulls, prompt_polling


def test_the_supernode_loop_sleeps_at_most_the_poll_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(start_client_internal, "time", start_client_internal.time)  # restored afterwards

    assert prompt_polling(0.05)
    began = time.monotonic()
    start_client_internal.time.sleep(3)  # Flower's idle wait

    assert time.monotonic() - began < 1.0
    assert start_client_internal.time.monotonic() > 0  # everything else is the real module


def test_waits_on_the_supernodes_own_memory_are_shorter_than_polls_of_the_superlink(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(start_client_internal, "time", start_client_internal.time)
    assert prompt_polling(0.3)

    began = time.monotonic()
    start_client_internal.time.sleep(0.5)  # Flower's wait for its ClientApp's reply
    local = time.monotonic() - began
    began = time.monotonic()
    start_client_internal.time.sleep(3)  # Flower's wait before asking the SuperLink again
    remote = time.monotonic() - began

    assert local < 0.25
    assert 0.3 <= remote < 1.0


def test_object_pulls_back_off_from_50_ms(monkeypatch: pytest.MonkeyPatch) -> None:
    for function in (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree):
        monkeypatch.setattr(function, "__kwdefaults__", dict(function.__kwdefaults__))

    assert prompt_object_pulls(0.05, 0.25)
    for function in (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree):
        assert function.__kwdefaults__["initial_backoff"] == 0.05
        assert function.__kwdefaults__["backoff_cap"] == 0.25


def test_the_fork_executor_runs_client_apps_only() -> None:
    spec = ExecutionSpec(task_type=TaskType.SERVER_APP, runtime_api_address="127.0.0.1:1", token="t",
                         insecure=True, root_certificates_path=None, runtime_dependency_install=False,
                         parent_pid=None, suppress_output=False, task_id=1)

    result = ForkExecutor().launch(spec)

    assert result.status == LaunchResultStatus.FAILED and "ClientApps only" in result.message


@pytest.mark.parametrize("args,message", [
    (["--isolation", "subprocess"], "drop --isolation"),
    (["--poll-interval", "0"], "--poll-interval must be between"),
])
def test_fedsynth_supernode_refuses_what_it_decides_itself(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "client.supernode", "--insecure", "--superlink", "127.0.0.1:1", *args],
                          capture_output=True, text=True, timeout=120)

    assert done.returncode != 0 and message in done.stderr
