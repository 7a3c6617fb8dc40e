"""A conditional tabular GAN whose discriminator is trained with DP-SGD (CTGAN family).

Xu et al., "Modeling Tabular Data using Conditional GAN" (NeurIPS 2019) introduced CTGAN; training only the
discriminator privately follows DP-CGAN (Torkzadehmahani et al., CVPR-W 2019) and DP-GAN (Xie et al., 2018).

Privacy argument, which the code below is shaped to keep:

- Only the discriminator touches real rows, so it is ``module``, the one network Opacus wraps. The generator's
  own steps read the discriminator's (already noised) weights and public randomness only: they are
  post-processing of the DP-SGD releases and cost nothing.
- Each real row is fed to the discriminator together with its own fake partner, as one (2, features) sample,
  so the per-sample gradient Opacus clips is the gradient of that row's pair loss; removing the row removes
  its pair. Only ``Linear`` layers and elementwise activations (no batch norm, no dropout, no layer used twice),
  so ghost clipping's norm of a 3-D input is exact (checked in tests/unit/test_ctgan.py).
- With a privacy unit (``client.units``) a sample is one unit's rows, each with its fake partner, laid out
  as (2k, features): real rows at even positions, their partners at odd ones, padding (all-zero real rows,
  with all-zero partners) counting nothing. The clipped per-sample gradient is then the unit's pair losses'.
- A real row's condition is drawn from that row alone. No real class frequency is ever used: the generator's
  conditions are uniform, or follow ``condition_frequencies`` that were released with DP beforehand.

Unlike CTGAN, a share of rows (``unconditioned_share``) trains with an all-zero condition, so that ``sample``
can draw rows from the joint distribution without the real category frequencies CTGAN samples conditions from.

Limits of the argument: the generator is post-processing of the discriminator a site released *alone*. With
shared record-level noise each site's discriminator is under-noised and only the secure sum is DP, and a sum
of generators is no function of that sum: do not combine the two. And the generator steps run inside
``train_step``, which the trainer skips for an empty Poisson batch, so their count follows the batches that
were not empty (probability ``(1 - q) ** n`` each; negligible for large sites, not for tiny ones).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from shared.encoding import OutputBlock
from shared.generator import TabularGenerator, draw_until
from shared.schema import Schema

__all__ = ["DPCTGANGenerator", "GANConfig", "GANDiscriminatorLoss", "slot_frequencies"]

_LEAK = 0.2  # LeakyReLU slope, as CTGAN
_ADAM_BETAS = (0.5, 0.9)  # CTGAN's generator optimizer


@dataclass(frozen=True)
class GANConfig:
    """Architecture and generator-side training settings; part of the run plan, so every site builds the same."""

    hidden: int = 256  # discriminator width
    generator_hidden: int = 256
    noise_dim: int = 64
    generator_lr: float = 5e-4
    generator_steps: int = 1  # generator steps after each DP discriminator step
    generator_batch: int = 256  # public and fixed: it must not follow the private Poisson batch size
    gumbel_tau: float = 0.2
    unconditioned_share: float = 0.5

    def __post_init__(self) -> None:
        for key in ("hidden", "generator_hidden", "noise_dim", "generator_batch"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key.replace('_', '-')} must be a positive integer, got {getattr(self, key)}")
        if self.generator_steps < 0:
            raise ValueError(f"train.generator-steps must be >= 0, got {self.generator_steps}")
        if not self.generator_lr > 0:
            raise ValueError(f"train.generator-lr must be > 0, got {self.generator_lr}")
        if not self.gumbel_tau > 0:
            raise ValueError(f"train.gumbel-tau must be > 0, got {self.gumbel_tau}")
        if not 0.0 <= self.unconditioned_share <= 1.0:
            raise ValueError(f"train.unconditioned-share must be in [0, 1], got {self.unconditioned_share}")


def _mlp(width_in: int, hidden: int, width_out: int, activation: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width_in, hidden), activation, nn.Linear(hidden, hidden), activation,
                         nn.Linear(hidden, width_out))


class _Networks(nn.Module):
    """Both networks in one container, so the state the server averages names them apart."""

    def __init__(self, dim: int, cond_dim: int, config: GANConfig) -> None:
        super().__init__()
        # The same LeakyReLU instance twice holds no parameters, so no layer is reused under ghost clipping.
        self.discriminator = _mlp(dim + cond_dim, config.hidden, 1, nn.LeakyReLU(_LEAK))
        self.generator = _mlp(config.noise_dim + cond_dim, config.generator_hidden, dim, nn.ReLU())


class GANDiscriminatorLoss(nn.Module):
    """Non-saturating GAN loss of the discriminator per sample: logits (N, 2, 1) of a (real, fake) pair, or
    (N, 2k, 1) of a unit's k pairs (real at even positions), summed over the pairs whose real row is present."""

    def __init__(self) -> None:
        super().__init__()
        self.reduction = "mean"

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # The labels are the positions (even: a real row, odd: its fake partner); the target says which real
        # rows are there (padding is all zero). A lone pair is always there, so this is its plain pair loss.
        present = (target[:, 0::2] != 0).any(dim=-1)
        pairs = F.softplus(-output[:, 0::2, 0]) + F.softplus(output[:, 1::2, 0])
        loss = (pairs * present).sum(dim=1)
        if self.reduction == "none":
            return loss
        return loss.sum() if self.reduction == "sum" else loss.mean()


