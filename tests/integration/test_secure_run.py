"""Real Flower runs with secure aggregation: one with shared record-level noise, one with distributed
site-level DP (the two cannot be combined: see server/config.py).

Three simulated sites, two rounds; site-2 has no table, so it takes part in the key exchange and then fails
to train: a real dropout after the shares were dealt. The round must still complete from the two survivors
(the threshold), the server must get only their securely summed update, every surviving site must record
both levels with the trust they rest on, and every epsilon must recompute with Opacus's accountant classes
(record level) and the exact Gaussian-mechanism formula (site level), not through shared.accounting.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from opacus.accountants import PRVAccountant
from scipy.optimize import brentq
from scipy.stats import norm

from server.demo import APP_DIR
from server.local_federation import local_superlink, run_app
from shared.manifest import verify_output
from shared.schema import load_schema
from shared.validation import read_site_table
from tests.conftest import CANARY_CATEGORY, CANARY_FLOAT, CANARY_ID, SMALL_SCHEMA, write_site_table

SITES, ROUNDS, THRESHOLD = 3, 2, 2
SURVIVORS = (0, 1)  # site-2 drops out


MODES: dict[str, dict[str, object]] = {
    "shared-noise": {
        "dp.record-noise": "shared", "dp.shared-batch-size": 20, "simulation.trust-secure-aggregation": True,
    },
    "site-dp": {"site-dp.mode": "distributed", "site-dp.target-epsilon": 8.0, "site-dp.clip": 0.5},
}


@pytest.fixture(scope="module", params=list(MODES))
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp(f"secure-{request.param}")
    schema = root / "schema.json"
    schema.write_text(json.dumps(SMALL_SCHEMA))
    sites = root / "sites"
    sites.mkdir()
    for i in SURVIVORS:
        write_site_table(sites / f"site-{i}.csv", rows=400, seed=i, canary=(i == 0))
    out = root / "out"
    config: dict[str, object] = {
        "out-dir": str(out), "sites-dir": str(sites), "schema-path": str(schema), "num-rounds": ROUNDS,
        "min-sites": THRESHOLD, "synthetic-rows": 200, "dp.target-epsilon": 2.0, "train.local-steps": 1,
        "train.hidden": 32, "signing-key": str(root / "keys" / "server.pem"), "simulation.site-epsilon-cap": 2.0,
        "secure-agg": True, **MODES[request.param],
    }
    log_path = root / "run.log"
    with local_superlink(root / "flower") as env, open(log_path, "w") as log:
        run_app(APP_DIR, num_sites=SITES, run_config=config, env=env, log=log)
    assert (out / "manifest.json").exists(), log_path.read_text()[-5000:]
    return {"root": root, "out": out, "sites": sites, "schema": schema, "log": log_path, "mode": Path(request.param)}


def _mode(run: dict[str, Path]) -> str:
    return str(run["mode"])


def _exact_gaussian_epsilon(noise: float, releases: int, delta: float) -> float:
    """k unsampled Gaussian releases are sqrt(k)/noise-GDP; exact epsilon from Balle & Wang 2018, Thm. 8."""
    mu = math.sqrt(releases) / noise
    return float(brentq(lambda e: norm.cdf(-e / mu + mu / 2) - math.exp(e) * norm.cdf(-e / mu - mu / 2) - delta, 0, 500))


def test_the_run_completes_with_only_the_secure_sum(run: dict[str, Path]) -> None:
    verify_output(run["out"])
    assert read_site_table(run["out"] / "synthetic.csv", load_schema(run["schema"])).issues == ()
    log = run["log"].read_text()
    assert log.count("secure aggregation: summed 2 vectors (1 dropped)") >= ROUNDS
    assert manifest_sites(run) == ["site-0", "site-1"]
    manifest = json.loads((run["out"] / "manifest.json").read_text())
    assert manifest["privacy"]["secure_aggregation"]["threshold"] == THRESHOLD
    if _mode(run) == "site-dp":
        assert manifest["privacy"]["site"]["mode"] == "distributed"
        assert manifest["privacy"]["record"]["rests_on"] == ["local"]
    else:
        assert "site" not in manifest["privacy"]
        assert manifest["privacy"]["record"]["rests_on"] == ["secure-aggregation"]


def test_both_levels_are_ledgered_with_their_trust_and_recompute(run: dict[str, Path]) -> None:
    plan = json.loads((run["out"] / "plan.json").read_text())
    assert not (run["sites"] / "site-2.ledger.json").exists()  # it failed before spending anything
    for ledger_path in [run["out"] / "ledger.json", *(run["sites"] / f"site-{i}.ledger.json" for i in SURVIVORS)]:
        entries = json.loads(ledger_path.read_text())["entries"]
        for site in {e["site"] for e in entries}:
            record = [e for e in entries if e["site"] == site and e["level"] == "record"]
            site_level = [e for e in entries if e["site"] == site and e["level"] == "site"]
            # Training rounds, then the evaluation release, which the site noises fully itself.
            assert [e["round"] for e in record] == [*range(1, ROUNDS + 1), ROUNDS + 1]
            assert len(site_level) == (ROUNDS if _mode(run) == "site-dp" else 0)
            *record, evaluation = record
            accountant = PRVAccountant()
            for entry in record:
                assert entry["noise_multiplier"] == plan["noise_multiplier"]
                if _mode(run) == "shared-noise":
                    assert entry["trust"] == "secure-aggregation"
                    assert entry["fallback_noise_multiplier"] == pytest.approx(
                        plan["noise_multiplier"] / math.sqrt(THRESHOLD)
                    )
                else:
                    assert entry["trust"] == "local" and entry["fallback_noise_multiplier"] is None
                accountant.history.append((entry["noise_multiplier"], entry["sample_rate"], entry["steps"]))
                accountant.history += [(r["noise_multiplier"], r["sample_rate"], r["steps"]) for r in entry["extra_releases"]]
                assert entry["epsilon"] == pytest.approx(accountant.get_epsilon(delta=entry["delta"]), rel=1e-6)
            assert evaluation["trust"] == "local" and evaluation["noise_multiplier"] == plan["evaluate_noise_multiplier"]
            accountant.history.append((evaluation["noise_multiplier"], 1.0, 1))
            assert evaluation["epsilon"] == pytest.approx(accountant.get_epsilon(delta=evaluation["delta"]), rel=1e-6)
            assert evaluation["epsilon"] <= 2.0
            for k, entry in enumerate(site_level, start=1):
                assert entry["trust"] == "secure-aggregation" and entry["sample_rate"] == 1.0
                exact = _exact_gaussian_epsilon(entry["noise_multiplier"], k, entry["delta"])
                assert exact <= entry["epsilon"] <= exact * 1.01  # PRV: an upper bound, and a tight one
                assert entry["fallback_noise_multiplier"] == pytest.approx(entry["noise_multiplier"] / math.sqrt(THRESHOLD))
            if site_level:
                assert site_level[-1]["epsilon"] <= 8.0


def manifest_sites(run: dict[str, Path]) -> list[str]:
    return list(json.loads((run["out"] / "manifest.json").read_text())["sites"])


def test_ledger_verify_reports_the_fallback(run: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from server.cli import main as cli_main

    assert cli_main(["ledger", "verify", str(run["sites"] / "site-0.ledger.json")]) == 0
    out = capsys.readouterr().out
    assert "rests on: secure-aggregation" in out and "if that trust fails" in out


def test_canaries_stay_at_their_site(run: dict[str, Path]) -> None:
    public = [run["log"], *run["out"].glob("*.json"), run["out"] / "synthetic.csv"]
    for path in public:
        text = path.read_text(errors="replace")
        for canary in (CANARY_ID, CANARY_CATEGORY, CANARY_FLOAT):
            assert canary not in text, f"{canary!r} leaked into {path.name}"
