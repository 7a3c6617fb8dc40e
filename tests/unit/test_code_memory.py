"""App modules compiled once per warm runtime (client/code_memory.py): real forks importing real files, the
second task loading the first one's code, and a changed source compiled afresh."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from importlib.machinery import SourceFileLoader
from pathlib import Path

from client.code_memory import MEMORY_NAME, CodeMemory
from client.task_memory import TaskMemory
from tests.conftest import run_as_task


def in_task(memory: TaskMemory, code: CodeMemory, work: Callable[[], object]) -> dict[str, object]:
    """``work`` in a real fork that imports through ``code`` as a runtime's task does; what it saw."""

    def task() -> bytes:
        # What the feature is for: Python may not write __pycache__ (else the .pyc would serve the next task)
        sys.dont_write_bytecode = True
        code.install()
        value = work()
        handed = code.keep_new()
        return json.dumps({"value": value, "compiled": len(code.compiled), "hits": code.hits,
                           "handed": handed}).encode()

    return json.loads(run_as_task(memory, task))


def app_module(tmp_path: Path, name: str, answer: str) -> tuple[Path, Path, TaskMemory, CodeMemory]:
    """A module ``name`` whose ``answer()`` returns ``answer``, in an app folder under ``tmp_path/apps``; a fresh
    runtime memory and the code memory for that apps folder."""
    app = tmp_path / "apps" / "app"
    app.mkdir(parents=True, exist_ok=True)
    module = app / f"{name}.py"
    module.write_text(f"def answer():\n    return {answer!r}\n")
    memory = TaskMemory()
    return app, module, memory, CodeMemory(memory, str(tmp_path / "apps"))


def importer(folder: Path, module: str) -> Callable[[], object]:
    def run() -> object:
        sys.path.insert(0, str(folder))
        return importlib.import_module(module).answer()

    return run


def test_the_next_task_loads_the_code_the_first_compiled(tmp_path: Path) -> None:
    app = tmp_path / "apps" / "fedsynth.fedsynth.0.1.0.abcd1234"
    (app / "pkg").mkdir(parents=True)
    (app / "pkg" / "__init__.py").write_text("")
    (app / "pkg" / "mod.py").write_text("def answer():\n    return 41 + 1\n")
    memory = TaskMemory()
    code = CodeMemory(memory, str(tmp_path / "apps"))

    first = in_task(memory, code, importer(app, "pkg.mod"))
    assert first == {"value": 42, "compiled": 2, "hits": 0, "handed": True}
    assert memory.recall(MEMORY_NAME, code.key) is not None

    second = in_task(memory, code, importer(app, "pkg.mod"))
    assert second == {"value": 42, "compiled": 0, "hits": 2, "handed": False}
    assert SourceFileLoader.source_to_code is code._original  # noqa: SLF001 - this process's loader untouched


def test_a_changed_source_is_compiled_afresh(tmp_path: Path) -> None:
    app, module, memory, code = app_module(tmp_path, "changing", "old")
    assert in_task(memory, code, importer(app, "changing"))["value"] == "old"

    module.write_text("def answer():\n    return 'new'\n")  # same path, other bytes
    changed = in_task(memory, code, importer(app, "changing"))
    assert changed == {"value": "new", "compiled": 1, "hits": 0, "handed": True}
    # Both versions are known now; the old bytes would load the old code, the new the new.
    again = in_task(memory, code, importer(app, "changing"))
    assert again == {"value": "new", "compiled": 0, "hits": 1, "handed": False}


def test_files_outside_the_app_folder_are_left_to_python(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "library_module.py").write_text("def answer():\n    return 7\n")
    memory = TaskMemory()
    code = CodeMemory(memory, str(tmp_path / "apps"))
    for _ in range(2):
        assert in_task(memory, code, importer(outside, "library_module")) == {
            "value": 7, "compiled": 0, "hits": 0, "handed": False}
    assert memory.recall(MEMORY_NAME, code.key) is None


def test_code_of_another_python_is_never_offered(tmp_path: Path) -> None:
    memory = TaskMemory()
    one = CodeMemory(memory, str(tmp_path / "apps"))
    other = CodeMemory(memory, str(tmp_path / "other-apps"))
    assert one.key != other.key and one.key.startswith(importlib.util.MAGIC_NUMBER.hex())


def test_the_code_is_taken_from_memory_not_compiled_again(tmp_path: Path) -> None:
    """Planted under the source's hash, a different code object is what the import runs: proof the memory
    serves the import (and why only this site's own tasks may write it: see the module's trust note)."""
    import hashlib
    import marshal

    import numpy as np

    app, module, memory, code = app_module(tmp_path, "planted", "from source")
    planted = marshal.dumps(compile("def answer():\n    return 'from memory'\n", str(module), "exec"))
    entry = [str(module), hashlib.sha256(module.read_bytes()).hexdigest()]
    in_task(memory, code, lambda: memory.keep(MEMORY_NAME, code.key, {"modules": [entry]},
                                              [np.frombuffer(planted, dtype=np.uint8)]))
    assert in_task(memory, code, importer(app, "planted")) == {
        "value": "from memory", "compiled": 0, "hits": 1, "handed": False}
