"""The real thing end to end in a real terminal: `fedsynth console` (the installed CLI entry point, TLS, a token
file) in a tmux pane, against the real console server and RunMonitor, through a server restart to the run's end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from server.certs import make_consortium_certs
from server.console.server import ConsoleServer
from server.console.tokens import add_token
from server.local_federation import _free_port
from shared.console.transport import TLSFiles
from shared.console.v1 import console_pb2 as pb
from tests.conftest import require_tool
from tests.integration.console_driver import Federation
from tests.integration.test_dashboard_live import _poll

pytestmark = pytest.mark.timeout(120)
REPO = Path(__file__).resolve().parents[2]


def test_the_dashboard_follows_a_real_console_through_a_restart(tmp_path: Path) -> None:
    require_tool("tmux", "apt-get install tmux to draw the dashboard in a real terminal")
    make_consortium_certs(tmp_path / "pki", ["127.0.0.1"])
    token_file = tmp_path / "viewer.token"
    token_file.write_text(add_token(tmp_path / "tokens.json", "observer", "viewer"))
    tls = TLSFiles(cert=tmp_path / "pki" / "server.crt", key=tmp_path / "pki" / "server.key")
    address = f"127.0.0.1:{_free_port()}"
    exit_file = tmp_path / "exit-code"
    fedsynth = Path(sys.executable).with_name("fedsynth")
    command = (f"{fedsynth} console --address {address} --tls-ca {tmp_path / 'pki' / 'ca.crt'} "
               f"--token-file {token_file}; echo $? > {exit_file}; read")
    tmux = ["tmux", "-L", f"fedsynth-test-{uuid.uuid4().hex[:12]}", "-f", "/dev/null"]
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}

    def screen_until(done: Callable[[str], bool]) -> str:
        screen = _poll(tmux, done, seconds=30.0)
        assert done(screen), screen
        return screen

    first = Federation(tmp_path / "run-1")
    server = ConsoleServer(first.monitor, address=address, tokens=tmp_path / "tokens.json", tls=tls).start()
    subprocess.run([*tmux, "new-session", "-d", "-s", "dash", "-x", "130", "-y", "40", "-c", str(REPO),
                    "bash", "-c", command], check=True, env=environment)
    try:
        first.round(1)
        first.round(2)
        screen = screen_until(lambda text: "round 2/5" in text and "site-b" in text and "connected" in text)
        rows = {line.split()[1]: line for line in screen.splitlines() if line.startswith("│ ")}
        assert "refused" in rows["site-b"] and "dropped" in rows["node-7"] and "updated" in rows["site-a"], screen
        assert "record" in rows["site-a"] and "/3.00" in rows["site-a"], screen

        server.stop(grace=0.2)  # the server goes away mid-run...
        screen_until(lambda text: "reconnecting" in text)
        second = Federation(tmp_path / "run-2")  # ...and comes back (a new process replays its own history)
        for number in (1, 2, 3):
            second.round(number)
        server = ConsoleServer(second.monitor, address=address, tokens=tmp_path / "tokens.json", tls=tls).start()
        screen_until(lambda text: "round 3/5" in text and "connected" in text)

        second.round(4)
        second.round(5)
        second.monitor.ended(pb.RUN_STATUS_FINISHED, "published 300 synthetic rows after 5 of 5 rounds")
        screen = screen_until(lambda _: exit_file.exists())
        assert exit_file.read_text().strip() == "0" and "finished" in screen and "Traceback" not in screen, screen
        assert "round 5/5" in screen, screen
    finally:
        server.stop(grace=0.2)
        subprocess.run([*tmux, "kill-server"], capture_output=True, check=False)
