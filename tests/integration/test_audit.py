"""A small real audit through the `fedsynth audit` command: two federations of two sites on Flower's simulation
engine, real DP-SGD, 50 canaries. One run (module-scoped) feeds every assertion.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from server import audit_cli
from shared.audit_bound import GUESS_FRACTIONS, audit_scores, bonferroni_alpha
from shared.ledger import Ledger
from shared.schema import load_schema
from shared.validation import read_site_table
from tests.conftest import SMALL_SCHEMA, write_site_table

CANARIES = 50
TARGET_EPSILON = 2.0


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("audit")
    schema, data, out = root / "schema.json", root / "table.csv", root / "out"
    schema.write_text(json.dumps(SMALL_SCHEMA))
    write_site_table(data, rows=600, seed=5)
    parser = argparse.ArgumentParser()
    audit_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args([
        "audit", "--out", str(out), "--data", str(data), "--schema", str(schema), "--sites", "2",
        "--rounds", "2", "--local-steps", "4", "--epsilon", str(TARGET_EPSILON), "--canaries", str(CANARIES),
        "--seed", "1", "--rows", "300",
    ])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(root / "home"))  # the server's signing key is made under $HOME/.fedsynth
        code = audit_cli.run(args)
    return {"code": code, "out": out, "schema": schema, "report": json.loads((out / "audit.json").read_text())}


def test_the_bound_does_not_exceed_the_accounted_epsilon(audit: dict[str, Any]) -> None:
    report = audit["report"]
    assert audit["code"] == 0 and report["consistent"] is True
    accounted = report["accounted"]["epsilon"]
    assert 0 < accounted <= TARGET_EPSILON
    assert 0 <= report["empirical_epsilon_lower_bound"] <= accounted
    ledger = Ledger.load(audit["out"] / "with" / "ledger.json")
    assert accounted == ledger.spent("site-0", "record")
    assert report["accounted"]["delta"] == 1e-5 and report["accounted"]["accountant"] in ("rdp", "prv")


def test_audit_json_is_well_formed(audit: dict[str, Any]) -> None:
    report = audit["report"]
    assert report["format"] == "fedsynth-audit/1"
    assert "arXiv:2305.08846" in report["method"]["citation"]
    assert report["method"]["tests"] == 2 * len(GUESS_FRACTIONS)
    assert report["empirical_epsilon_lower_bound"] <= report["method"]["perfect_attacker_bound"]
    assert report["canaries"]["m"] == CANARIES and 0 < report["canaries"]["included"] < CANARIES
    assert set(report["attacks"]) == {"generator_loss", "synthetic_dcr"}
    for attack in report["attacks"].values():
        assert 0 <= attack["auc"] <= 1
        assert 0 <= attack["correct"] <= attack["guesses"] <= CANARIES
        assert attack["epsilon_lower_bound"] >= 0
        assert len(attack["rules"]) == len(GUESS_FRACTIONS)
    assert report["empirical_epsilon_lower_bound"] == max(a["epsilon_lower_bound"] for a in report["attacks"].values())


def test_included_canaries_are_planted_at_site_0_of_the_audited_run_only(audit: dict[str, Any]) -> None:
    canaries = pd.read_csv(audit["out"] / "canaries.csv", dtype=str, keep_default_na=False)
    assert len(canaries) == CANARIES
    planted = set(canaries.loc[canaries["audit_included"] == "1", "patient_id"])
    assert len(planted) == audit["report"]["canaries"]["included"]
    schema = load_schema(audit["schema"])
    site0 = read_site_table(audit["out"] / "with" / "sites" / "site-0.csv", schema)
    assert site0.ok  # every canary passed the site's validation: none was quarantined
    assert set(site0.clean["patient_id"].dropna()) >= planted
    assert not any(str(i).startswith("canary-") for i in site0.clean["patient_id"].dropna() if str(i) not in planted)
    for run, site in (("with", 1), ("without", 0), ("without", 1)):
        ids = read_site_table(audit["out"] / run / "sites" / f"site-{site}.csv", schema).clean["patient_id"]
        assert not any(str(i).startswith("canary-") for i in ids.dropna())


def test_the_report_recomputes_from_the_canary_file(audit: dict[str, Any]) -> None:
    canaries = pd.read_csv(audit["out"] / "canaries.csv")
    report = audit["report"]
    alpha = bonferroni_alpha(report["method"]["confidence"], report["method"]["tests"])
    for name, attack in report["attacks"].items():
        again = audit_scores(canaries[f"audit_score_{name}"].to_numpy(), canaries["audit_included"].to_numpy() == 1,
                             delta=report["accounted"]["delta"], alpha=alpha)
        assert again.to_dict() == {k: v for k, v in attack.items() if k != "description"}


def test_an_earlier_audit_is_not_replaced_without_force(audit: dict[str, Any]) -> None:
    from server.audit import AuditOptions, run_audit
    from shared.errors import FedsynthError

    with pytest.raises(FedsynthError, match="--force"):
        run_audit(AuditOptions(out=audit["out"], data=audit["out"] / "with" / "sites" / "site-1.csv",
                               schema=audit["schema"], sites=2, rounds=1))
