"""Drawing the synthetic table with requested class shares, from real (small) generators: each class comes
from the generator conditioned on it, in exactly its quota, and the record says what was asked for."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from client.trainer import train_round
from server.sampling import sample_table
from shared.class_shares import ClassShares
from shared.ctgan import DPCTGANGenerator, GANConfig
from shared.encoding import TableEncoder
from shared.generator import TabularGenerator
from shared.plan import TrainingPlan
from shared.schema import load_schema
from shared.tvae import TVAEConfig, TVAEGenerator
from shared.validation import read_site_table
from tests.conftest import write_site_table

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


@pytest.fixture()
def encoder(small_schema: Path) -> TableEncoder:
    return TableEncoder.from_schema(load_schema(small_schema))


def _tvae(encoder: TableEncoder) -> TVAEGenerator:
    return TVAEGenerator(encoder.blocks, encoder.dim, TVAEConfig(hidden=16, latent=4), seed=0)


def _gan(encoder: TableEncoder) -> DPCTGANGenerator:
    config = GANConfig(hidden=16, generator_hidden=16, noise_dim=8, generator_batch=32)
    return DPCTGANGenerator(encoder.blocks, encoder.dim, config, seed=0, pair_seed=0)


def _make_rare(generator: TabularGenerator, encoder: TableEncoder, slot: int, bias: float) -> None:
    """Push the output layer's logit of outcome's ``slot`` by ``bias`` (e.g. -4: the class becomes rare)."""
    outcome = next(b for b in encoder.blocks if b.column == "outcome")
    last = [m for m in generator.weights.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias[outcome.start + slot] += bias


@pytest.mark.parametrize("build", [_tvae, _gan], ids=["tvae", "gan"])
def test_a_rare_class_is_drawn_in_exactly_its_requested_share(encoder: TableEncoder, build: object) -> None:
    generator = build(encoder)  # type: ignore[operator]
    _make_rare(generator, encoder, slot=1, bias=-3.0)
    plain = encoder.decode(generator.sample(4000, generator=torch.Generator().manual_seed(1)))
    assert (plain["outcome"] == "readmitted").mean() < 0.15  # rare as the generator makes it

    sample = sample_table(generator, encoder, 1001, seed=0, class_shares=ClassShares.parse("readmitted=0.4"))

    counts = sample.table["outcome"].value_counts()
    assert len(sample.table) == 1001
    assert counts["readmitted"] == 400 and counts["healed"] == 601  # 0.4 * 1001 = 400.4: largest remainder
    assert sample.record["rebalanced"] is True
    assert sample.record["requested_shares"] == {"readmitted": 0.4}
    assert sample.record["target_shares"] == pytest.approx({"healed": 0.6, "readmitted": 0.4})
    assert sample.record["achieved_shares"] == pytest.approx({"healed": 601 / 1001, "readmitted": 400 / 1001})
    assert "drawn_without_condition" not in sample.record
    json.dumps(sample.record)  # goes into the signed manifest as it is


def test_conditioning_by_rejection_keeps_the_models_own_conditional(encoder: TableEncoder) -> None:
    """The TVAE's rows of a class are its own rows of that class: the other columns keep their joint with it."""
    generator = _tvae(encoder)
    first, middle, last = [m for m in generator.module.modules() if isinstance(m, torch.nn.Linear)][3:]  # decoder
    sex, outcome = (next(b for b in encoder.blocks if b.column == c) for c in ("sex", "outcome"))
    with torch.no_grad():  # sex = M and outcome = readmitted both follow the first latent coordinate
        for layer in (first, middle, last):
            layer.weight.zero_()
            layer.bias.zero_()
        first.weight[0, 0], middle.weight[0, 0] = 5.0, 1.0
        for slot in (sex.start + 1, outcome.start + 1):
            last.weight[slot, 0], last.bias[slot] = 4.0, -2.0

    rows = encoder.decode(generator.sample_conditional(500, "outcome", 1, generator=torch.Generator().manual_seed(0)))
    plain = encoder.decode(generator.sample(2000, generator=torch.Generator().manual_seed(1)))

    assert (rows["outcome"] == "readmitted").all()
    assert (rows["sex"] == "M").mean() > (plain["sex"] == "M").mean() + 0.2  # the dependence came along


