"""The server side killed mid-run on a real loopback deployment, then restarted: the run resumes from its last
checkpoint, round numbers go on, and every site's epsilon is the same in its own ledger and in the consortium's
(nothing forgotten, nothing counted twice)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from server.checkpoint import read_checkpoint
from shared.ledger import Ledger
from shared.manifest import verify_output
from tests.integration.deployment import clinic_deployment

ROUNDS = 5
pytestmark = pytest.mark.timeout(900)


def _charged(root: Path, site: str) -> list[int]:
    """The rounds a site's own ledger has charged (written before its update leaves)."""
    path = root / "d" / "sites" / site / "table.ledger.json"
    try:
        return [e.round for e in Ledger.load(path).entries_for(site, "record")]
    except Exception:  # not there yet, or being replaced
        return []


def _state(out: Path) -> dict[str, Any]:
    path = out / "rounds.json"
    return json.loads(path.read_text()) if path.exists() else {"rounds": []}


@pytest.fixture(scope="module")
def resumed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("resume")
    deployment = clinic_deployment(root, seed=2)
    out = root / "run"
    run_config: dict[str, object] = {
        "schema-path": str(root / "schema.json"), "out-dir": str(out), "signing-key": str(root / "key.pem"),
        "num-rounds": ROUNDS, "min-sites": 3, "synthetic-rows": 200, "train.local-steps": 2, "train.hidden": 16,
        "dp.accountant": "rdp",
    }
    try:
        deployment.start_all()
        first = deployment.submit(run_config)
        # Round 3 on its way to the sites. site-2's SuperNode is frozen, so round 3 cannot close; site-0 and
        # site-1 train it (and charge it, write-ahead). Then the server machine dies: SuperLink and the ServerApp
        # it runs, SIGKILL. Round 3 is then charged at two sites and recorded nowhere on the server.
        deployment.wait(lambda: _state(out).get("in_flight", {}).get("round") == 3, 300, "round 3 to be sent")
        frozen = deployment.processes["supernode-site-2"].pid
        os.kill(frozen, signal.SIGSTOP)
        deployment.wait(lambda: all(3 in _charged(root, site) for site in ("site-0", "site-1")), 120,
                        "site-0 and site-1 to train round 3")
        deployment.kill("superlink")
        deployment.kill("flwr-run")
        os.kill(frozen, signal.SIGCONT)
        before = _state(out)

        deployment.start_superlink()  # the same database (registered keys) and address
        deployment.wait(lambda: deployment.online() == 3, 180, "the SuperNodes to reconnect")
        second = deployment.submit({**run_config, "resume": True})
        second.wait(timeout=600)
        yield {"deployment": deployment, "out": out, "root": root, "before": before}
    finally:
        deployment.stop()


def test_the_resumed_run_finishes_and_round_numbers_go_on(resumed: Any) -> None:
    out, before = resumed["out"], resumed["before"]
    assert "finished:completed" in [r["status"] for r in resumed["deployment"].runs()]
    assert verify_output(out).ok
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rounds"] == ROUNDS
    numbers = [r["round"] for r in _state(out)["rounds"]]
    assert numbers[:len(before["rounds"])] == [r["round"] for r in before["rounds"]] == [1, 2]
    assert numbers == sorted(set(numbers)) and numbers[-1] == ROUNDS
    assert 3 not in numbers  # round 3's update died with the server; the run went on at round 4
    assert read_checkpoint(out / "checkpoint" / "checkpoint.pt").round == ROUNDS
    log = (resumed["root"] / "d" / "logs" / "flwr-run.log").read_text()  # the ServerApp's log, streamed
    assert "after round 3 of 5; generator of round 2; round 3 was in flight: 3 site(s) to confirm" in log
    assert "site-0 trained round 3 before the server stopped" in log


def test_every_site_spent_the_same_in_its_own_ledger_and_the_consortiums(resumed: Any) -> None:
    root, out = resumed["root"], resumed["out"]
    consortium = Ledger.load(out / "ledger.json")
    assert consortium.verify() == len(consortium.entries)
    run_id = json.loads((out / "plan.json").read_text())["run_id"]
    for site in ("site-0", "site-1", "site-2"):
        own = Ledger.load(next((root / "d" / "sites" / site).glob("*.ledger.json")))
        own.verify()
        mine = [e for e in own.entries_for(site, "record") if e.run_id == run_id]
        theirs = consortium.entries_for(site, "record")
        rounds = [e.round for e in mine]
        assert len(rounds) == len(set(rounds)), f"{site} charged a round twice"
        # site-0 and site-1 trained round 3 before the server died; the consortium must know it.
        assert 3 in rounds or site == "site-2"
        assert [e.round for e in theirs] == rounds
        assert theirs[-1].epsilon == pytest.approx(mine[-1].epsilon, rel=1e-9)
