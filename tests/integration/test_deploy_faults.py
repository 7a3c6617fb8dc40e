"""Faults on a real loopback deployment (TLS SuperLink with SuperNode authentication, one SuperNode per site):
a SuperNode killed mid-run, and a SuperNode whose key nobody registered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from server.node_keys import make_supernode_key
from shared.ledger import Ledger
from shared.manifest import verify_output
from tests.integration.deployment import clinic_deployment

ROUNDS = 5
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("faults")
    deployment = clinic_deployment(root, seed=1)
    try:
        deployment.start_all()
        out = root / "run"
        run = deployment.submit({
            "schema-path": str(root / "schema.json"), "out-dir": str(out), "signing-key": str(root / "key.pem"),
            "num-rounds": ROUNDS, "min-sites": 2, "synthetic-rows": 200, "train.local-steps": 2, "train.hidden": 16,
            "dp.accountant": "rdp",
        })
        rounds = out / "rounds.json"
        deployment.wait(lambda: rounds.exists() and len(json.loads(rounds.read_text())["rounds"]) >= 2, 300,
                        "two rounds")
        deployment.kill("supernode-site-2")  # SIGKILL to the node and its apps: a crash, mid-run
        run.wait(timeout=600)
        yield {"deployment": deployment, "out": out, "root": root}
    finally:
        deployment.stop()


def test_the_run_finishes_with_the_sites_that_remain(killed: Any) -> None:
    deployment, out = killed["deployment"], killed["out"]
    assert [r["status"] for r in deployment.runs()] == ["finished:completed"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rounds"] == ROUNDS and verify_output(out).ok
    rounds = json.loads((out / "rounds.json").read_text())["rounds"]
    assert all(set(r["noisy_loss"]) == {"site-0", "site-1"} for r in rounds[3:])
    dropped = [r for r in rounds if r["sites"].get("site-2", {}).get("status") == "dropped"]
    assert dropped, "the killed site should show as dropped (named, not as the SuperLink's node id)"
    assert not any(name.startswith("node-") for r in rounds for name in r["sites"])


def test_the_killed_sites_ledger_is_intact_and_covers_what_the_server_counted(killed: Any) -> None:
    root, out = killed["root"], killed["out"]
    local = Ledger.load(root / "d" / "sites" / "site-2" / "table.ledger.json")
    assert local.verify() == len(local.entries)  # every epsilon recomputes: nothing torn by the kill
    mirror = Ledger.load(out / "ledger.json")
    counted = {e.round for e in mirror.entries_for("site-2", "record")}
    charged = {e.round for e in local.entries_for("site-2", "record")}
    # Write-ahead: the site charged every round the server counted (and perhaps the one it died in).
    assert counted and counted <= charged and max(charged) <= max(counted) + 1
    assert mirror.verify() == len(mirror.entries)


def test_a_supernode_with_an_unregistered_key_is_refused(killed: Any) -> None:
    deployment = killed["deployment"]
    rogue = make_supernode_key(killed["root"] / "rogue", "site-2")  # the right name, a key nobody registered
    process = deployment.start_supernode("site-2", key=rogue.private, max_retries=2)
    assert process.wait(timeout=120) != 0
    log = (deployment.logs / "supernode-site-2.log").read_text()
    assert "Exit Code: 305" in log  # Flower: the SuperLink refused the node's authentication
    assert deployment.online() == 2
