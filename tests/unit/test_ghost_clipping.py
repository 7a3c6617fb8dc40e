"""The pruned first backward pass clips exactly as Opacus's own ghost clipping, and refuses a step it cannot
clip: compared step by step against Opacus's DPLossFastGradientClipping and optimizer on every generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import GradSampleModuleFastGradientClipping
from opacus.optimizers import DPOptimizerFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping

from client.ghost_clipping import GhostClippingOptimizer, PrunedGhostClippingLoss, anchor_parameters
from client.trainer import private_parts
from client.units import pack_units
from shared.encoding import TableEncoder
from shared.errors import LedgerError
from shared.plan import TrainingPlan
from shared.schema import Schema
from shared.synthesizers import build_generator
from shared.validation import read_site_table
from tests.conftest import SMALL_SCHEMA, write_site_table

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> tuple[TableEncoder, torch.Tensor]:
    path = Path(tmp_path_factory.mktemp("ghost")) / "site.csv"
    write_site_table(path, rows=300, seed=0)
    schema = Schema.from_dict(SMALL_SCHEMA)
    encoder = TableEncoder.from_schema(schema)
    return encoder, torch.from_numpy(encoder.encode(read_site_table(path, schema).clean))


def _plan(generator: str) -> TrainingPlan:
    return TrainingPlan(
        run_id="r", rounds=1, local_steps=1, sample_rate=0.1, noise_multiplier=1.0, max_grad_norm=0.5, lr=0.5,
        delta=1e-5, accountant="rdp", target_epsilon=3.0, metric_noise_multiplier=100.0, hidden=32, latent=4,
        kl_weight=0.3, seed=3, schema_json=json.dumps(SMALL_SCHEMA), generator=generator,
    )


def _opacus_parts(generator, plan: TrainingPlan, batch: int):  # type: ignore[no-untyped-def]
    gsm = GradSampleModuleFastGradientClipping(generator.module, batch_first=True, loss_reduction="mean",
                                               max_grad_norm=plan.max_grad_norm, use_ghost_clipping=True)
    optimizer = DPOptimizerFastGradientClipping(torch.optim.SGD(gsm.parameters(), lr=plan.lr), noise_multiplier=0.0,
                                                max_grad_norm=plan.max_grad_norm, expected_batch_size=batch,
                                                loss_reduction="mean")
    return gsm, optimizer, DPLossFastGradientClipping(gsm, optimizer, generator.criterion(), loss_reduction="mean")


def _steps(generator, batches: list[torch.Tensor], parts) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    module, optimizer, criterion = parts
    if hasattr(generator, "_pair_rng"):  # the GAN draws its fakes from a secret stream: the same one in both runs
        generator._pair_rng = torch.Generator().manual_seed(7)
    for index, batch in enumerate(batches):
        torch.manual_seed(100 + index)  # the VAE's latent draws: the same in both runs
        generator.train_step(batch, model=module, criterion=criterion, optimizer=optimizer)
    module._close()
    return [p.detach().clone() for p in generator.module.parameters()]


@pytest.mark.parametrize("name", ["tvae", "ctvae", "gan"])
@pytest.mark.parametrize("units", [False, True])
def test_pruned_pass_gives_opacus_clipped_gradients(encoded: tuple[TableEncoder, torch.Tensor], name: str,
                                                    units: bool) -> None:
    encoder, data = encoded
    plan = _plan(name)
    if units:  # 3 rows to a unit: Opacus clips each unit's gradient over its whole block
        data = torch.from_numpy(pack_units(data.numpy(), np.repeat(np.arange(100), 3), 3))
    batches = [data[i * 40 : (i + 1) * 40] for i in range(3)]

    reference = build_generator(plan, encoder)
    expected = _steps(reference, batches, _opacus_parts(reference, plan, 40))

    ours = build_generator(plan, encoder)
    parts = private_parts(ours, plan, noise_multiplier=0.0, expected_batch=40, rng=torch.Generator().manual_seed(0),
                          device=torch.device("cpu"))
    assert isinstance(parts.criterion, PrunedGhostClippingLoss) and isinstance(parts.optimizer, GhostClippingOptimizer)
    got = _steps(ours, batches, (parts.module, parts.optimizer, parts.criterion))

    moved = [not torch.equal(a, b) for a, b in zip(got, [p.detach() for p in build_generator(plan, encoder).module.parameters()], strict=True)]
    assert any(moved), "the steps changed nothing, so the comparison would prove nothing"
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_layer_without_bias_is_anchored_by_its_own_weights() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(4, 8, bias=False), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    anchors = anchor_parameters(net)
    assert anchors[0] is net[0].weight and anchors[1] is net[2].bias and len(anchors) == 2


def test_a_step_whose_norms_were_not_all_computed_is_refused() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    gsm = GradSampleModuleFastGradientClipping(net, batch_first=True, loss_reduction="mean", max_grad_norm=1.0)
    optimizer = GhostClippingOptimizer(torch.optim.SGD(gsm.parameters(), lr=0.1), noise_multiplier=1.0,
                                       max_grad_norm=1.0, expected_batch_size=8, loss_reduction="mean")
    criterion = PrunedGhostClippingLoss(gsm, optimizer, torch.nn.MSELoss(), loss_reduction="mean")
    criterion.anchors = [net[2].bias]  # as if the first layer were missed: its norm hook never fires
    x, y = torch.randn(8, 4), torch.randn(8)
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(LedgerError, match="no per-sample gradient norm"):
        criterion(gsm(x).squeeze(1), y).backward()
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
