"""The app's modules compiled once per warm runtime, not once per task.

Each task of a site's warm runtime (``client.task_runtime``) imports the FAB's modules afresh, as it must (it
runs the code it was sent). Where Python may not write ``__pycache__`` (``PYTHONDONTWRITEBYTECODE``, as in our
container image, or an install folder it cannot write), every task compiled all 36 modules from source: 0.075
s of CPU a task (cProfile of a 10-site deployment, 2026-12-05).

Here the runtime's :class:`~client.task_memory.TaskMemory` plays ``__pycache__``: a task hands back the code
objects it compiled for files under Flower's app folder, marshalled, each under the SHA-256 of the exact source
bytes it came from, and later tasks load a module's code from there when its source still hashes the same (as
a hash-checked ``.pyc`` does). Nothing reaches the disk.

Trust: a later task runs code a former task compiled. Both are tasks of the same site's runtime running the
same site's installed app as the same user, which could as well rewrite the install folder; the runtime itself
only stores the bytes and never loads them. Anything outside the app folder, or compiled with another
optimisation level, goes to Python's own loader unchanged.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import marshal
import os
from importlib.machinery import SourceFileLoader
from types import CodeType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from client.task_memory import TaskMemory

MEMORY_NAME = "app-bytecode"
logger = logging.getLogger("fedsynth.code_memory")


class CodeMemory:
    """Installed on ``SourceFileLoader`` by the runtime (:meth:`install`), used by the tasks it forks."""

    def __init__(self, memory: TaskMemory, apps_root: str) -> None:
        self.memory = memory
        self.root = os.path.join(os.path.realpath(apps_root), "")
        # The interpreter's bytecode version: code marshalled by another Python is never offered.
        self.key = f"{importlib.util.MAGIC_NUMBER.hex()}@{self.root}"
        self.compiled: dict[tuple[str, str], bytes] = {}  # this task's new entries (empty in the runtime)
        self.hits = 0
        self._known: tuple[int, dict[tuple[str, str], bytes]] = (0, {})
        self._original = SourceFileLoader.source_to_code

    def install(self) -> None:
        memory_of_code = self
        original = self._original

        def source_to_code(loader: SourceFileLoader, data: bytes, path: str, *, _optimize: int = -1) -> CodeType:
            if _optimize != -1 or not os.path.realpath(path).startswith(memory_of_code.root):
                return original(loader, data, path, _optimize=_optimize)  # type: ignore[call-arg]
            return memory_of_code.code_for(loader, data, path)

        SourceFileLoader.source_to_code = source_to_code  # type: ignore[assignment,method-assign]

    def code_for(self, loader: SourceFileLoader, data: bytes, path: str) -> CodeType:
        entry = (path, hashlib.sha256(data).hexdigest())
        marshalled = self.known().get(entry)
        if marshalled is not None:
            self.hits += 1
            return marshal.loads(marshalled)
        code = self._original(loader, data, path)  # type: ignore[call-arg]
        self.compiled[entry] = marshal.dumps(code)
        return code

    def known(self) -> dict[tuple[str, str], bytes]:
        kept = self.memory.recall(MEMORY_NAME, self.key)
        if kept is None:
            return {}
        if self._known[0] != id(kept):
            modules = kept.facts.get("modules")
            if not isinstance(modules, list) or len(modules) != len(kept.arrays):
                return {}
            self._known = (id(kept), {(str(p), str(h)): a.tobytes() for (p, h), a in zip(modules, kept.arrays)})
        return self._known[1]

    def keep_new(self) -> bool:
        """At the end of a task: hand the runtime every module it now knows, if this task compiled any."""
        if not self.compiled:
            return False
        everything = {**self.known(), **self.compiled}
        try:
            kept = self.memory.keep(
                MEMORY_NAME, self.key, {"modules": [list(entry) for entry in everything]},
                [np.frombuffer(code, dtype=np.uint8) for code in everything.values()],
            )
        except Exception:  # noqa: BLE001 - a head start lost: the next task compiles from source
            logger.warning("could not hand the compiled app modules to the runtime", exc_info=True)
            return False
        logger.debug("compiled %d app modules (%d from memory); handed to the runtime: %s",
                     len(self.compiled), self.hits, kept)
        return kept


def use_in_tasks(memory: TaskMemory) -> CodeMemory:
    """The runtime's call: compiled app modules are kept for the tasks it forks from now on."""
    from flwr.common.constant import APP_DIR
    from flwr.supercore.utils import get_flwr_home

    code_memory = CodeMemory(memory, str(get_flwr_home() / APP_DIR))
    code_memory.install()
    return code_memory
