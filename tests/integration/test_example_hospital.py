"""examples/hospital-consortium/run.sh, reduced: a few hundred diabetes130 patients at three hospitals, one round.

One run (module-scoped) of the example's own command feeds every assertion: the ledgers, plan, manifest and
report say each epsilon is per patient with its bound of K encounters, every patient's encounters are at one
hospital, each epsilon recomputes with Opacus from the plan alone, and no identifier reaches the synthetic table.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from opacus.accountants import PRVAccountant

from server.demo import APP_DIR
from shared.schema import load_schema
from tests.integration.examples import run_example

EXAMPLE = APP_DIR / "examples" / "hospital-consortium"
PATIENTS, ROUNDS, STEPS, K = 600, 1, 2, 3


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("hospitals")
    out = root / "out"
    stdout = run_example(EXAMPLE / "run.sh", out, {"PATIENTS": PATIENTS, "ROUNDS": ROUNDS, "LOCAL_STEPS": STEPS, "K": K})
    return {"out": out, "stdout": stdout}


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def test_every_ledger_and_the_report_say_per_patient_with_k(run: dict[str, Any]) -> None:
    out = run["out"]
    ledgers = [out / "ledger.json", *sorted((out / "sites").glob("site-*.ledger.json"))]
    assert len(ledgers) == 4  # the consortium's mirror and each hospital's own (the authority)
    for path in ledgers:
        entries = _json(path)["entries"]
        assert entries and all(e["level"] == "record" for e in entries)
        assert {(e["privacy_unit"], e["max_rows_per_unit"]) for e in entries} == {("patient_nbr", K)}
    plan, manifest, report = _json(out / "plan.json"), _json(out / "manifest.json"), _json(out / "report.json")
    assert (plan["privacy_unit"], plan["max_rows_per_unit"]) == ("patient_nbr", K)
    record = manifest["privacy"]["record"]
    assert (record["privacy_unit"], record["max_rows_per_unit"]) == ("patient_nbr", K)
    assert record["unit"] == f"one patient_nbr with all of its rows at a site (at most {K} rows of each used)"
    unit = report["privacy"]["unit"]
    assert unit.startswith("per-patient_nbr epsilon") and f"at most {K} rows" in unit
    assert manifest["evaluation"].get("counted", "").startswith("one row per patient_nbr")
    assert "per-patient_nbr epsilon spent per site" in run["stdout"]


def test_each_patients_encounters_are_at_one_hospital(run: dict[str, Any]) -> None:
    sites: dict[str, set[int]] = {}
    encounters: dict[str, int] = {}
    for n in range(3):
        with open(run["out"] / "sites" / f"site-{n}.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                sites.setdefault(row["patient_nbr"], set()).add(n)
                encounters[row["patient_nbr"]] = encounters.get(row["patient_nbr"], 0) + 1
    assert len(sites) == PATIENTS and all(len(s) == 1 for s in sites.values())
    assert sum(1 for c in encounters.values() if c > 1) > 50  # many patients with several encounters
    assert max(encounters.values()) > K  # and some with more than each hospital may use


def test_each_epsilon_recomputes_from_the_plan_with_opacus(run: dict[str, Any]) -> None:
    out = run["out"]
    plan, manifest = _json(out / "plan.json"), _json(out / "manifest.json")
    evaluated = set(manifest["evaluation"]["sites"])
    for site, spent in manifest["privacy"]["record"]["epsilon_per_site"].items():
        accountant = PRVAccountant()  # Opacus directly: patients sampled at the plan's rate, steps as planned
        accountant.history = [(plan["noise_multiplier"], plan["sample_rate"], ROUNDS * STEPS),
                              (plan["metric_noise_multiplier"], 1.0, ROUNDS)]
        if site in evaluated:
            accountant.history.append((plan["evaluate_noise_multiplier"], 1.0, 1))
        assert spent == pytest.approx(accountant.get_epsilon(delta=plan["delta"]), rel=1e-3)
        assert spent <= plan["target_epsilon"]
        own = _json(out / "sites" / f"{site}.ledger.json")["entries"]
        assert own[-1]["epsilon"] == pytest.approx(spent, rel=1e-9)  # the hospital's own ledger agrees


def test_the_synthetic_table_has_no_identifier(run: dict[str, Any]) -> None:
    schema = load_schema(EXAMPLE / "schema.json")
    with open(run["out"] / "synthetic.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert header == [c.name for c in schema.synthesized_columns]
    assert "patient_nbr" not in header and "encounter_id" not in header
