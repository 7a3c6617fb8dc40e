"""The audit's canaries, attacks and verdict without a federation: canaries follow the schema, both attacks find
members of a generator trained without privacy (a positive control: an attack that cannot do that is broken),
and the command exits 1 on a violation.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from server import audit as audit_module
from server import audit_cli
from server.audit import closest_distances, generator_losses, make_canaries
from server.demo import BUNDLED_SCHEMA
from shared.audit_bound import auc
from shared.encoding import TableEncoder
from shared.schema import Schema, load_schema
from shared.tvae import TVAEConfig, TVAEGenerator
from shared.validation import read_site_table, validate_table
from tests.conftest import SMALL_SCHEMA, write_site_table

HEADER = ["patient_id", "age", "sex", "ward", "lab", "outcome"]


def _train(generator: TVAEGenerator, rows: torch.Tensor, steps: int) -> None:
    criterion = generator.criterion()
    optimizer = torch.optim.Adam(generator.module.parameters(), lr=1e-2)
    for _ in range(steps):
        generator.train_step(rows, model=generator.module, criterion=criterion, optimizer=optimizer)


def test_canaries_pass_validation_and_follow_derived_columns() -> None:
    schema = load_schema(BUNDLED_SCHEMA)
    header = [c.name for c in schema.columns]
    canaries = make_canaries(schema, header, 300, np.random.default_rng(0))
    result = validate_table(canaries, schema, source="canaries")
    assert result.ok and len(result.clean) == 300
    mapping = schema.column("education_num").mapping or {}
    assert all(float(n) == mapping[e] for e, n in zip(canaries["education"], canaries["education_num"]))
    assert canaries["age"].astype(int).between(17, 90).all()


def test_canaries_are_reproducible_from_a_seed_and_fill_identifiers() -> None:
    schema = Schema.from_dict(SMALL_SCHEMA)
    first = make_canaries(schema, HEADER, 20, np.random.default_rng(5))
    again = make_canaries(schema, HEADER, 20, np.random.default_rng(5))
    assert first.equals(again)
    assert list(first.columns) == HEADER and list(first["patient_id"]) == [f"canary-{i}" for i in range(20)]
    assert (first["ward"] != "").all()  # never missing: uniform over the public categories


def test_closest_distances_match_brute_force() -> None:
    rng = np.random.default_rng(1)
    points, table = rng.random((37, 6)), rng.random((300, 6))
    brute = np.sqrt(((points[:, None, :] - table[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    assert closest_distances(points, table, chunk=8) == pytest.approx(brute, abs=1e-9)


def test_both_attacks_find_the_members_of_a_generator_trained_without_privacy(tmp_path: Path) -> None:
    # Prepare: as in the audit, two generators on one base table, one of them also on the included canaries.
    # Training draws its latent noise from torch's global stream: seed it, or the AUC depends on which tests ran
    # first (0.81-0.93 over seeds 0-5; one unseeded CI run read 0.737).
    torch.manual_seed(0)
    schema = Schema.from_dict(SMALL_SCHEMA)
    encoder = TableEncoder.from_schema(schema)
    write_site_table(tmp_path / "base.csv", rows=200, seed=3)
    base = encoder.encode(read_site_table(tmp_path / "base.csv", schema).clean)
    rng = np.random.default_rng(2)
    canaries = encoder.encode(validate_table(make_canaries(schema, HEADER, 60, rng), schema, source="c").clean)
    included = rng.integers(0, 2, size=60).astype(bool)
    audited, reference = (TVAEGenerator(encoder.blocks, encoder.dim, TVAEConfig(hidden=32, latent=4)) for _ in "ab")
    _train(audited, torch.from_numpy(np.vstack([base, canaries[included]])), steps=200)
    _train(reference, torch.from_numpy(base), steps=200)
    # Execute
    loss_score = generator_losses(reference, canaries) - generator_losses(audited, canaries)
    dcr_score = closest_distances(canaries, base) - closest_distances(canaries, np.vstack([base, canaries[included]]))
    # Assert: far from the 0.5 of guessing (a table holding the members themselves is found almost perfectly).
    assert auc(loss_score, included) > 0.75
    assert auc(dcr_score, included) > 0.95
    assert np.array_equal(generator_losses(audited, canaries), generator_losses(audited, canaries))


def _report(bound: float, accounted: float) -> dict[str, Any]:
    attack = {"auc": 0.9, "guesses": 250, "correct": 240, "epsilon_lower_bound": bound}
    return {
        "seconds": 1.0, "consistent": bound <= accounted, "empirical_epsilon_lower_bound": bound,
        "accounted": {"site": "site-0", "accountant": "rdp", "delta": 1e-5, "epsilon": accounted},
        "canaries": {"m": 500, "included": 250, "site": "site-0", "file": "canaries.csv"},
        "method": {"confidence": 0.95, "tests": 6, "perfect_attacker_bound": 3.9},
        "attacks": {"generator_loss": attack, "synthetic_dcr": attack},
    }


@pytest.mark.parametrize(("bound", "code", "verdict"), [(0.4, 0, ": consistent"), (2.5, 1, "VIOLATION")])
def test_the_command_exits_1_on_a_violation(
    bound: float, code: int, verdict: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # Prepare: the audit itself is replaced by a report; what is tested is the command's verdict and exit code.
    monkeypatch.setattr(audit_module, "run_audit", lambda options: _report(bound, accounted=1.0))
    parser = argparse.ArgumentParser()
    audit_cli.add_parser(parser.add_subparsers(dest="command"))
    # Execute
    result = audit_cli.run(parser.parse_args(["audit", "--out", str(tmp_path)]))
    # Assert
    assert result == code
    assert verdict in capsys.readouterr().out
