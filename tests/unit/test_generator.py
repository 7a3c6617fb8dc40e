"""The DP tabular VAE behind the generator interface, and one round of local DP-SGD on it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from client.trainer import train_round
from shared.encoding import TableEncoder
from shared.generator import state_hash
from shared.plan import TrainingPlan
from shared.schema import load_schema
from shared.tvae import TVAEConfig, TVAEGenerator
from shared.validation import read_site_table
from tests.conftest import write_site_table


@pytest.fixture()
def encoded(tmp_path: Path, small_schema: Path) -> tuple[TableEncoder, torch.Tensor]:
    write_site_table(tmp_path / "site.csv", rows=200, seed=3)
    schema = load_schema(small_schema)
    encoder = TableEncoder.from_schema(schema)
    clean = read_site_table(tmp_path / "site.csv", schema).clean
    return encoder, torch.from_numpy(encoder.encode(clean))


def _plan(**overrides: object) -> TrainingPlan:
    values: dict[str, object] = dict(
        run_id="r", rounds=1, local_steps=5, sample_rate=0.1, noise_multiplier=1.0, max_grad_norm=1.0, lr=0.5,
        delta=1e-5, accountant="rdp", target_epsilon=3.0, metric_noise_multiplier=100.0, hidden=16, latent=4,
        kl_weight=0.3, seed=0, schema_json=json.dumps({}),
    )
    values.update(overrides)
    return TrainingPlan(**values)  # type: ignore[arg-type]


def test_samples_decode_into_the_schema(encoded: tuple[TableEncoder, torch.Tensor]) -> None:
    encoder, _ = encoded
    generator = TVAEGenerator(encoder.blocks, encoder.dim, TVAEConfig(hidden=16, latent=4))
    sample = generator.sample(50, generator=torch.Generator().manual_seed(0))
    for block in encoder.blocks:
        part = sample[:, block.start : block.start + block.width]
        if block.kind == "categorical":
            assert np.all(part.sum(axis=1) == 1.0)  # exactly one slot chosen per categorical block
        else:
            assert np.all((part >= 0) & (part <= 1))
    frame = encoder.decode(sample)
    assert frame["age"].between(18, 95).all()


def test_state_dicts_travel_and_wrong_shapes_are_refused(encoded: tuple[TableEncoder, torch.Tensor]) -> None:
    encoder, _ = encoded
    a = TVAEGenerator(encoder.blocks, encoder.dim, TVAEConfig(hidden=16, latent=4), seed=1)
    b = TVAEGenerator(encoder.blocks, encoder.dim, TVAEConfig(hidden=16, latent=4), seed=2)
    b.load_state_dict(a.state_dict())
    assert state_hash(b.state_dict()) == state_hash(a.state_dict())
    wide = TVAEGenerator(encoder.blocks, encoder.dim, TVAEConfig(hidden=32, latent=4))
    with pytest.raises(ValueError, match="shape"):
        a.load_state_dict(wide.state_dict())
    poisoned = {k: v.clone() for k, v in a.state_dict().items()}
    next(iter(poisoned.values())).view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        a.load_state_dict(poisoned)


def test_a_round_takes_exactly_the_planned_steps_and_records_them(encoded: tuple[TableEncoder, torch.Tensor]) -> None:
    encoder, data = encoded
    plan = _plan()
    generator = TVAEGenerator(encoder.blocks, encoder.dim, plan.model_config)
    before = state_hash(generator.state_dict())
    prior = [(100.0, 1.0, 1)]

    result = train_round(generator, data, plan, history=prior, rng=torch.Generator().manual_seed(0), device=torch.device("cpu"))

    assert result.steps == plan.local_steps
    assert result.history == prior + [(plan.noise_multiplier, plan.sample_rate, plan.local_steps)]
    assert state_hash(generator.state_dict()) != before
    assert 0.0 <= result.noisy_loss <= 100.0


def test_empty_poisson_batches_still_take_a_noise_step(encoded: tuple[TableEncoder, torch.Tensor]) -> None:
    encoder, data = encoded
    plan = _plan(sample_rate=1e-6, local_steps=3)  # every sampled batch is empty
    generator = TVAEGenerator(encoder.blocks, encoder.dim, plan.model_config)
    before = state_hash(generator.state_dict())

    result = train_round(generator, data, plan, history=[], rng=torch.Generator().manual_seed(0), device=torch.device("cpu"))

    assert result.steps == 3 and state_hash(generator.state_dict()) != before  # noise moved the weights