@dataclass(frozen=True)
class _Conditions:
    """Per row: the conditioned column (index into the conditional blocks, -1 for none) and its category slot."""

    column: torch.Tensor
    category: torch.Tensor


class DPCTGANGenerator(TabularGenerator):
    """The DP conditional GAN behind the generator interface.

    Conditions are over the categorical columns (blocks with no offset beside them); categories are addressed
    by their slot in the column's block (the schema's order, the missing slot last); see ``slot_frequencies``.
    """

    name = "dpctgan"

    def __init__(
        self, blocks: tuple[OutputBlock, ...], dim: int, config: GANConfig, *, seed: int = 0,
        condition_frequencies: Mapping[str, Mapping[int, float]] | None = None, pair_seed: int | None = None,
    ) -> None:
        self.blocks, self.dim, self.config = blocks, dim, config
        numeric = {b.column for b in blocks if b.kind == "offset"}
        self._cond_blocks = tuple(b for b in blocks if b.kind == "categorical" and b.column not in numeric)
        starts = np.cumsum([0] + [b.width for b in self._cond_blocks])
        self._cond_starts = torch.tensor(starts[:-1], dtype=torch.long)
        self.cond_dim = int(starts[-1])
        self._frequencies = self._check_frequencies(condition_frequencies or {})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # identical initial weights at every site and at the server
            self._nets = _Networks(dim, self.cond_dim, config)
            # Holds no weights of its own that matter: the generator's steps run it on detached copies of the
            # discriminator's weights, so Opacus's hooks (which sit on the discriminator) never see them.
            self._critic = _mlp(dim + self.cond_dim, config.hidden, 1, nn.LeakyReLU(_LEAK)).requires_grad_(False)
        # The coins of each real row's pair (its condition column, its fake's noise) are handed out in batch
        # order, so removing a row shifts the coins of the rows after it. That costs nothing only while the coins
        # are secret and fresh (then a shifted assignment has the same distribution); drawn from the public plan
        # seed, an adversary could recompute them. Hence an OS seed unless a test fixes ``pair_seed``.
        self._pair_rng = torch.Generator().manual_seed(secrets.randbits(63) if pair_seed is None else pair_seed)
        # The generator's own steps are post-processing: public coins are fine, but a stream of their own, so
        # that what they draw does not depend on how many coins the (private) batch sizes used up.
        self._step_rng = torch.Generator().manual_seed(seed + 1)
        self._optimizer = self._new_optimizer()

    @property
    def module(self) -> nn.Module:
        return self._nets.discriminator

    def criterion(self) -> nn.Module:
        return GANDiscriminatorLoss()

    def train_step(
        self, batch: torch.Tensor, *, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer
    ) -> None:
        """One (DP) discriminator step on ``batch`` (rows or units), then ``config.generator_steps`` generator steps."""
        self._place(batch.device)
        pairs = self._unit_pairs(batch, self._pair_rng) if batch.dim() == 3 else self._pairs(batch, self._pair_rng)
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(pairs), pairs)
        loss.backward()
        optimizer.step()
        for _ in range(self.config.generator_steps):
            self.generator_step()

    def after_empty_batch(self) -> None:
        for _ in range(self.config.generator_steps):
            self.generator_step()

    def generator_step(self) -> float:
        """One generator step against the current discriminator; returns the generator's loss.

        Post-processing: it reads the discriminator's weights (detached, so no gradient reaches them, their
        ``.grad`` or Opacus's per-sample state), public conditions and its own random stream, never a real row,
        and its batch size is fixed, not the private Poisson batch size.
        """
        device = self._device()
        self._place(device)
        conditions = self._public_conditions(self.config.generator_batch, self._step_rng)
        fake, logits, cond = self._generate(conditions, self._step_rng, device, hard=False)
        weights = {k: v.detach() for k, v in self._nets.discriminator.named_parameters()}
        score = functional_call(self._critic, weights, (torch.cat([fake, cond], dim=1),))
        loss = F.softplus(-score).mean() + self._condition_loss(logits, conditions)
        self._optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self._optimizer.step()
        return float(loss.detach())

    def per_row_loss(self, data: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """The discriminator's pair loss of each real row with a fresh fake partner (one value per row)."""
        self._place(data.device)
        criterion = GANDiscriminatorLoss()
        criterion.reduction = "none"
        with torch.no_grad():
            pairs = self._pairs(data, generator)
            return criterion(self._nets.discriminator(pairs), pairs)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator) -> np.ndarray:
        """Draw ``n`` encoded rows: unconditioned, or conditioned on the (DP) ``condition_frequencies``."""
        column = torch.full((n,), -1, dtype=torch.long)
        category = torch.zeros(n, dtype=torch.long)
        if self._frequencies:
            known = torch.tensor(sorted(self._frequencies), dtype=torch.long)
            column = known[torch.randint(len(known), (n,), generator=generator)]
            category = self._draw_categories(column, generator)
        self._place(self._device())
        fake, _, _ = self._generate(_Conditions(column, category), generator, self._device(), hard=True)
        return fake.cpu().numpy().astype(np.float32)

    @torch.no_grad()
    def sample_conditional(self, n: int, column: str, category: int, *, generator: torch.Generator) -> np.ndarray:
        """Draw ``n`` encoded rows whose ``column`` is the category in ``category``'s slot (to oversample it).

        Rows are generated conditioned on the category and the ones the generator still gave another category
        are drawn again (``shared.generator.draw_until``); a ValueError says when the generator cannot make it.
        """
        names = [b.column for b in self._cond_blocks]
        if column not in names:
            raise ValueError(f"cannot condition on {column!r}: the conditional columns are {names}")
        index = names.index(column)
        block = self._cond_blocks[index]
        if not 0 <= category < block.width:
            raise ValueError(f"column {column!r} has category slots 0..{block.width - 1}, got {category}")
        self._place(self._device())

        def conditioned(draws: int) -> np.ndarray:
            conditions = _Conditions(torch.full((draws,), index), torch.full((draws,), category))
            fake, _, _ = self._generate(conditions, generator, self._device(), hard=True)
            return fake.cpu().numpy()

        return draw_until(n, conditioned, block.start + category, dim=self.dim,
                          what=f"{column!r} slot {category} (conditioned)")

    @property
    def weights(self) -> nn.Module:
        """Both networks ("discriminator.*", "generator.*"): the federation averages the pair; no optimizer state."""
        return self._nets

    def load_state_dict(self, state: Mapping[str, torch.Tensor | np.ndarray]) -> None:
        super().load_state_dict(state)
        self._optimizer = self._new_optimizer()  # Adam's moments belonged to the weights just replaced

    # -- internals ---------------------------------------------------------------------------------------

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self._nets.generator.parameters(), lr=self.config.generator_lr, betas=_ADAM_BETAS, weight_decay=1e-6
        )

    def _device(self) -> torch.device:
        return next(self._nets.discriminator.parameters()).device

    def _place(self, device: torch.device) -> None:
        """Follow the discriminator (which the trainer moves) with the generator and the critic."""
        if next(self._nets.generator.parameters()).device != device:
            self._nets.generator.to(device)
            self._critic.to(device)
            self._optimizer = self._new_optimizer()  # Adam's state lives on the old device

    def _pairs(self, batch: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """(N, 2, dim + cond): each real row with its own condition, then a fake made under that condition."""
        conditions = self._row_conditions(batch, rng)
        with torch.no_grad():
            fake, _, cond = self._generate(conditions, rng, batch.device, hard=False)
        return torch.stack([torch.cat([batch, cond], dim=1), torch.cat([fake, cond], dim=1)], dim=1)

    def _unit_pairs(self, units: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """(N, 2k, dim + cond): each unit's real rows paired as in ``_pairs``, padding rows left all zero."""
        n, k, _ = units.shape
        present = (units != 0).any(dim=-1)
        rows = self._pairs(units[present], rng)  # (real rows, 2, dim + cond), in batch order
        out = units.new_zeros((n, k, 2, rows.shape[-1]))
        out[present] = rows
        return out.reshape(n, 2 * k, rows.shape[-1])

    def _row_conditions(self, batch: torch.Tensor, rng: torch.Generator) -> _Conditions:
        """Per real row, a random conditional column and that row's own category in it (from the row alone)."""
        n = batch.shape[0]
        column = self._random_columns(n, rng)
        category = torch.zeros(n, dtype=torch.long)
        if self._cond_blocks:
            own = torch.stack([batch[:, b.start : b.start + b.width].argmax(dim=1) for b in self._cond_blocks], 1)
            picked = own.cpu().gather(1, column.clamp(min=0)[:, None]).squeeze(1)
            category = torch.where(column >= 0, picked, category)
        return _Conditions(column, category)

    def _public_conditions(self, n: int, rng: torch.Generator) -> _Conditions:
        """Conditions for the generator's own steps, from public information only."""
        column = self._random_columns(n, rng)
        return _Conditions(column, self._draw_categories(column, rng))

    def _random_columns(self, n: int, rng: torch.Generator) -> torch.Tensor:
        if not self._cond_blocks:
            return torch.full((n,), -1, dtype=torch.long)
        column = torch.randint(len(self._cond_blocks), (n,), generator=rng)
        unconditioned = torch.rand(n, generator=rng) < self.config.unconditioned_share
        return torch.where(unconditioned, torch.full_like(column, -1), column)

    def _draw_categories(self, column: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """A category slot per conditioned row: from the DP frequencies where given, else uniform."""
        category = torch.zeros(len(column), dtype=torch.long)
        for index, block in enumerate(self._cond_blocks):
            rows = (column == index).nonzero().squeeze(1)
            if not len(rows):
                continue
            shares = self._frequencies.get(index)
            if shares is None:
                shares = torch.full((block.width,), 1.0 / block.width)
            category[rows] = torch.multinomial(shares, len(rows), replacement=True, generator=rng)
        return category

    def _cond_vector(self, conditions: _Conditions) -> torch.Tensor:
        cond = torch.zeros(len(conditions.column), self.cond_dim)
        rows = (conditions.column >= 0).nonzero().squeeze(1)
        if len(rows):
            slots = self._cond_starts[conditions.column[rows]] + conditions.category[rows]
            cond[rows, slots] = 1.0
        return cond

    def _generate(
        self, conditions: _Conditions, rng: torch.Generator, device: torch.device, *, hard: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fake rows, the generator's raw logits and the condition vectors, all on ``device``.

        Training (``hard=False``) uses Gumbel-softmax per categorical block as CTGAN does, so the discriminator's
        gradient reaches the generator; sampling (``hard=True``) draws a one-hot category per block.
        """
        n = len(conditions.column)
        cond = self._cond_vector(conditions).to(device)
        z = torch.randn(n, self.config.noise_dim, generator=rng).to(device)
        logits = self._nets.generator(torch.cat([z, cond], dim=1))
        uniform = torch.rand(n, self.dim, generator=rng).clamp(1e-10, 1.0 - 1e-10).to(device)
        gumbel = -torch.log(-torch.log(uniform))
        parts = []
        for block in self.blocks:
            part = logits[:, block.start : block.start + block.width]
            if block.kind == "offset":
                parts.append(torch.sigmoid(part))
            elif hard:
                choice = (part + gumbel[:, block.start : block.start + block.width]).argmax(dim=1)
                parts.append(F.one_hot(choice, block.width).to(part.dtype))
            else:
                noisy = (part + gumbel[:, block.start : block.start + block.width]) / self.config.gumbel_tau
                parts.append(torch.softmax(noisy, dim=1))
        return torch.cat(parts, dim=1), logits, cond

    def _condition_loss(self, logits: torch.Tensor, conditions: _Conditions) -> torch.Tensor:
        """CTGAN's conditional loss: cross-entropy of each conditioned block against its condition."""
        total = logits.new_zeros(())
        for index, block in enumerate(self._cond_blocks):
            rows = (conditions.column == index).nonzero().squeeze(1)
            if len(rows):
                part = logits[rows.to(logits.device), block.start : block.start + block.width]
                total = total + F.cross_entropy(part, conditions.category[rows].to(logits.device), reduction="sum")
        return total / len(conditions.column)

    def _check_frequencies(self, given: Mapping[str, Mapping[int, float]]) -> dict[int, torch.Tensor]:
        names = [b.column for b in self._cond_blocks]
        out: dict[int, torch.Tensor] = {}
        for column, shares in given.items():
            if column not in names:
                raise ValueError(f"condition_frequencies: {column!r} is not a conditional column; use one of {names}")
            block = self._cond_blocks[names.index(column)]
            vector = torch.zeros(block.width, dtype=torch.float64)
            for slot, share in shares.items():
                if not 0 <= int(slot) < block.width or not np.isfinite(share) or share < 0:
                    raise ValueError(
                        f"condition_frequencies[{column!r}]: slot {slot} share {share} is not a slot in "
                        f"0..{block.width - 1} with a finite share >= 0"
                    )
                vector[int(slot)] = float(share)
            if vector.sum() <= 0:
                raise ValueError(f"condition_frequencies[{column!r}]: the shares add up to 0")
            out[names.index(column)] = (vector / vector.sum()).float()
        return out


def slot_frequencies(schema: Schema, frequencies: Mapping[str, Mapping[str, float]]) -> dict[str, dict[int, float]]:
    """Category-name shares (as ``shared.dp_statistics.class_frequencies`` gives them) keyed by block slot."""
    out: dict[str, dict[int, float]] = {}
    for name, shares in frequencies.items():
        categories: Sequence[str] = schema.column(name).categories or ()
        unknown = sorted(set(shares) - set(categories))
        if unknown:
            raise ValueError(f"frequencies for {name!r} name categories outside the schema: {unknown}")
        out[name] = {categories.index(c): float(s) for c, s in shares.items()}
    return out
