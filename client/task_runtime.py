"""A site's warm task runtime: Flower's SuperExec loop, launching each ClientApp task as a fork of a process
that has already imported torch, Opacus and pandas.

Flower's subprocess isolation starts a fresh ``flwr-clientapp`` interpreter for every message, and importing
torch + Opacus + flwr there costs 3-5 s of CPU per site per round (benchmarks: ``round_overhead``). This
runtime is what ``fedsynth-supernode`` starts instead of ``flower-superexec``: it runs Flower's own
``run_superexec`` (task acquisition, tokens, the Runtime API client) with one difference, the executor. Each
task still runs Flower's ``run_clientapp`` in a process of its own (a crash or a leak stays in that task), but
that process is a copy-on-write fork of this one, so the heavy imports are already done.

What the fork must not inherit: this runtime never imports the app's own packages (``client``, ``server``,
``shared``), because Flower's loader reuses a module already in ``sys.modules`` and each task must run the
code of the FAB it was sent, not whatever is installed here; it never runs a torch operation (an OpenMP pool
or a CUDA context does not survive a fork). The child drops Flower's exit handlers and signal handlers of the
parent before it starts, and leaves with ``os._exit`` so it never unwinds into the parent's loop.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported at run time only after the preload check (see ``run``)
    from client.code_memory import CodeMemory
    from client.task_memory import TaskMemory

# Imported once here so that every task's fork starts with them loaded; these are the libraries whose import
# dominates a cold ClientApp (python -X importtime). The app's own packages are deliberately absent.
# torch._dynamo: torch.optim's Optimizer imports it on first construction, 1.35 s of a training task's CPU
# (cProfile of one task, 2026-12-04); importing it runs no torch operation, so the fork stays safe.
PRELOAD = ("numpy", "pandas", "torch", "torch._dynamo", "torch.optim", "opacus", "flwr.app", "flwr.clientapp",
           "flwr.supernode.runtime.run_clientapp", "cryptography.hazmat.primitives.asymmetric.ed25519")
APP_PACKAGES = ("client", "server", "shared")
DEFAULT_TASK_POLL_INTERVAL = "0.1"  # when no SuperNode wakes it (client.task_wakeup); Flower's default is 1 s

logger = logging.getLogger("fedsynth.task_runtime")


class ForkExecutor:
    """Flower's ``Executor`` protocol (flwr.supercore.superexec.executor.types), launching by ``os.fork``.

    Each fork gets a pipe back to ``memory`` (``client.task_memory``): what a task keeps there, the next
    forks inherit.
    """

    def __init__(self, memory: TaskMemory | None = None, compiled: CodeMemory | None = None) -> None:
        self.children: set[int] = set()
        self.memory = memory
        self.compiled = compiled

    def get_eligible_capacity(self, supported_task_types: set, *, insecure: bool = False,  # type: ignore[type-arg]
                              root_certificates_path: str | None = None) -> tuple[set, set[str]]:  # type: ignore[type-arg]
        del insecure, root_certificates_path
        return supported_task_types, set()

    def wait_for_capacity(self, task_type: object = None, *, fab_hash: str | None = None, insecure: bool = False,
                          root_certificates_path: str | None = None) -> None:
        del task_type, fab_hash, insecure, root_certificates_path

    def launch(self, spec: object) -> object:
        from flwr.supercore.constant import TaskType
        from flwr.supercore.superexec.executor.types import LaunchResult

        if spec.task_type != TaskType.CLIENT_APP:  # type: ignore[attr-defined]
            return LaunchResult.failed(f"the fedsynth task runtime runs ClientApps only, not {spec.task_type}")  # type: ignore[attr-defined]
        sys.stdout.flush()
        sys.stderr.flush()
        pipe = self.memory.before_fork() if self.memory is not None else None
        pid = os.fork()
        if pid == 0:  # the task
            if self.memory is not None and pipe is not None:
                self.memory.after_fork_in_child(pipe)
            os._exit(_run_task(spec, self.memory, self.compiled))
        if self.memory is not None and pipe is not None:
            self.memory.after_fork_in_parent(pipe)
        self.children.add(pid)
        return LaunchResult.accepted()

    def reconcile(self) -> None:
        """Reap finished tasks (no zombies)."""
        for pid in list(self.children):
            try:
                done, status, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                done, status, usage = pid, 0, None
            if done:
                self.children.discard(pid)
                if usage is not None:  # what a task costs this site's CPU, its reply's head start included
                    logger.debug("task process %d exited (%d) after %.2f s of CPU", pid,
                                 os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime)

    def close(self) -> None:
        if os.getpid() != _RUNTIME_PID:  # a task inherited this object; the runtime's tasks are not its own
            return
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


_RUNTIME_PID = os.getpid()


def _run_task(spec: object, memory: TaskMemory | None = None, compiled: CodeMemory | None = None) -> int:
    """In the fork: forget the parent's handlers and app modules, run Flower's ClientApp process body, and once
    its reply is out, what the task left for that moment (``client.task_memory``)."""
    try:
        from flwr.supercore import telemetry
        from flwr.supercore.exit import exit_handler
        from flwr.supercore.tls import validate_and_resolve_root_certificates
        from flwr.supernode.runtime.run_clientapp import run_clientapp

        for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGQUIT", signal.SIGTERM)):
            signal.signal(sig, signal.SIG_DFL)
        exit_handler.registered_exit_handlers.clear()
        exit_handler._lock_handlers = threading.Lock()  # noqa: SLF001 (a lock another thread held at fork)
        telemetry.state_lock = threading.Lock()
        for name in [m for m in sys.modules if m.split(".")[0] in APP_PACKAGES]:
            del sys.modules[name]
        run_clientapp(
            runtime_api_address=spec.runtime_api_address,  # type: ignore[attr-defined]
            token=spec.token,  # type: ignore[attr-defined]
            insecure=spec.insecure,  # type: ignore[attr-defined]
            certificates=validate_and_resolve_root_certificates(
                spec.root_certificates_path, spec.insecure),  # type: ignore[attr-defined]
            parent_pid=spec.parent_pid,  # type: ignore[attr-defined]
            runtime_dependency_install=spec.runtime_dependency_install,  # type: ignore[attr-defined]
        )
        code = 0
    except SystemExit as done:  # Flower's ClientApp process ends so, after it pushed the reply and the status
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:  # noqa: BLE001 - the task must end here, never in the parent's loop
        logger.exception("the ClientApp task failed before Flower could report it")
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    if compiled is not None:  # the app modules this task compiled, for the next tasks (client.code_memory)
        compiled.keep_new()
    if code == 0 and memory is not None:
        memory.run_after_reply()
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def preload() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in APP_PACKAGES and m != __name__ and m != "client")
    if leaked:  # a preloaded library pulled in the app's code: tasks would run it instead of the FAB's
        raise RuntimeError(f"the task runtime must not import the app's modules, but these are loaded: {leaked}")
    # The preloaded libraries are millions of objects that live as long as the runtime. Frozen, a task's garbage
    # collections never walk them (reading a 10,000-row table went from 0.36 s to 0.03 s in a task, most of
    # it the collector), and the forks do not dirty their copy-on-write pages by touching them.
    gc.freeze()


def run(runtime_api_address: str, *, parent_pid: int | None, root_certificates: str | None,
        auth_secret_file: str | None, wake_fd: int | None = None) -> None:
    """Preload, then run Flower's SuperExec loop with the fork executor (never returns)."""
    if os.environ.get("FLWR_LOG_LEVEL", "").upper() == "DEBUG":  # with Flower's own debug lines: each task's CPU
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("fedsynth %(levelname)s %(message)s"))
        runtime_loggers = logging.getLogger("fedsynth")  # this module's, client.fab_install's, client.code_memory's
        runtime_loggers.addHandler(handler)
        runtime_loggers.setLevel(logging.DEBUG)
    preload()
    woken = False
    if wake_fd is not None:
        from client.task_wakeup import FALLBACK_POLL_INTERVAL, wake_superexec_on

        woken = wake_superexec_on(wake_fd)
    # Woken by the SuperNode, the loop need only ask at Flower's own pace; otherwise it asks often.
    os.environ.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL",
                          FALLBACK_POLL_INTERVAL if woken else DEFAULT_TASK_POLL_INTERVAL)
    from shared.flower_latency import prompt_object_pulls  # purged again in each task, like the app's code

    prompt_object_pulls()  # inherited by every task: its message's objects are pulled promptly
    from flwr.supercore.auth import load_superexec_auth_secret
    from flwr.supercore.superexec import run_superexec as superexec

    from client import code_memory, fab_install
    from client.task_memory import TaskMemory, publish  # the object outlives the purge of its module in tasks

    memory = TaskMemory()
    publish(memory)
    fab_install.use_in_tasks(memory)  # a FAB is unpacked and checked by the first task that gets it, not each
    executor = ForkExecutor(memory, code_memory.use_in_tasks(memory))  # and its modules compiled once
    # Flower's loop builds its executor by name (subprocess or kubernetes); this is the one seam to hand it ours.
    superexec.get_executor = lambda *_args, **_kwargs: executor  # type: ignore[assignment]
    secret = load_superexec_auth_secret(secret_file=auth_secret_file) if auth_secret_file else None
    superexec.run_superexec(
        runtime_api_address=runtime_api_address, insecure=root_certificates is None,
        root_certificates_path=root_certificates, superexec_auth_secret=secret, parent_pid=parent_pid,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m client.task_runtime", description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-api-address", required=True, help="the SuperNode's Runtime API, HOST:PORT")
    parser.add_argument("--parent-pid", type=int, help="exit when this process (the SuperNode) exits")
    parser.add_argument("--root-certificates", help="CA of the Runtime API's TLS certificate (none: plain HTTP)")
    parser.add_argument("--superexec-auth-secret-file", help="the SuperNode's SuperExec auth secret, if it has one")
    parser.add_argument("--wake-fd", type=int, help="a pipe the SuperNode writes to when it has created a task "
                        "(client.task_wakeup); without it the runtime asks for a task every 0.1 s")
    args = parser.parse_args(argv)
    run(args.runtime_api_address, parent_pid=args.parent_pid, root_certificates=args.root_certificates,
        auth_secret_file=args.superexec_auth_secret_file, wake_fd=args.wake_fd)


if __name__ == "__main__":
    main()
