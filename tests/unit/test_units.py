"""The privacy unit (a patient): rows bounded per unit, units sampled and clipped whole, hold-out by unit, one row
per unit in other releases, and ledgers, plans and splits that say so."""

from __future__ import annotations

import copy
import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from opacus.accountants import PRVAccountant
from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import GradSampleModuleFastGradientClipping
from opacus.optimizers import DPOptimizerFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

from client.holdout import holdout_mask
from client.trainer import train_round
from client.units import bound_rows_per_unit, one_row_per_unit, pack_units, unit_ids
from server.config import RunConfig
from server.plan import describe_plan, make_plan
from server.split import deal_rows
from shared.ctgan import DPCTGANGenerator, GANConfig, GANDiscriminatorLoss
from shared.encoding import TableEncoder
from shared.errors import LedgerError, SchemaError
from shared.generator import TabularGenerator
from shared.ledger import Ledger, Release, record_spend
from shared.plan import TrainingPlan
from shared.schema import Schema
from shared.tvae import TVAEConfig, TVAEGenerator, TVAELoss
from shared.validation import validate_table
from tests.conftest import SMALL_SCHEMA

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

SCHEMA = Schema.from_dict({**SMALL_SCHEMA, "privacy_unit": "patient_id"})
KEY = bytes(range(32))
K = 3


