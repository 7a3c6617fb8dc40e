"""deploy/local/up.sh with 3 sites: a real SuperLink (TLS, SuperNode authentication), 3 real SuperNodes with
their own keys and tables, `flwr run`, a checked finish, and every process stopped afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.manifest import verify_output
from tests.conftest import SMALL_SCHEMA, write_site_table

REPO = Path(__file__).resolve().parents[2]
SITES = 3
ROUNDS = 2


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("deploy")
    (root / "schema.json").write_text(json.dumps(SMALL_SCHEMA))
    write_site_table(root / "all.csv", rows=900, seed=1)
    env = {**os.environ, "FEDSYNTH_BIN": str(Path(sys.executable).parent), "DATA": str(root / "all.csv"),
           "SCHEMA": str(root / "schema.json"), "ROUNDS": str(ROUNDS), "ROWS": "200",
           "RUN_CONFIG": 'train.local-steps=2 train.hidden=16 dp.accountant="rdp"'}
    result = subprocess.run(["bash", str(REPO / "deploy" / "local" / "up.sh"), str(SITES), str(root / "out")],
                            env=env, capture_output=True, text=True, timeout=900)
    return {"out": root / "out", "result": result}


def test_the_deployment_finishes_and_its_outputs_verify(deployment: dict[str, object]) -> None:
    result = deployment["result"]
    out = deployment["out"]
    assert isinstance(result, subprocess.CompletedProcess) and isinstance(out, Path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "signature valid" in result.stdout
    assert verify_output(out / "run").ok
    manifest = json.loads((out / "run" / "manifest.json").read_text())
    assert manifest["rounds"] == ROUNDS and manifest["sites"] == [f"site-{i}" for i in range(SITES)]


def test_it_ran_over_tls_with_authenticated_supernodes(deployment: dict[str, object]) -> None:
    out = deployment["out"]
    assert isinstance(out, Path)
    connection = (out / "flwr-home" / "config.toml").read_text()
    assert "root-certificates" in connection and "insecure" not in connection
    superlink = (out / "logs" / "superlink.log").read_text()
    assert "https://127.0.0.1" in superlink
    registered = (out / "logs" / "register.log").read_text()
    assert registered.count("registered successfully") == SITES


def test_each_site_kept_its_ledger_and_received_the_table(deployment: dict[str, object]) -> None:
    out = deployment["out"]
    assert isinstance(out, Path)
    run_id = json.loads((out / "run" / "manifest.json").read_text())["run_id"]
    for i in range(SITES):
        site = out / "sites" / f"site-{i}"
        entries = json.loads((site / "table.ledger.json").read_text())["entries"]
        assert sorted({e["round"] for e in entries}) == list(range(1, ROUNDS + 2))  # rounds, then the evaluation
        assert verify_output(site / "received" / run_id).ok
        assert (oct((out / "pki" / f"supernode-site-{i}.key").stat().st_mode & 0o777)) == "0o600"


def test_each_site_encoded_its_table_once_and_reused_it(deployment: dict[str, object]) -> None:
    out = deployment["out"]
    assert isinstance(out, Path)
    for i in range(SITES):  # every task is a fresh fork; the warm runtime's memory carried the table over
        log = (out / "logs" / f"supernode-site-{i}.log").read_text()
        assert log.count("rows read") == 1 + 1  # round 1's training task, and the evaluation's hold-out
        assert log.count("validated and encoded in an earlier round of this runtime; reused") == ROUNDS - 1


def test_each_sites_supernode_wakes_its_runtime(deployment: dict[str, object]) -> None:
    out = deployment["out"]
    assert isinstance(out, Path)
    for i in range(SITES):  # both ends of client.task_wakeup hooked into the real Flower processes
        log = (out / "logs" / f"supernode-site-{i}.log").read_text()
        assert "no create_task to hook" not in log and "no sleep to wake" not in log


def test_every_process_it_started_is_gone(deployment: dict[str, object]) -> None:
    out = deployment["out"]
    assert isinstance(out, Path)
    pids = [int(p.read_text()) for p in (out / "logs").glob("*.pid")]
    assert len(pids) == 1 + SITES
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
