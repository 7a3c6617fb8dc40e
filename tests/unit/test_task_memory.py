"""The warm runtime's memory (client/task_memory.py): what a task keeps, its next forks get back, and only
under the same key; the site's encoded table reused from it (client/data.py), and recomputed when anything
it depends on changes."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from client import data as site_data
from client.data import MEMORY_NAME, load_site_data
from client.task_memory import REGISTRY, TaskMemory, publish, task_memory
from shared.encoding import TableEncoder
from shared.schema import load_schema
from tests.conftest import write_site_table


@contextmanager
def task(memory: TaskMemory) -> Iterator[None]:
    """One task of ``memory``'s runtime, run in this process (its reader thread stands in for the runtime)."""
    reader, writer = memory.before_fork()
    thread = memory.after_fork_in_parent((reader, os.dup(writer)))
    memory.after_fork_in_child((os.dup(reader), writer))
    try:
        yield
    finally:
        memory.end_task()  # the task's exit: the runtime has all it kept once the reader sees the end
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_a_kept_entry_reaches_the_next_fork_and_only_under_its_key() -> None:
    memory = TaskMemory()
    table = np.arange(12, dtype=np.float32).reshape(3, 4)

    pipe = memory.before_fork()
    pid = os.fork()
    if pid == 0:  # a real task: keeps the table, then exits as the runtime's tasks do
        memory.after_fork_in_child(pipe)
        os._exit(0 if memory.keep("table", "k1", {"rows": 3}, [table]) else 1)
    memory.after_fork_in_parent(pipe).join(timeout=30)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    kept = memory.recall("table", "k1")
    assert kept is not None and kept.facts == {"rows": 3}
    np.testing.assert_array_equal(kept.arrays[0], table)
    assert kept.arrays[0].flags.writeable  # torch.from_numpy takes it without a copy or a warning
    assert memory.recall("table", "k2") is None and memory.recall("other", "k1") is None

    pid = os.fork()
    if pid == 0:  # the next task inherits it
        inherited = memory.recall("table", "k1")
        os._exit(0 if inherited is not None and np.array_equal(inherited.arrays[0], table) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_newest_entry_of_a_name_replaces_the_older() -> None:
    memory = TaskMemory()
    with task(memory):
        memory.keep("table", "old", {}, [np.zeros(5)])
        memory.keep("mask", "m", {}, [np.ones(2, dtype=bool), np.arange(3)])
    with task(memory):
        memory.keep("table", "new", {}, [np.ones(5)])

    assert memory.recall("table", "old") is None
    kept = memory.recall("table", "new")
    assert kept is not None and kept.arrays[0].tolist() == [1.0] * 5
    mask = memory.recall("mask", "m")
    assert mask is not None and [a.tolist() for a in mask.arrays] == [[True, True], [0, 1, 2]]


def test_a_task_that_died_mid_write_leaves_nothing_of_itself(caplog: pytest.LogCaptureFixture) -> None:
    memory = TaskMemory()
    with task(memory):
        memory.keep("table", "good", {}, [np.zeros(3)])
    reader, writer = memory.before_fork()
    thread = memory.after_fork_in_parent((reader, os.dup(writer)))
    os.write(writer, (50).to_bytes(8, "big") + b'{"name": "table", "key": "torn"')  # killed here
    os.close(writer)
    with caplog.at_level(logging.WARNING):
        thread.join(timeout=30)

    assert memory.recall("table", "torn") is None
    assert memory.recall("table", "good") is not None
    assert "incomplete" in caplog.text


def test_outside_a_runtime_task_nothing_is_kept() -> None:
    assert TaskMemory().keep("table", "k", {}, [np.zeros(1)]) is False


@pytest.fixture()
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[TaskMemory]:
    """This process as a warm runtime: its memory published, and no per-process cache to hide behind."""
    memory = TaskMemory()
    publish(memory)
    monkeypatch.setattr(site_data, "_CACHE", {})
    yield memory
    del sys.modules[REGISTRY]


def _load(path: Path, schema_path: Path, key: bytes = b"k" * 32) -> site_data.SiteData:
    site_data._CACHE.clear()  # each task is a fresh process: only the runtime's memory carries over
    schema = load_schema(schema_path)
    return load_site_data(path, schema, TableEncoder.from_schema(schema), holdout_key=key, holdout_fraction=0.2)


def test_the_site_table_is_encoded_once_per_runtime(
    runtime: TaskMemory, tmp_path: Path, small_schema: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    table = tmp_path / "site.csv"
    write_site_table(table, rows=200, seed=3)
    assert task_memory() is runtime

    with task(runtime):
        first = _load(table, small_schema)
    with caplog.at_level(logging.INFO, logger="client.data"), task(runtime):
        again = _load(table, small_schema)

    assert "reused" in caplog.text
    assert torch.equal(first.encoded, again.encoded)
    assert again.rows_quarantined == first.rows_quarantined
    assert runtime.recall(MEMORY_NAME, "anything else") is None


@pytest.mark.parametrize("change", ["table rewritten", "table appended", "hold-out key", "schema"])
def test_a_change_to_what_the_table_depends_on_encodes_it_again(
    runtime: TaskMemory, tmp_path: Path, small_schema: Path, caplog: pytest.LogCaptureFixture, change: str,
) -> None:
    table = tmp_path / "site.csv"
    write_site_table(table, rows=200, seed=3)
    with task(runtime):
        first = _load(table, small_schema)
    key = b"k" * 32
    if change == "table rewritten":  # same size, same mtime: only the content and ctime differ
        stat = table.stat()
        text = table.read_text()
        assert ",neuro," in text
        table.write_text(text.replace(",neuro,", ",ortho,", 1))
        assert table.stat().st_size == stat.st_size
        os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    elif change == "table appended":
        write_site_table(tmp_path / "more.csv", rows=20, seed=4)
        with table.open("a") as handle:
            handle.write("".join((tmp_path / "more.csv").read_text().splitlines(keepends=True)[1:]))
    elif change == "hold-out key":
        key = b"j" * 32
    else:
        schema = small_schema.read_text()
        small_schema.write_text(schema.replace('"clinic"', '"clinic-2"', 1))

    with caplog.at_level(logging.INFO, logger="client.data"), task(runtime):
        again = _load(table, small_schema, key)

    assert "reused" not in caplog.text
    del sys.modules[REGISTRY]  # the reference: no runtime memory at all
    expected = _load(table, small_schema, key)
    publish(runtime)
    assert torch.equal(again.encoded, expected.encoded)
    if change in ("table appended", "hold-out key"):
        assert not torch.equal(again.encoded, first.encoded)
