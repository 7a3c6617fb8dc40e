"""A loopback deployment driven from Python, for the fault tests: the same processes and flags as
deploy/local/up.sh (a TLS SuperLink with SuperNode authentication and a database, one SuperNode per site with
its own key and table), with handles to kill and restart any of them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from server.certs import make_consortium_certs
from server.local_federation import _free_port
from server.node_keys import make_supernode_key
from server.split import deal_rows
from tests.conftest import SMALL_SCHEMA, write_site_table

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def clinic_deployment(root: Path, *, seed: int) -> LocalDeployment:
    """Three sites sharing a 900-row clinic table (tests.conftest), under ``root/d``."""
    (root / "schema.json").write_text(json.dumps(SMALL_SCHEMA))
    write_site_table(root / "all.csv", rows=900, seed=seed)
    return LocalDeployment(root / "d", 3, root / "all.csv", root / "schema.json")


class LocalDeployment:
    def __init__(self, root: Path, sites: int, data: Path, schema: Path) -> None:
        self.root, self.schema, self.names = root, schema, [f"site-{i}" for i in range(sites)]
        self.pki, self.logs = root / "pki", root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "FLWR_HOME": str(root / "flwr-home"), "FLWR_TELEMETRY_ENABLED": "0",
                    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "FLWR_DISABLE_UPDATE_CHECK": "1",
                    "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "FLWR_LOG_LEVEL": os.environ.get("FLWR_LOG_LEVEL", "INFO"),
                    "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])}
        make_consortium_certs(self.pki, ["127.0.0.1", "localhost"])
        for name in self.names:
            make_supernode_key(self.pki, name)
        deal_rows(data, schema, sites, root / "tables")
        self.port = _free_port()
        (root / "flwr-home").mkdir(exist_ok=True)
        (root / "flwr-home" / "config.toml").write_text(
            f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:{self.port}"\n'
            f'root-certificates = "{self.pki / "ca.crt"}"\n'
        )
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    # ---- processes ------------------------------------------------------------------------------------
    def _start(self, name: str, command: list[str], *, site: bool = False) -> subprocess.Popen[bytes]:
        """Start ``command`` as the leader of a process group (killed whole, apps included).

        Linux shares the CPU between sessions first (autogroup) and then between the processes in each. The
        coordinator's processes each get a session of their own; the sites' SuperNodes, with their runtimes and
        tasks, share this process's session, one group standing in for the sites' machines. With a session per
        site, the SuperLink had a 1/11 share of a 10-site machine while sites trained, and the replies of the
        sites that finished first waited for it (benchmarks/README.md, round_overhead).
        """
        log: IO[bytes] = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (the child holds it)
        group: dict[str, Any] = {"process_group": 0} if site else {"start_new_session": True}
        process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, **group)
        self.processes[name] = process
        return process

    def start_superlink(self) -> None:
        pki = self.pki
        self._start("superlink", [
            str(BIN / "flower-superlink"), "--ssl-ca-certfile", str(pki / "ca.crt"), "--ssl-certfile",
            str(pki / "server.crt"), "--ssl-keyfile", str(pki / "server.key"), "--enable-supernode-auth",
            "--isolation", "subprocess", "--database", str(self.root / "superlink.db"), "--host", "127.0.0.1",
            "--port", str(self.port),
        ])
        self.wait(lambda: self.flwr("ls", "local", check=False).returncode == 0, 60, "the SuperLink to start")

    def start_all(self) -> None:
        """The SuperLink, every site's key registered, every SuperNode started and online."""
        self.start_superlink()
        for name in self.names:
            self.register(self.pki / f"supernode-{name}.key.pub")
            self.start_supernode(name)
        self.wait(lambda: self.online() == len(self.names), 180, f"{len(self.names)} SuperNodes online")

    def register(self, key: Path) -> subprocess.CompletedProcess[str]:
        return self.flwr("supernode", "register", str(key), "local", check=False)

    def start_supernode(self, name: str, key: Path | None = None, *, max_retries: int | None = None) -> subprocess.Popen[bytes]:
        home = self.root / "sites" / name
        home.mkdir(parents=True, exist_ok=True)
        table = home / "table.csv"
        if not table.exists():
            (self.root / "tables" / f"{name}.csv").rename(table)
        command = [
            str(BIN / "fedsynth-supernode"), "--root-certificates", str(self.pki / "ca.crt"), "--superlink",
            f"127.0.0.1:{self.port}", "--auth-supernode-private-key", str(key or self.pki / f"supernode-{name}.key"),
            "--port", str(_free_port()), "--node-config",
            f'site="{name}" data-path="{table}" max-epsilon=10.0 schema-path="{self.schema}" '
            f'output-dir="{home / "received"}"',
        ]
        if max_retries is not None:
            command += ["--max-retries", str(max_retries)]
        return self._start(f"supernode-{name}", command, site=True)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill a process and everything it started (its apps), as a crash would."""
        process = self.processes.pop(name)
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)

    def stop(self) -> None:
        for name in list(self.processes):
            self.kill(name, signal.SIGTERM)

    # ---- the flwr CLI -----------------------------------------------------------------------------------
    def flwr(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "flwr"), *args], env=self.env, capture_output=True, text=True,
                              check=check, timeout=timeout)

    def online(self) -> int:
        listing = self.flwr("supernode", "ls", "local", "--format", "json", check=False)
        try:
            return sum(node.get("status") == "online" for node in json.loads(listing.stdout).get("nodes", []))
        except ValueError:
            return 0

    def submit(self, run_config: dict[str, object]) -> subprocess.Popen[bytes]:
        overrides = " ".join(f'{k}="{v}"' if isinstance(v, str) else f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                             for k, v in run_config.items())
        return self._start("flwr-run", [str(BIN / "flwr"), "run", str(REPO), "local", "--stream", "--run-config",
                                         overrides])

    def runs(self) -> list[dict[str, object]]:
        listing = self.flwr("ls", "local", "--format", "json", check=False)
        try:
            return list(json.loads(listing.stdout).get("runs", []))
        except ValueError:
            return []

    @staticmethod
    def wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {seconds:.0f}s for {what}")
            time.sleep(0.5)  # polling processes we do not control, up to a deadline



