"""``fedsynth-supernode``: Flower's ``flower-supernode``, run in this process with two changes for round latency.

1. Tasks go to the site's warm task runtime (``client.task_runtime``), started here as the SuperNode's child
   in place of ``flower-superexec``: the SuperNode runs with ``--isolation process`` and each ClientApp task is a
   fork of a process that already imported torch and Opacus, instead of a fresh interpreter (3-5 s a round).
   The SuperNode wakes the runtime through a pipe when it creates a task (``client.task_wakeup``), so the
   runtime does not have to ask for one many times a second.
2. Flower's fixed waits are shortened (``shared.flower_latency``): the SuperNode asks the SuperLink for its
   next message every ``--poll-interval`` seconds (0.25) instead of every 3 s, and retries an object that is
   not stored yet after 50 ms instead of 1 s. Each poll is one small authenticated request; raise the
   interval for hundreds of sites.

Every other flag is Flower's own (``flower-supernode --help``). ``--cold`` runs Flower's stock subprocess
isolation (a fresh ``flwr-clientapp`` per message) with the prompt polling only.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

logger = logging.getLogger("fedsynth.supernode")
RESTART_DELAY_S = 2.0


def _runtime_command(flower: argparse.Namespace, wake_fd: int | None = None) -> list[str]:
    host = flower.host or "127.0.0.1"
    command = [sys.executable, "-m", "client.task_runtime", "--runtime-api-address",
               f"[{host}]:{flower.port}" if ":" in host else f"{host}:{flower.port}", "--parent-pid", str(os.getpid())]
    if wake_fd is not None:
        command += ["--wake-fd", str(wake_fd)]
    if flower.ssl_certfile:
        command += ["--root-certificates", flower.ssl_ca_certfile or flower.ssl_certfile]
    if flower.superexec_auth_secret_file:
        command += ["--superexec-auth-secret-file", flower.superexec_auth_secret_file]
    return command


def _keep_running(command: list[str], pass_fds: tuple[int, ...] = ()) -> None:
    """Start the task runtime and restart it if it ever dies, so a site never silently stops taking tasks."""
    def watch() -> None:
        while True:
            process = subprocess.Popen(command, pass_fds=pass_fds)  # noqa: S603 - our own interpreter and module
            code = process.wait()
            logger.warning("the task runtime exited (code %s); restarting it in %.0f s", code, RESTART_DELAY_S)
            time.sleep(RESTART_DELAY_S)

    threading.Thread(target=watch, name="fedsynth-task-runtime", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> None:
    from flwr.supernode.cli.flower_supernode import _parse_args_run_supernode, flower_supernode

    from client.task_wakeup import WakeUp, notify_on_new_tasks
    from shared.flower_latency import POLL_INTERVAL_S, prompt_object_pulls, prompt_polling
    from shared.logs import configure_logging

    configure_logging()
    ours = argparse.ArgumentParser(prog="fedsynth-supernode", add_help=False, usage="%(prog)s [fedsynth options] "
                                   "[flower-supernode options, except --isolation]")
    ours.add_argument("--poll-interval", type=float, default=POLL_INTERVAL_S,
                      help=f"seconds between two asks for the next message (default {POLL_INTERVAL_S}; Flower: 3)")
    ours.add_argument("--cold", action="store_true",
                      help="Flower's subprocess isolation: a fresh flwr-clientapp per message, no warm runtime")
    if {"-h", "--help"} & set(sys.argv[1:] if argv is None else argv):
        print(ours.format_help())  # then Flower's own help, below
    args, rest = ours.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if not 0.01 <= args.poll_interval <= 60:
        raise SystemExit(f"fedsynth-supernode: --poll-interval must be between 0.01 and 60 s, not {args.poll_interval}")
    if any(a == "--isolation" or a.startswith("--isolation=") for a in rest):
        raise SystemExit("fedsynth-supernode chooses the isolation itself (warm task runtime, or --cold for "
                         "Flower's subprocess isolation); drop --isolation")
    rest += ["--isolation", "subprocess" if args.cold else "process"]
    flower = _parse_args_run_supernode().parse_args(rest)  # Flower's own validation of its flags, up front
    prompt_polling(args.poll_interval)
    prompt_object_pulls()
    if not args.cold:
        wake = WakeUp()  # the runtime asks for a task when this SuperNode made one, not 10 times a second
        hooked = notify_on_new_tasks(wake)
        _keep_running(_runtime_command(flower, wake.reader if hooked else None), (wake.reader,) if hooked else ())
    sys.argv = ["flower-supernode", *rest]
    flower_supernode()


if __name__ == "__main__":
    main()
