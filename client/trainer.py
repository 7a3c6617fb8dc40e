"""Local DP-SGD training of the generator at a site (Abadi et al., "Deep Learning with Differential
Privacy", CCS 2016), built from Opacus's parts.

Opacus's ``PrivacyEngine.make_private`` derives the sample rate from the data loader (1/len(loader)); the
fedsynth plan fixes the sample rate publicly instead, so that what a site spends does not depend on (and so
does not reveal) its row count. We therefore assemble the same parts make_private uses (ghost-clipping
module, DP optimizer, DP loss, Poisson sampler) and attach the accountant with the planned rate.

``data`` is rows (N, features), or units (N, k, features) when the plan has a privacy unit (``client.units``):
then Poisson sampling, the expected batch size and the accountant's sample rate are all over units, and the
gradient Opacus clips per sample is a whole unit's.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import torch
from opacus.accountants import create_accountant
from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import GradSampleModuleFastGradientClipping
from opacus.optimizers import DPOptimizerFastGradientClipping
from opacus.utils.uniform_sampler import UniformWithReplacementSampler

from client.ghost_clipping import GhostClippingOptimizer, PrunedGhostClippingLoss
from shared.accounting import History
from shared.errors import LedgerError
from shared.generator import TabularGenerator
from shared.plan import LOSS_BOUND, TrainingPlan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalResult:
    """What one round of local training produced. Only ``noisy_loss`` and the weights may leave the site."""

    steps: int
    noisy_loss: float
    history: History


def train_round(
    generator: TabularGenerator,
    data: torch.Tensor,
    plan: TrainingPlan,
    *,
    history: History,
    rng: torch.Generator,
    device: torch.device,
    noise_multiplier: float | None = None,
) -> LocalResult:
    """Run ``plan.local_steps`` DP-SGD steps on ``data`` and release a noisy mean training loss.

    ``history`` is the site's accountant history before this round (from its ledger); the returned history
    is the accountant's own record after it, which the caller checks against what it wrote ahead.
    ``noise_multiplier`` is the noise this site adds itself: the plan's sigma, or its share of it when the
    record-level noise is shared and the update leaves only inside a secure sum.
    """
    noise = plan.noise_multiplier if noise_multiplier is None else noise_multiplier
    data = data.to(device)
    if plan.record_noise == "shared":
        # Every site divides by the same public number, so the secure sum is exactly one central DP-SGD
        # step; a site-specific divisor would weight (and under-noise) small sites' rows.
        expected_batch = plan.shared_batch_size
    else:
        expected_batch = max(1, round(plan.sample_rate * data.shape[0]))
    parts = private_parts(generator, plan, noise_multiplier=noise, expected_batch=expected_batch, rng=rng,
                          device=device)
    gsm, optimizer, criterion = parts.module, parts.optimizer, parts.criterion
    accountant = create_accountant(mechanism=plan.accountant)
    accountant.history = list(history)  # cumulative: never a fresh accountant that starts again at zero
    optimizer.attach_step_hook(accountant.get_optimizer_hook_fn(sample_rate=plan.sample_rate))
    sampler = UniformWithReplacementSampler(num_samples=data.shape[0], sample_rate=plan.sample_rate, generator=rng)

    # The generator's own randomness inside a step (the VAE's latent draws) comes from torch's global stream;
    # seed it from the round's secret generator, so no public seed (the plan's, or torch's fixed default)
    # lets anyone replay which draws went to which row.
    torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=rng)))
    steps = 0
    # Opacus's ghost clipping hooks module outputs; torch warns about it on every step, to no one's benefit.
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    while steps < plan.local_steps:
        for indices in sampler:
            if steps == plan.local_steps:
                break
            if indices:
                generator.train_step(_trimmed(data[indices]), model=gsm, criterion=criterion, optimizer=optimizer)
            else:
                _noise_only_step(gsm, optimizer)
                generator.after_empty_batch()
            steps += 1
    gsm._close()  # remove Opacus hooks so the bare module can be sampled and serialised
    expected = list(history) + [(noise, plan.sample_rate, plan.local_steps)]
    if _flatten(accountant.history) != _flatten(expected):
        raise LedgerError(
            "the accountant recorded a different number of DP-SGD steps than the ledger was charged for; "
            "refusing to release this update"
        )
    loss = _noisy_mean_loss(generator, data, plan, rng)
    return LocalResult(steps=steps, noisy_loss=loss, history=list(accountant.history))


@dataclass(frozen=True)
class PrivateParts:
    """What one DP-SGD step runs through: Opacus's ghost-clipping module, DP optimizer and DP loss."""

    module: GradSampleModuleFastGradientClipping
    optimizer: DPOptimizerFastGradientClipping
    criterion: PrunedGhostClippingLoss