def patients(count: int, seed: int = 0, most: int = 6) -> pd.DataFrame:
    """A validated clinic table where each patient has 1..most encounters (rows in a shuffled order)."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(count):
        for _ in range(int(rng.integers(1, most + 1))):
            rows.append({
                "patient_id": f"P{p}", "age": str(int(rng.integers(18, 96))), "sex": str(rng.choice(["F", "M"])),
                "ward": str(rng.choice(["cardio", "onco", "neuro", ""])), "lab": f"{rng.gamma(2.0, 40.0):.3f}",
                "outcome": str(rng.choice(["healed", "readmitted"])),
            })
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    return validate_table(frame, SCHEMA, source="test").clean


def packed(frame: pd.DataFrame, encoder: TableEncoder, k: int = K) -> torch.Tensor:
    kept = bound_rows_per_unit(frame, SCHEMA, KEY, k)
    ids = unit_ids(kept, SCHEMA)
    assert ids is not None
    return torch.from_numpy(pack_units(encoder.encode(kept), ids, k))


def dp_parts(module: torch.nn.Module, criterion: torch.nn.Module, *, batch: int, clip: float
             ) -> tuple[GradSampleModuleFastGradientClipping, DPLossFastGradientClipping]:
    """The Opacus parts exactly as client.trainer assembles them, without noise."""
    gsm = GradSampleModuleFastGradientClipping(
        module, batch_first=True, loss_reduction="mean", max_grad_norm=clip, use_ghost_clipping=True
    )
    optimizer = DPOptimizerFastGradientClipping(
        torch.optim.SGD(gsm.parameters(), lr=0.1), noise_multiplier=0.0, max_grad_norm=clip,
        expected_batch_size=batch, loss_reduction="mean",
    )
    return gsm, DPLossFastGradientClipping(gsm, optimizer, criterion, loss_reduction="mean")


def assert_clipped_per_unit(module: torch.nn.Module, criterion: torch.nn.Module, units: list[torch.Tensor],
                            batch: torch.Tensor) -> None:
    """Opacus's clipped gradient of ``batch`` equals the sum of each unit's own autograd gradient, clipped."""
    plain = copy.deepcopy(module)
    by_hand = []
    for unit in units:  # plain autograd, one patient's rows (no padding) at a time
        plain.zero_grad()
        criterion.reduction = "sum"
        criterion(plain(unit[None]), unit[None]).backward()
        by_hand.append([p.grad.clone() for p in plain.parameters()])
    norms = torch.stack([torch.cat([g.flatten() for g in grads]).norm() for grads in by_hand])
    clip = float(norms.median())
    criterion.reduction = "mean"
    gsm, dp_criterion = dp_parts(module, criterion, batch=len(units), clip=clip)

    dp_criterion(gsm(batch), batch).backward()

    assert torch.allclose(gsm.per_sample_gradient_norms, norms, rtol=1e-4, atol=1e-6)
    factors = (clip / (norms + 1e-6)).clamp(max=1.0)  # Opacus's clipping coefficient
    for index, param in enumerate(gsm.parameters()):
        expected = sum(f * grads[index] for f, grads in zip(factors, by_hand, strict=True))
        assert param.grad is not None and torch.allclose(param.grad, expected, rtol=1e-4, atol=1e-6)
    gsm._close()


def test_a_patients_rows_are_clipped_together_as_one_sample_in_the_vae(monkeypatch: pytest.MonkeyPatch) -> None:
    encoder = TableEncoder.from_schema(SCHEMA)
    batch = packed(patients(12, seed=1), encoder)
    counts = (batch != 0).any(dim=-1).sum(dim=1)
    assert counts.min() == 1 and counts.max() == K  # padded and full patients both in the batch
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)  # the same latent draw by hand and under Opacus
    config = TVAEConfig(hidden=16, latent=4)
    generator = TVAEGenerator(encoder.blocks, encoder.dim, config, seed=2)
    units = [batch[i, : int(counts[i])] for i in range(len(batch))]

    assert_clipped_per_unit(generator.module, TVAELoss(encoder.blocks, encoder.dim, config), units, batch)


def test_a_patients_rows_and_their_fakes_are_clipped_together_in_the_gan() -> None:
    encoder = TableEncoder.from_schema(SCHEMA)
    batch = packed(patients(12, seed=2), encoder)
    counts = (batch != 0).any(dim=-1).sum(dim=1)
    generator = DPCTGANGenerator(encoder.blocks, encoder.dim, GANConfig(hidden=16, generator_hidden=16, noise_dim=8))
    pairs = generator._unit_pairs(batch, torch.Generator().manual_seed(0))
    assert pairs.shape == (len(batch), 2 * K, encoder.dim + generator.cond_dim)
    assert torch.all(pairs[counts == 1][:, 2:] == 0)  # a one-visit patient's padding (and its "fake") is empty
    units = [pairs[i, : 2 * int(counts[i])] for i in range(len(batch))]

    assert_clipped_per_unit(generator.module, GANDiscriminatorLoss(), units, pairs)


def test_at_most_k_rows_per_patient_chosen_from_the_patients_own_rows() -> None:
    frame = patients(60, seed=3)
    kept = bound_rows_per_unit(frame, SCHEMA, KEY, K)
    sizes, all_sizes = kept.groupby("patient_id").size(), frame.groupby("patient_id").size()
    assert (sizes == all_sizes.clip(upper=K)).all()
    # Removing other patients, or reordering the table, changes nothing about which rows a patient keeps.
    alone = frame[frame["patient_id"].isin(["P0", "P1", "P2"])].sample(frac=1.0, random_state=9)
    mine = kept[kept["patient_id"].isin(["P0", "P1", "P2"])]
    assert sorted(bound_rows_per_unit(alone, SCHEMA, KEY, K).index) == sorted(mine.index)
    # The site's secret key decides (another key picks other rows of the patients with more than K).
    other = bound_rows_per_unit(frame, SCHEMA, bytes(32), K)
    assert sorted(other.index) != sorted(kept.index)
    single = one_row_per_unit(frame, SCHEMA, KEY)
    assert len(single) == frame["patient_id"].nunique()
    assert set(single.index) <= set(kept.index)  # its one row is among the ones trained on
    record_level = Schema.from_dict(SMALL_SCHEMA)
    assert bound_rows_per_unit(frame, record_level, KEY, 1) is frame


def test_units_are_packed_with_real_rows_first_and_zero_padding() -> None:
    rows = np.arange(1, 13, dtype=np.float32).reshape(6, 2)
    out = pack_units(rows, np.array(["a", "a", "b", "c", "c", "c"]), 3)
    assert out.shape == (3, 3, 2)
    assert np.array_equal(out[0], [[1, 2], [3, 4], [0, 0]]) and np.array_equal(out[2], rows[3:])
    with pytest.raises(ValueError, match="more than 2"):
        pack_units(rows, np.array(["a", "a", "b", "c", "c", "c"]), 2)
    with pytest.raises(ValueError, match="adjacent"):
        pack_units(rows, np.array(["a", "b", "a", "c", "c", "c"]), 3)


def test_the_holdout_takes_whole_patients() -> None:
    frame = patients(400, seed=4)
    held = holdout_mask(frame, SCHEMA, KEY, 0.2)
    sides = pd.Series(held).groupby(frame["patient_id"].to_numpy()).nunique()
    assert (sides == 1).all()  # no patient is both trained on and held out
    share = pd.Series(held).groupby(frame["patient_id"].to_numpy()).first().mean()
    assert 0.13 < share < 0.27
    shuffled = frame.sample(frac=1.0, random_state=5)
    assert np.array_equal(holdout_mask(shuffled, SCHEMA, KEY, 0.2), held[shuffled.index.to_numpy()])


@pytest.mark.parametrize("name", ["tvae", "gan"])
def test_a_round_samples_patients_and_records_the_planned_steps(name: str) -> None:
    encoder = TableEncoder.from_schema(SCHEMA)
    data = packed(patients(80, seed=6), encoder)
    plan = _plan(sample_rate=1.0, local_steps=2)  # every patient in every batch: the batch is the patient count
    generator: TabularGenerator = (
        TVAEGenerator(encoder.blocks, encoder.dim, TVAEConfig(hidden=16, latent=4)) if name == "tvae"
        else DPCTGANGenerator(encoder.blocks, encoder.dim, GANConfig(hidden=16, generator_hidden=16, noise_dim=8))
    )
    shapes: list[tuple[int, ...]] = []
    step = generator.train_step
    def recording(batch: torch.Tensor, **kw: object) -> None:
        shapes.append(tuple(batch.shape))
        step(batch, **kw)  # type: ignore[arg-type]

    generator.train_step = recording  # type: ignore[method-assign]

    result = train_round(generator, data, plan, history=[], rng=torch.Generator().manual_seed(0),
                         device=torch.device("cpu"))

    assert shapes == [(80, K, encoder.dim)] * 2
    assert result.history == [(plan.noise_multiplier, 1.0, 2)]
    assert 0.0 <= result.noisy_loss <= 100.0


def test_ledger_entries_say_whom_they_protect_and_refuse_a_mix(tmp_path: Path) -> None:
    path = tmp_path / "site.ledger.json"
    releases = [Release("dp-sgd", 1.1, 0.05, 10), Release("train-loss", 100.0, 1.0, 1)]
    entry = record_spend(path, site="a", round=1, level="record", accountant="rdp", delta=1e-5, releases=releases,
                         run_id="r", privacy_unit="patient_nbr", max_rows_per_unit=K)
    raw = json.loads(path.read_text())["entries"][0]
    assert (raw["privacy_unit"], raw["max_rows_per_unit"]) == ("patient_nbr", K)
    assert Ledger.load(path).entries == (entry,)
    with pytest.raises(LedgerError, match="one privacy unit"):
        record_spend(path, site="a", round=2, level="record", accountant="rdp", delta=1e-5, releases=releases,
                     run_id="r")
    rows = tmp_path / "rows.ledger.json"
    record_spend(rows, site="a", round=1, level="record", accountant="rdp", delta=1e-5, releases=releases, run_id="r")
    assert "privacy_unit" not in json.loads(rows.read_text())["entries"][0]  # record-level files as before
    with pytest.raises(LedgerError, match="go together"):
        record_spend(tmp_path / "x.json", site="a", round=1, level="record", accountant="rdp", delta=1e-5,
                     releases=releases, run_id="r", privacy_unit="patient_nbr")


def test_the_plan_protects_the_schemas_unit_and_its_epsilon_recomputes(tmp_path: Path) -> None:
    schema_path = tmp_path / "schema.json"
    schema_path.write_text(json.dumps(SCHEMA.to_dict()))
    config = RunConfig.from_run_config({"schema-path": str(schema_path), "num-rounds": 3, "train.local-steps": 5,
                                        "dp.max-rows-per-unit": K, "dp.target-epsilon": 2.0})

    plan = make_plan(config, SCHEMA)

    assert (plan.privacy_unit, plan.max_rows_per_unit) == ("patient_id", K)
    assert TrainingPlan.from_config(plan.to_config()) == plan
    assert "per-patient_id budget" in describe_plan(plan) and "Poisson over patient_id units" in describe_plan(plan)
    accountant = PRVAccountant()  # independently of shared.accounting: sample rate over patients, steps as planned
    accountant.history = [(plan.noise_multiplier, plan.sample_rate, 15), (plan.metric_noise_multiplier, 1.0, 3),
                          (plan.evaluate_noise_multiplier, 1.0, 1)]
    assert 2.0 - 0.01 <= accountant.get_epsilon(delta=plan.delta) <= 2.0
    record_level = make_plan(config, Schema.from_dict(SMALL_SCHEMA))
    assert (record_level.privacy_unit, record_level.max_rows_per_unit) == ("", 0)


def test_a_schema_unit_must_be_a_non_nullable_identifier() -> None:
    with pytest.raises(SchemaError, match="not an identifier"):
        Schema.from_dict({**SMALL_SCHEMA, "privacy_unit": "age"})
    columns = [{**c, "nullable": True} if c["name"] == "patient_id" else c for c in SMALL_SCHEMA["columns"]]
    with pytest.raises(SchemaError, match="must not be nullable"):
        Schema.from_dict({**SMALL_SCHEMA, "columns": columns, "privacy_unit": "patient_id"})
    assert Schema.from_dict(SMALL_SCHEMA).hash != SCHEMA.hash and "privacy_unit" not in Schema.from_dict(
        SMALL_SCHEMA).to_dict()


@pytest.mark.parametrize("split", ["iid", "non-iid"])
def test_split_keeps_every_patient_at_one_site(tmp_path: Path, split: str) -> None:
    schema_path = tmp_path / "schema.json"
    schema_path.write_text(json.dumps(SCHEMA.to_dict()))
    frame = patients(150, seed=7).astype(str).replace({"<NA>": ""})
    data = tmp_path / "table.csv.gz"
    with gzip.open(data, "wt", newline="") as handle:
        frame.to_csv(handle, index=False)

    counts = deal_rows(data, schema_path, 3, tmp_path / "sites", split=split, seed=1, split_by="ward")

    owners = {}
    for site in range(3):
        with open(tmp_path / "sites" / f"site-{site}.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                assert owners.setdefault(row["patient_id"], site) == site
    assert sum(counts) == len(frame) and len(owners) == 150 and min(counts) > 0


def _plan(**overrides: object) -> TrainingPlan:
    values: dict[str, object] = dict(
        run_id="r", rounds=1, local_steps=5, sample_rate=0.1, noise_multiplier=1.0, max_grad_norm=1.0, lr=0.5,
        delta=1e-5, accountant="rdp", target_epsilon=3.0, metric_noise_multiplier=100.0, hidden=16, latent=4,
        kl_weight=0.3, seed=0, schema_json=json.dumps(SCHEMA.to_dict()), privacy_unit="patient_id",
        max_rows_per_unit=K,
    )
    values.update(overrides)
    return TrainingPlan(**values)  # type: ignore[arg-type]