def test_a_class_the_generator_never_makes_falls_back_and_says_so(
    encoder: TableEncoder, caplog: pytest.LogCaptureFixture
) -> None:
    generator = _tvae(encoder)
    _make_rare(generator, encoder, slot=1, bias=-1e4)

    with caplog.at_level(logging.WARNING, logger="server.sampling"):
        sample = sample_table(generator, encoder, 50, seed=0, class_shares=ClassShares.parse("readmitted=0.5"))

    assert len(sample.table) == 50
    assert sample.record["drawn_without_condition"] == {"readmitted": 25}
    assert sample.record["achieved_shares"]["readmitted"] == 0.0  # the record tells the truth
    assert "drawn without its condition" in caplog.text


def test_dp_class_frequencies_alone_stratify_without_rebalancing(encoder: TableEncoder) -> None:
    sample = sample_table(_tvae(encoder), encoder, 200, seed=0,
                          class_frequencies={"outcome": {"healed": 0.7, "readmitted": 0.3}})

    assert sample.table["outcome"].value_counts().to_dict() == {"healed": 140, "readmitted": 60}
    assert sample.record["rebalanced"] is False and sample.record["requested_shares"] is None
    assert sample.record["class_frequencies"] == {"healed": 0.7, "readmitted": 0.3}
    assert sample_table(_tvae(encoder), encoder, 20, seed=0).record == {"method": "unconditional"}


def test_a_briefly_trained_generator_honours_the_request(
    tmp_path: Path, small_schema: Path, encoder: TableEncoder
) -> None:
    write_site_table(tmp_path / "site.csv", rows=300, seed=2)
    data = torch.from_numpy(encoder.encode(read_site_table(tmp_path / "site.csv", load_schema(small_schema)).clean))
    generator = _tvae(encoder)
    plan = TrainingPlan(
        run_id="r", rounds=1, local_steps=20, sample_rate=0.2, noise_multiplier=1.0, max_grad_norm=1.0, lr=0.5,
        delta=1e-5, accountant="rdp", target_epsilon=3.0, metric_noise_multiplier=100.0, hidden=16, latent=4,
        kl_weight=0.3, seed=0, schema_json=json.dumps({}),
    )
    train_round(generator, data, plan, history=[], rng=torch.Generator().manual_seed(0), device=torch.device("cpu"))

    sample = sample_table(generator, encoder, 600, seed=3, class_shares=ClassShares.parse("healed=0.25,readmitted=0.75"))

    assert sample.table["outcome"].value_counts().to_dict() == {"readmitted": 450, "healed": 150}
    assert not np.isnan(sample.table["age"].astype(float)).any()


def test_the_default_conditional_sampler_refuses_what_is_not_a_class(encoder: TableEncoder) -> None:
    generator = _tvae(encoder)
    with pytest.raises(ValueError, match="cannot condition on 'age'"):
        generator.sample_conditional(5, "age", 0, generator=torch.Generator())  # a number's bins are no class
    with pytest.raises(ValueError, match="slots 0..1"):
        generator.sample_conditional(5, "outcome", 2, generator=torch.Generator())


def test_the_gans_own_conditions_on_the_target_are_uniform_whatever_the_data(encoder: TableEncoder) -> None:
    """No real class frequency reaches the generator's conditions (no unrecorded privacy cost): uniform."""
    generator = _gan(encoder)

    conditions = generator._public_conditions(20_000, torch.Generator().manual_seed(0))

    outcome = 2  # sex, ward, outcome are the conditional columns, in layout order
    slots = conditions.category[conditions.column == outcome]
    assert len(slots) > 2000
    assert abs(float((slots == 1).float().mean()) - 0.5) < 0.03  # the rare class practised half the time
