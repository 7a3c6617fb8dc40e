"""A FAB this site's warm runtime has already installed is not unpacked again for every task.

Flower's ClientApp process (``flwr.supernode.runtime.run_clientapp``) calls ``install_from_fab`` for every
message: it extracts the whole archive (113 files of fedsynth) into a temporary folder, checks each file
against the archive's own list of hashes, and then, finding the app already installed under
``apps/<publisher>.<name>.<version>.<hash prefix>``, returns that folder without using what it extracted.
That is 0.15 s of CPU in every task (cProfile of a 10-site deployment, 2026-12-05), ten times a round at ten
sites sharing two cores.

Here a task that installed a FAB tells the runtime (``client.task_memory``) the archive's full SHA-256 and
where it went; a later task with byte-identical content, whose install folder is still there, is given that
folder at once. Nothing is trusted that Flower would not trust: the archive was verified by Flower's own code
the first time, the same bytes verify the same way, and Flower itself loads an existing install folder
without looking inside it. Other content, another FLWR_HOME or a missing folder goes to Flower's function.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from client.task_memory import TaskMemory

MEMORY_NAME = "fab-install"
logger = logging.getLogger("fedsynth.fab_install")

Install = Callable[..., Path]


def install_once(memory: TaskMemory, flower_install: Install) -> Install:
    """``flower_install`` (Flower's ``install_from_fab``), skipped for content this runtime installed before."""

    def install(fab_file: Path | bytes, install_dir: Path | None = None, skip_prompt: bool = False) -> Path:
        if not isinstance(fab_file, bytes) or install_dir is not None or not skip_prompt:
            return flower_install(fab_file, install_dir=install_dir, skip_prompt=skip_prompt)
        key = _key(fab_file)
        kept = memory.recall(MEMORY_NAME, key)
        if kept is not None and Path(str(kept.facts["path"])).is_dir():
            logger.debug("FAB %s already installed by an earlier task of this runtime", key[:12])
            return Path(str(kept.facts["path"]))
        path = flower_install(fab_file, install_dir=install_dir, skip_prompt=skip_prompt)
        memory.keep(MEMORY_NAME, key, {"path": str(path)}, [])
        return path

    return install


def use_in_tasks(memory: TaskMemory) -> bool:
    """Route the tasks this runtime forks through :func:`install_once`; False (and a warning) if this Flower's
    ClientApp process no longer installs through ``install_from_fab``."""
    from flwr.supernode.runtime import run_clientapp

    flower_install = getattr(run_clientapp, "install_from_fab", None)
    if flower_install is None:
        logger.warning("this Flower's ClientApp process has no install_from_fab; every task installs its FAB")
        return False
    run_clientapp.install_from_fab = install_once(memory, flower_install)  # type: ignore[assignment]
    return True


def _key(content: bytes) -> str:
    """The archive's full SHA-256 and the Flower home it is installed under (``FLWR_HOME``, as Flower reads it)."""
    from flwr.supercore.utils import get_flwr_home

    home = os.path.realpath(get_flwr_home())
    return f"{hashlib.sha256(content).hexdigest()}@{home}"
