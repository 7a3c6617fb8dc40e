"""A FAB is unpacked by the first task of a warm runtime that gets it, not by every task (client/fab_install.py):
real FABs built by Flower from this repository, installed by Flower's own ``install_from_fab`` in real forks."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk
from flwr.cli.install import install_from_fab

from client.fab_install import MEMORY_NAME, install_once
from client.task_memory import TaskMemory
from tests.conftest import run_as_task

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fab() -> bytes:
    return build_fab_from_disk(REPO)


@pytest.fixture
def flwr_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "flwr-home"
    monkeypatch.setenv("FLWR_HOME", str(home))
    return home


class Counted:
    """Flower's ``install_from_fab``, counting the calls that reach it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> Path:
        self.calls += 1
        return install_from_fab(*args, **kwargs)  # type: ignore[arg-type]


def in_task(memory: TaskMemory, work: Callable[[], Path]) -> str:
    """``work`` as a task of ``memory``'s runtime (a real fork); the path it returned."""
    return run_as_task(memory, lambda: str(work()).encode()).decode()


def test_the_second_task_gets_the_installed_folder_without_unpacking(fab: bytes, flwr_home: Path) -> None:
    memory, flower = TaskMemory(), Counted()
    install = install_once(memory, flower)

    first = in_task(memory, lambda: install(fab, skip_prompt=True))
    assert Path(first).parent == flwr_home / "apps" and (Path(first) / "client" / "app.py").is_file()
    assert memory.recall(MEMORY_NAME, next(iter(memory._entries.values())).key) is not None  # noqa: SLF001

    # The counter lives in this process: a fork's call to Flower is invisible here, so count in the fork.
    def second() -> Path:
        path = install(fab, skip_prompt=True)
        if flower.calls:
            raise AssertionError("the second task unpacked the FAB again")
        return path

    assert in_task(memory, second) == first
    # And that folder is what Flower itself returns for these bytes.
    assert install_from_fab(fab, skip_prompt=True) == Path(first)


def test_other_content_or_a_missing_folder_goes_to_flower(fab: bytes, flwr_home: Path, tmp_path: Path) -> None:
    memory, flower = TaskMemory(), Counted()
    install = install_once(memory, flower)
    first = Path(in_task(memory, lambda: install(fab, skip_prompt=True)))

    other_app = tmp_path / "other"
    shutil.copytree(REPO, other_app, ignore=shutil.ignore_patterns(".git", ".venv", "tests", "data", "*.egg-info"))
    (other_app / "client" / "extra_module.py").write_text("CHANGED = True\n")
    other = build_fab_from_disk(other_app)
    assert other != fab

    def counted_install(content: bytes) -> Callable[[], Path]:
        def run() -> Path:
            path = install(content, skip_prompt=True)
            if flower.calls != 1:
                raise AssertionError(f"expected Flower's install once, got {flower.calls}")
            return path
        return run

    assert Path(in_task(memory, counted_install(other))) != first  # new content: Flower installs it


def test_a_remembered_folder_that_is_gone_is_installed_again(fab: bytes, flwr_home: Path) -> None:
    memory, flower = TaskMemory(), Counted()
    install = install_once(memory, flower)
    first = Path(in_task(memory, lambda: install(fab, skip_prompt=True)))
    shutil.rmtree(first)  # someone cleaned the Flower home between two rounds

    def again() -> Path:
        path = install(fab, skip_prompt=True)
        if flower.calls != 1:
            raise AssertionError("a missing install folder was not installed again")
        return path

    assert Path(in_task(memory, again)) == first
    assert (first / "client" / "app.py").is_file()


def test_a_corrupt_fab_still_fails_in_flowers_check(fab: bytes, flwr_home: Path) -> None:
    memory = TaskMemory()
    install = install_once(memory, install_from_fab)
    broken = fab[: len(fab) // 2]
    with pytest.raises(Exception):  # noqa: B017, PT011 - zipfile's or Flower's own error, whichever it meets
        install(broken, skip_prompt=True)
    assert memory._entries == {}  # noqa: SLF001 - nothing remembered for bytes that did not install


def test_calls_that_are_not_a_tasks_install_go_straight_to_flower(fab: bytes, flwr_home: Path,
                                                                   tmp_path: Path) -> None:
    memory, flower = TaskMemory(), Counted()
    install = install_once(memory, flower)
    elsewhere = tmp_path / "elsewhere"
    path = install(fab, install_dir=elsewhere, skip_prompt=True)
    assert path.parent == elsewhere / "apps" and flower.calls == 1
    assert memory._entries == {}  # noqa: SLF001 - outside a runtime's fork keep() stores nothing
