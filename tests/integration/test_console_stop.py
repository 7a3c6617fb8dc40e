"""StopRun on a real Flower run: the coordinator stops after the first round; the run publishes what it has.

Then the finished folder is served read-only by `fedsynth console serve` (a real process) and read back with
`fedsynth console --once --json`, the way a monitoring script would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from server.demo import APP_DIR
from server.local_federation import _free_port, local_superlink, run_app
from shared.console.v1 import console_pb2 as pb
from shared.console.v1 import console_pb2_grpc as pb_grpc
from shared.console.auth import bearer
from shared.manifest import verify_output
from tests.conftest import SMALL_SCHEMA, write_site_table
from tests.integration.console_follow import ConsoleFollower

PLANNED = 30
SITES = 2


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("stop")
    schema = root / "schema.json"
    schema.write_text(json.dumps(SMALL_SCHEMA))
    sites = root / "sites"
    sites.mkdir()
    for i in range(SITES):
        write_site_table(sites / f"site-{i}.csv", rows=300, seed=i)
    replies: list[pb.StopRunResponse] = []

    def stop_once(stub: pb_grpc.ConsoleStub, admin: str) -> None:
        if not replies:
            replies.append(stub.StopRun(pb.StopRunRequest(reason="enough for a test"), metadata=bearer(admin), timeout=10))

    follower = ConsoleFollower(root / "console", on_round=stop_once)
    out = root / "out"
    config: dict[str, object] = {
        "out-dir": str(out), "sites-dir": str(sites), "schema-path": str(schema), "num-rounds": PLANNED,
        "min-sites": SITES, "synthetic-rows": 200, "dp.target-epsilon": 2.0, "train.local-steps": 2,
        "train.hidden": 16, "signing-key": str(root / "keys" / "server.pem"), "simulation.site-epsilon-cap": 2.0,
        "dp.accountant": "rdp", "evaluate.noise-multiplier": 0.0, **follower.run_config,
    }
    log_path = root / "run.log"
    with follower, local_superlink(root / "flower") as env, open(log_path, "w") as log:
        run_app(APP_DIR, num_sites=SITES, run_config=config, env=env, log=log)
    assert (out / "manifest.json").exists(), log_path.read_text()[-5000:]
    return {"root": root, "out": out, "follower": follower, "replies": replies}


def test_the_run_stops_early_and_publishes_the_rounds_it_completed(stopped: dict[str, Any]) -> None:
    follower: ConsoleFollower = stopped["follower"]
    assert stopped["replies"] and stopped["replies"][0].accepted
    ended = follower.events[-1].run_ended
    completed = ended.completed_rounds
    assert ended.status == pb.RUN_STATUS_STOPPED and "enough for a test" in ended.detail
    assert 1 <= completed < PLANNED
    manifest = json.loads((stopped["out"] / "manifest.json").read_text())
    assert (manifest["rounds"], manifest["rounds_planned"]) == (completed, PLANNED)
    assert verify_output(stopped["out"]).ok
    # Nothing was charged for rounds that never ran.
    entries = json.loads((stopped["out"] / "ledger.json").read_text())["entries"]
    assert max(e["round"] for e in entries) == completed


def test_a_finished_run_is_served_read_only_and_snapshotted_as_json(stopped: dict[str, Any]) -> None:
    follower: ConsoleFollower = stopped["follower"]
    address = f"127.0.0.1:{_free_port()}"
    command = [sys.executable, "-m", "server.cli", "console", "serve", str(stopped["out"]), "--address", address,
               "--tokens", str(follower.tokens), "--insecure"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()  # printed once the port is bound
        assert "read-only" in banner, banner
        env = {**os.environ, "FEDSYNTH_CONSOLE_TOKEN": follower.viewer}
        snapshot = subprocess.run(
            [sys.executable, "-m", "server.cli", "console", "--address", address, "--insecure", "--once", "--json"],
            capture_output=True, text=True, env=env, timeout=60,
        )
        refused = subprocess.run(
            [sys.executable, "-m", "server.cli", "console", "--address", address, "--insecure", "--once", "--json",
             "--token", "wrong"], capture_output=True, text=True, timeout=60,
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    assert snapshot.returncode == 0, snapshot.stderr
    state = json.loads(snapshot.stdout)
    assert follower.viewer not in snapshot.stdout + snapshot.stderr
    assert state["run_id"] == json.loads((stopped["out"] / "manifest.json").read_text())["run_id"]
    assert state["status"] == "stopped"
    assert sorted(site["name"] for site in state["sites"]) == [f"site-{i}" for i in range(SITES)]
    assert refused.returncode == 2 and "UNAUTHENTICATED" in refused.stderr and "wrong" not in refused.stderr
