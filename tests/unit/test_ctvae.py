"""The VAE whose decoder is conditioned on the target's class: exact ghost clipping, draws of a class on
request, learnt class shares, and that DP training really learns what a rare class looks like."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import GradSampleModuleFastGradientClipping
from opacus.optimizers import DPOptimizerFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

from client.trainer import train_round
from shared.ctvae import ConditionalTVAEGenerator
from shared.encoding import TableEncoder
from shared.plan import TrainingPlan
from shared.schema import load_schema
from shared.synthesizers import build_generator
from shared.tvae import TVAEConfig
from shared.validation import read_site_table
from tests.conftest import write_site_table

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

SMALL = TVAEConfig(hidden=16, latent=4)


@pytest.fixture()
def encoded(tmp_path: Path, small_schema: Path) -> tuple[TableEncoder, torch.Tensor]:
    write_site_table(tmp_path / "site.csv", rows=200, seed=3)
    schema = load_schema(small_schema)
    encoder = TableEncoder.from_schema(schema)
    return encoder, torch.from_numpy(encoder.encode(read_site_table(tmp_path / "site.csv", schema).clean))


def _plan(**overrides: object) -> TrainingPlan:
    values: dict[str, object] = dict(
        run_id="r", rounds=1, local_steps=5, sample_rate=0.1, noise_multiplier=1.0, max_grad_norm=1.0, lr=0.5,
        delta=1e-5, accountant="rdp", target_epsilon=3.0, metric_noise_multiplier=100.0, hidden=16, latent=4,
        kl_weight=0.3, seed=0, schema_json=json.dumps({}), generator="ctvae",
    )
    values.update(overrides)
    return TrainingPlan(**values)  # type: ignore[arg-type]


def test_ghost_clipping_of_the_conditional_vae_is_exact(encoded: tuple[TableEncoder, torch.Tensor]) -> None:
    encoder, data = encoded
    generator = ConditionalTVAEGenerator(encoder.blocks, encoder.dim, SMALL, condition="outcome", seed=4)
    rows = data[:10]
    plain, loss = copy.deepcopy(generator.module), generator.criterion()
    by_hand = []
    for row in range(len(rows)):  # plain autograd, one row at a time, with the same latent draw as below
        plain.zero_grad()
        torch.manual_seed(row)
        loss(plain(rows[row : row + 1]), rows[row : row + 1]).backward()
        by_hand.append(torch.cat([p.grad.flatten() for p in plain.parameters() if p.grad is not None]))
    norms = torch.stack([g.norm() for g in by_hand])
    gsm = GradSampleModuleFastGradientClipping(
        generator.module, batch_first=True, loss_reduction="mean", max_grad_norm=1.0, use_ghost_clipping=True
    )
    optimizer = DPOptimizerFastGradientClipping(torch.optim.SGD(gsm.parameters(), lr=0.1), noise_multiplier=0.0,
                                                max_grad_norm=1.0, expected_batch_size=len(rows), loss_reduction="mean")
    criterion = DPLossFastGradientClipping(gsm, optimizer, generator.criterion(), loss_reduction="mean")
    for row in range(len(rows)):  # the same rows through Opacus, one per batch so the latent draws match
        torch.manual_seed(row)
        criterion(gsm(rows[row : row + 1]), rows[row : row + 1]).backward()
        assert torch.allclose(gsm.per_sample_gradient_norms, norms[row : row + 1], rtol=1e-4, atol=1e-6)
        optimizer.zero_grad(set_to_none=True)
    gsm._close()


def test_a_class_is_drawn_on_request_and_shares_follow_the_prior(encoded: tuple[TableEncoder, torch.Tensor]) -> None:
    encoder, _ = encoded
    generator = ConditionalTVAEGenerator(encoder.blocks, encoder.dim, SMALL, condition="outcome")
    with torch.no_grad():
        generator._net.prior.weight.zero_()
        generator._net.prior.bias.copy_(torch.log(torch.tensor([0.9, 0.1])))

    rows = generator.sample_conditional(300, "outcome", 1, generator=torch.Generator().manual_seed(0))
    plain = encoder.decode(generator.sample(5000, generator=torch.Generator().manual_seed(1)))

    assert rows.shape == (300, encoder.dim)
    assert set(encoder.decode(rows)["outcome"]) == {"readmitted"}
    assert abs(float((plain["outcome"] == "readmitted").mean()) - 0.1) < 0.02
    with pytest.raises(ValueError, match="slots 0..1"):
        generator.sample_conditional(5, "outcome", 2, generator=torch.Generator())
    sexes = encoder.decode(generator.sample_conditional(20, "sex", 1, generator=torch.Generator().manual_seed(0)))
    assert set(sexes["sex"]) == {"M"}  # another column: by rejection, as any generator


def test_units_pass_through_the_network_row_by_row(encoded: tuple[TableEncoder, torch.Tensor]) -> None:
    encoder, data = encoded
    generator = ConditionalTVAEGenerator(encoder.blocks, encoder.dim, SMALL, condition="outcome")
    units = data[:12].reshape(4, 3, encoder.dim)

    output = generator.module(units)

    assert output.shape == (4, 3, encoder.dim + 2 * SMALL.latent + 2)
    assert generator.criterion()(output, units).shape == ()


def test_dp_training_learns_what_the_rare_class_looks_like(small_schema: Path) -> None:
    """Readmitted (10%) patients are all in neurology: the conditioned draws must say so, the others not."""
    schema = load_schema(small_schema)
    encoder = TableEncoder.from_schema(schema)
    rng = np.random.default_rng(0)
    n = 3000
    rare = rng.random(n) < 0.1
    table = {
        "patient_id": [f"P{i}" for i in range(n)], "age": rng.integers(18, 96, n),
        "sex": rng.choice(["F", "M"], n), "ward": np.where(rare, "neuro", rng.choice(["cardio", "onco", "ortho"], n)),
        "lab": rng.gamma(2.0, 40.0, n).round(3), "outcome": np.where(rare, "readmitted", "healed"),
    }
    import pandas as pd

    data = torch.from_numpy(encoder.encode(pd.DataFrame(table).astype({"age": "Int64"})))
    plan = _plan(local_steps=300, sample_rate=0.1, noise_multiplier=0.8, lr=1.0, hidden=32,
                 schema_json=json.dumps(schema.to_dict()))
    generator = build_generator(plan, encoder)
    assert isinstance(generator, ConditionalTVAEGenerator)

    train_round(generator, data, plan, history=[], rng=torch.Generator().manual_seed(0), device=torch.device("cpu"))

    draw = torch.Generator().manual_seed(1)
    readmitted = encoder.decode(generator.sample_conditional(500, "outcome", 1, generator=draw))
    healed = encoder.decode(generator.sample_conditional(500, "outcome", 0, generator=draw))
    assert (readmitted["ward"] == "neuro").mean() > 0.6
    assert (healed["ward"] == "neuro").mean() < 0.15
