"""A real federated run on Flower's simulation engine: three sites, real DP-SGD, signed outputs.

One run (module-scoped, ~1 minute) feeds every assertion: outputs follow the schema, the ledger's epsilons
recompute from their logged parameters, the signature verifies and catches tampering, each site received the
table, and planted canary values never leave their site.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from opacus.accountants import RDPAccountant

from server.cli import main as cli_main
from server.demo import APP_DIR
from server.local_federation import local_superlink, run_app
from shared.manifest import verify_output
from shared.schema import load_schema
from shared.validation import read_site_table
from shared.console.v1 import console_pb2 as pb
from tests.integration.console_follow import ConsoleFollower
from tests.conftest import CANARY_CATEGORY, CANARY_FLOAT, CANARY_ID, SMALL_SCHEMA, write_site_table

TARGET_EPSILON = 2.0
ROUNDS = 2
SITES = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("fed")
    schema = root / "schema.json"
    schema.write_text(json.dumps(SMALL_SCHEMA))
    sites = root / "sites"
    sites.mkdir()
    for i in range(SITES):
        write_site_table(sites / f"site-{i}.csv", rows=400, seed=i, canary=(i == 1))
    out = root / "out"
    config: dict[str, object] = {
        "out-dir": str(out), "sites-dir": str(sites), "schema-path": str(schema), "num-rounds": ROUNDS,
        "min-sites": SITES, "synthetic-rows": 300, "dp.target-epsilon": TARGET_EPSILON,
        "train.local-steps": 4, "train.hidden": 32, "signing-key": str(root / "keys" / "server.pem"),
        "simulation.site-epsilon-cap": TARGET_EPSILON, "dp.accountant": "rdp",
    }
    log_path = root / "run.log"
    follower = ConsoleFollower(root / "console")
    config.update(follower.run_config)
    with follower, local_superlink(root / "flower") as env, open(log_path, "w") as log:
        run_app(APP_DIR, num_sites=SITES, run_config=config, env=env, log=log)
    assert (out / "manifest.json").exists(), log_path.read_text()[-5000:]
    return {"root": root, "out": out, "sites": sites, "schema": schema, "log": log_path, "console": follower}


def test_synthetic_table_follows_the_schema(run: dict[str, Any]) -> None:
    result = read_site_table(run["out"] / "synthetic.csv", load_schema(run["schema"]))
    assert result.issues == ()
    assert len(result.clean) == 300
    parquet = pd.read_parquet(run["out"] / "synthetic.parquet")
    assert list(parquet.columns) == ["age", "sex", "ward", "lab", "outcome"]  # identifiers are never synthesized
    assert parquet["age"].between(18, 95).all() and parquet["lab"].dropna().between(0, 10000).all()
    assert parquet["sex"].isna().sum() == 0 and parquet["outcome"].isna().sum() == 0


def test_ledger_epsilons_recompute_from_their_parameters(run: dict[str, Any]) -> None:
    entries = json.loads((run["out"] / "ledger.json").read_text())["entries"]
    # Rounds 1..ROUNDS of training, then the evaluation release charged as round ROUNDS + 1.
    assert sorted({(e["site"], e["round"]) for e in entries}) == [
        (f"site-{s}", r) for s in range(SITES) for r in range(1, ROUNDS + 2)
    ]
    for site in {e["site"] for e in entries}:
        accountant = RDPAccountant()
        for entry in sorted((e for e in entries if e["site"] == site), key=lambda e: e["round"]):
            assert entry["level"] == "record" and entry["accountant"] == "rdp"
            accountant.history.append((entry["noise_multiplier"], entry["sample_rate"], entry["steps"]))
            for extra in entry["extra_releases"]:
                accountant.history.append((extra["noise_multiplier"], extra["sample_rate"], extra["steps"]))
            assert entry["epsilon"] == pytest.approx(accountant.get_epsilon(delta=entry["delta"]), rel=1e-9)
        # The plan spends the target exactly at the last round (within the solver's tolerance, never above).
        assert TARGET_EPSILON - 0.011 <= entry["epsilon"] <= TARGET_EPSILON


def test_site_ledgers_agree_with_the_consortium(run: dict[str, Any]) -> None:
    consortium = json.loads((run["out"] / "ledger.json").read_text())["entries"]
    for i in range(SITES):
        local = json.loads((run["sites"] / f"site-{i}.ledger.json").read_text())["entries"]
        mirror = [e for e in consortium if e["site"] == f"site-{i}"]
        assert [e["epsilon"] for e in local] == pytest.approx([e["epsilon"] for e in mirror], rel=1e-9)


def test_outputs_verify_and_tampering_is_caught(run: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert len(verify_output(run["out"]).files_checked) >= 4
    assert cli_main(["verify", str(run["out"])]) == 0
    copy = run["root"] / "tampered"
    copy.mkdir()
    for f in run["out"].iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    data = bytearray((copy / "synthetic.csv").read_bytes())
    data[-3] = ord("9") if data[-3] != ord("9") else ord("8")
    (copy / "synthetic.csv").write_bytes(bytes(data))
    assert cli_main(["verify", str(copy)]) != 0
    assert "synthetic.csv" in capsys.readouterr().err


def test_every_site_received_the_signed_table(run: dict[str, Any]) -> None:
    run_id = json.loads((run["out"] / "manifest.json").read_text())["run_id"]
    for i in range(SITES):
        received = run["sites"] / f"site-{i}-received" / run_id
        assert (received / "synthetic.csv").read_bytes() == (run["out"] / "synthetic.csv").read_bytes()
        assert verify_output(received).ok


def test_the_report_is_built_from_paid_releases_and_rebuilds_identically(
    run: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    out = run["out"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert "evaluation.json" in manifest["files"] and "rounds.json" in manifest["files"]
    assert manifest["evaluation"]["federated"] and manifest["evaluation"]["sites"] == [f"site-{i}" for i in range(SITES)]
    report = json.loads((out / "report.json").read_text())
    assert report["format"] == "fedsynth-report/1"
    assert report["run"]["manifest_sha256"] and report["run"]["run_id"] == manifest["run_id"]
    # Epsilon per round: recomputed from the ledger, ending with the evaluation at the final figure.
    assert [r["round"] for r in report["privacy"]["per_round"]] == list(range(1, ROUNDS + 1))
    final = manifest["privacy"]["record"]["epsilon_per_site"]
    last = report["privacy"]["per_round"][-1]["epsilon"]
    added = report["privacy"]["evaluation"]["epsilon"]
    assert {s: last[s] + added[s] for s in final} == pytest.approx(final, rel=1e-9)
    assert all(0 < a < 0.5 * final[s] for s, a in added.items())
    assert len(report["training"]["loss"]) == ROUNDS
    assert {m["column"] for m in report["marginals"]} == {"age", "sex", "ward", "lab", "outcome"}
    assert set(report["utility"]["models"]) == {"logistic_regression", "gradient_boosting"}
    assert [s["site"] for s in report["sites"]] == [f"site-{i}" for i in range(SITES)]
    html = (out / "report.html").read_text()
    assert manifest["run_id"] in html and "http://" not in html and "https://" not in html
    before = (out / "report.json").read_text()
    assert cli_main(["report", str(out)]) == 0
    assert (out / "report.json").read_text() == before  # anyone holding the run folder gets the same report
    assert verify_output(out).ok  # and rebuilding it does not touch what the manifest signs


def test_each_site_keeps_its_exact_scores_to_itself(run: dict[str, Any]) -> None:
    run_id = json.loads((run["out"] / "manifest.json").read_text())["run_id"]
    for i in range(SITES):
        local = run["sites"] / f"site-{i}-received" / run_id / "site-evaluation.json"
        scores = json.loads(local.read_text())
        assert scores["holdout_rows"] > 0 and scores["utility"]["models"]  # TRTR lives here, at the site
        assert (run["sites"] / f"site-{i}.ledger.json.holdout-key").is_file()
    assert not list(run["out"].glob("site-evaluation.json"))


def test_canary_values_never_leave_their_site(run: dict[str, Any]) -> None:
    assert (run["sites"] / "site-1.quarantine.csv").exists()  # the invalid canary row stayed at the site
    site_local = set(run["sites"].glob("site-*.csv"))  # the sites' own tables and quarantine files
    scanned = 0
    for path in run["root"].rglob("*"):
        if not path.is_file() or path in site_local:
            continue
        blob = path.read_bytes()
        for canary in (CANARY_ID, CANARY_CATEGORY, CANARY_FLOAT):
            assert canary.encode() not in blob, f"{canary} leaked into {path}"
        scanned += 1
    assert scanned >= 10  # outputs, checkpoint, ledgers, received copies, the run log
    # Nor anything the live console told its watchers.
    told = b"".join(event.SerializeToString() for event in run["console"].events)
    assert told and not any(c.encode() in told for c in (CANARY_ID, CANARY_CATEGORY, CANARY_FLOAT))


def test_the_live_console_told_the_run_as_it_happened(run: dict[str, Any]) -> None:
    follower: ConsoleFollower = run["console"]
    kinds = follower.kinds()
    assert kinds[0] == "run_started" and kinds[-1] == "run_ended"
    phases = [e.phase_changed.status for e in follower.events if e.HasField("phase_changed")]
    assert phases == [pb.RUN_STATUS_TRAINING, pb.RUN_STATUS_SAMPLING, pb.RUN_STATUS_EVALUATING,
                      pb.RUN_STATUS_PUBLISHING]
    ended = follower.events[-1].run_ended
    manifest = (run["out"] / "manifest.json").read_bytes()
    assert ended.status == pb.RUN_STATUS_FINISHED and ended.completed_rounds == ROUNDS
    assert ended.manifest_sha256 == hashlib.sha256(manifest).hexdigest()
    final = json.loads(manifest)["privacy"]["record"]["epsilon_per_site"]
    assert {e.site: e.spent for e in ended.epsilon if e.level == "record"} == pytest.approx(final)
    # Each RoundFinished is the rounds.json record: the same sites, noisy losses and epsilon.
    rounds = json.loads((run["out"] / "rounds.json").read_text())["rounds"]
    finished = [e.round_finished for e in follower.events if e.HasField("round_finished")]
    assert [f.round for f in finished] == [r["round"] for r in rounds] == list(range(1, ROUNDS + 1))
    for event, record in zip(finished, rounds):
        assert {s.site: s.noisy_loss for s in event.sites} == pytest.approx(record["noisy_loss"])
        assert {e.site: e.spent for e in event.epsilon} == pytest.approx(record["epsilon"])
        assert all(s.status == pb.SITE_STATUS_UPDATED and 0 <= s.reply_seconds <= event.duration_seconds
                   for s in event.sites)
        assert record["sites"].keys() == record["noisy_loss"].keys() and record["duration_s"] > 0