def private_parts(
    generator: TabularGenerator, plan: TrainingPlan, *, noise_multiplier: float, expected_batch: int,
    rng: torch.Generator, device: torch.device,
) -> PrivateParts:
    """The parts ``PrivacyEngine.make_private`` would build, with the plan's public sample rate and batch.

    ``benchmarks/dp_step.py`` times steps through exactly these parts against the bare module.
    """
    module = generator.module.to(device)
    gsm = GradSampleModuleFastGradientClipping(
        module, batch_first=True, loss_reduction="mean", max_grad_norm=plan.max_grad_norm, use_ghost_clipping=True
    )
    optimizer = GhostClippingOptimizer(
        torch.optim.SGD(gsm.parameters(), lr=plan.lr),
        noise_multiplier=noise_multiplier,
        max_grad_norm=plan.max_grad_norm,
        expected_batch_size=expected_batch,
        loss_reduction="mean",
        generator=rng if device.type == "cpu" else None,
    )
    criterion = PrunedGhostClippingLoss(gsm, optimizer, generator.criterion().to(device), loss_reduction="mean")
    return PrivateParts(gsm, optimizer, criterion)


def _trimmed(batch: torch.Tensor) -> torch.Tensor:
    """A batch of units without the padding positions no unit in it uses (a unit's real rows come first)."""
    if batch.dim() != 3:
        return batch
    used = int((batch != 0).any(dim=-1).sum(dim=1).max())
    return batch[:, : max(used, 1)]


def _noise_only_step(gsm: torch.nn.Module, optimizer: DPOptimizerFastGradientClipping) -> None:
    """An empty Poisson batch still takes a step of pure noise: skipping it would reveal the batch was empty."""
    optimizer.zero_grad(set_to_none=False)
    for p in gsm.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    optimizer.step()


def _noisy_mean_loss(generator: TabularGenerator, data: torch.Tensor, plan: TrainingPlan, rng: torch.Generator) -> float:
    """Release the mean per-row loss with the Gaussian mechanism, so the server can show progress.

    The released vector is (sum of per-row losses clipped to [0, B] divided by B, row count); adding or removing
    a row moves it by at most sqrt(2) in L2, and each coordinate gets N(0, (z * sqrt(2))^2) noise, which is the
    Gaussian mechanism with noise multiplier z = ``plan.metric_noise_multiplier`` (sample rate 1, one step).
    The ledger charges it in every round as ``(z, 1.0, 1)``. With units, a unit's value is the mean of its
    rows' clipped losses (still in [0, B]) and the count is of units, so one unit moves it by sqrt(2) too.
    """
    losses = _unit_losses(generator, data, rng) if data.dim() == 3 else generator.per_row_loss(data, generator=rng)
    losses = losses.clamp(0.0, LOSS_BOUND).cpu()
    scale = plan.metric_noise_multiplier * (2.0**0.5)
    noise = torch.randn(2, generator=rng, dtype=torch.float64) * scale
    noisy_sum = float(losses.double().sum()) / LOSS_BOUND + float(noise[0])
    noisy_count = float(losses.shape[0]) + float(noise[1])
    # Clamping is post-processing: it costs no privacy and keeps tiny sites from printing absurd values.
    return min(max(LOSS_BOUND * noisy_sum / max(noisy_count, 1.0), 0.0), LOSS_BOUND)


def _unit_losses(generator: TabularGenerator, units: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Per unit, the mean of its real rows' losses, each clipped to [0, LOSS_BOUND] first."""
    present = (units != 0).any(dim=-1)
    rows = generator.per_row_loss(units[present], generator=rng).clamp(0.0, LOSS_BOUND)
    sums = torch.zeros(units.shape[0], dtype=rows.dtype, device=rows.device)
    owner = torch.arange(units.shape[0], device=units.device)[:, None].expand_as(present)[present]
    sums.index_add_(0, owner.to(rows.device), rows)
    return sums / present.sum(dim=1).clamp(min=1).to(rows.device)


def _flatten(history: History) -> dict[tuple[float, float], int]:
    """Opacus merges consecutive identical steps; compare histories by total steps per (noise, rate)."""
    totals: dict[tuple[float, float], int] = {}
    for noise, rate, steps in history:
        totals[(float(noise), float(rate))] = totals.get((float(noise), float(rate)), 0) + int(steps)
    return totals
