"""Running the fedsynth app on Flower's simulation engine from a script, the way `flwr run` does by hand.

We start our own `flower-superlink --simulation` as a child process on free loopback ports with a private
FLWR_HOME, so a demo or a test neither collides with a SuperLink the user runs nor leaves one behind, then
submit the app with `flwr run --stream`. `flwr run` exits 0 even when the run failed, so success is judged by
the outputs the ServerApp writes, which the caller checks.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from shared.errors import FedsynthError

_STARTUP_SECONDS = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bin(name: str) -> str:
    local = Path(sys.executable).with_name(name)
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise FedsynthError(f"'{name}' is not installed; install fedsynth with its dependencies (pip install -e .)")
    return found


def flower_env(flwr_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        FLWR_HOME=str(flwr_home),
        FLWR_TELEMETRY_ENABLED="0",
        # Flower forks its simulation from processes that may have started OpenBLAS's thread pool; a forked
        # pool can spin forever. Sites use one torch thread each anyway (shared/device.py).
        OPENBLAS_NUM_THREADS="1",
        # Offline machines, and an unpinned torch would pull CUDA wheels: never install at run time.
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        FLWR_DISABLE_UPDATE_CHECK="1",
        PYTHONUNBUFFERED="1",
        RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO="0",
        # The SuperLink starts `flower-superexec` and friends by name: find them beside this interpreter even
        # when the virtualenv is not activated (`.venv/bin/fedsynth demo`).
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    )
    return env


@contextmanager
def local_superlink(workdir: Path) -> Iterator[dict[str, str]]:
    """A private simulation SuperLink; yields the environment under which `flwr` reaches it."""
    flwr_home = workdir / "flwr-home"
    flwr_home.mkdir(parents=True, exist_ok=True)
    api, control = _free_port(), _free_port()
    (flwr_home / "config.toml").write_text(
        f'[superlink]\ndefault = "fedsynth"\n\n[superlink.fedsynth]\naddress = "127.0.0.1:{api}"\ninsecure = true\n'
    )
    env = flower_env(flwr_home)
    log = open(workdir / "superlink.log", "w")  # noqa: SIM115 - closed below
    command = [
        _bin("flower-superlink"), "--insecure", "--simulation", "--isolation", "subprocess",
        "--control-api-address", f"127.0.0.1:{control}", "--host", "127.0.0.1", "--port", str(api),
    ]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(api, process, workdir / "superlink.log")
        yield env
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FedsynthError(f"flower-superlink exited with code {process.returncode}; see {log_path}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)  # polling a port that is not yet bound; not test synchronisation
    raise FedsynthError(f"flower-superlink did not start within {_STARTUP_SECONDS:.0f}s; see {log_path}")


def run_app(
    app_dir: Path, *, num_sites: int, run_config: dict[str, object], env: dict[str, str], log: IO[str] | None = None
) -> int:
    """`flwr run APP --stream` with the given overrides; output goes to ``log`` or the terminal.

    A run whose simulation engine could not start Ray is submitted once more (see ``_RAY_DID_NOT_START``).
    """
    overrides = " ".join(f"{k}={_toml(v)}" for k, v in run_config.items())
    command = [
        _bin("flwr"), "run", str(app_dir), "--stream",
        "--federation-config", f"num-supernodes={num_sites}", "--run-config", overrides,
    ]
    return run_retrying_engine_start(command, env=env, log=log)


# Ray gives its raylet a fixed 30 s to register (ray/_private/node.py); on a small, busy machine (CI's 2 cores)
# it sometimes misses that, and Flower ends the run before any site was asked for anything. Nothing was charged
# then (no site trained, no release was made) and the ServerApp writes atomically, so submitting the run again
# is safe; without the retry a demo or a test fails for the machine's load, not for fedsynth.
_RAY_DID_NOT_START = "The current node timed out during startup"
_ENGINE_START_ATTEMPTS = 2


def run_retrying_engine_start(command: list[str], *, env: dict[str, str], log: IO[str] | None = None) -> int:
    """Runs ``command``, relaying its output to ``log`` (or stdout); again once if Ray did not start."""
    sink = log if log is not None else sys.stdout
    for attempt in range(1, _ENGINE_START_ATTEMPTS + 1):
        code, engine_failed = _relay(command, env, sink)
        if not engine_failed or attempt == _ENGINE_START_ATTEMPTS:
            return code
        sink.write(f"fedsynth: Flower's simulation engine could not start Ray in time (attempt {attempt} of "
                   f"{_ENGINE_START_ATTEMPTS}; the machine may be busy); submitting the run again\n")
        sink.flush()
    raise AssertionError("unreachable")


def _relay(command: list[str], env: dict[str, str], sink: IO[str]) -> tuple[int, bool]:
    engine_failed = False
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sink.write(line)
            sink.flush()  # the coordinator follows a --stream run as it happens
            engine_failed = engine_failed or _RAY_DID_NOT_START in line
    return process.returncode, engine_failed


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
