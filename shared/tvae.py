"""A tabular VAE with mixed-type output heads, the default fedsynth generator (TVAE family).

Xu et al., "Modeling Tabular Data using Conditional GAN" (NeurIPS 2019) introduced TVAE; this version is
shaped for DP-SGD: plain ``Linear``/``ReLU`` layers (Opacus ghost clipping computes their per-sample norms
without materialising per-sample gradients), no batch statistics (which would mix rows and break per-row
clipping), and a per-row loss. Every column arrives from ``shared.encoding`` as a categorical block (the
category, or the bin of a number) plus, for numbers, the offset inside the bin; the decoder has a softmax head
per categorical block and a sigmoid head per offset.

A batch is either rows (N, features) or units (N, rows, features; ``client.units``): the network runs on
the last dimension only, so Opacus's per-sample gradient (over the first) is then a unit's, and the loss of
a unit is the sum over its real rows (all-zero rows are padding and count nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.encoding import OutputBlock
from shared.generator import TabularGenerator
from shared.slots import EncodedSlots, one_hot


# Rows decoded at a time: the activations of a few thousand rows stay in the CPU's cache, which made sampling
# ~1.5x faster than one pass over the whole table (python -m benchmarks --only sampling_vs_ctgan).
SAMPLE_CHUNK = 4096


@dataclass(frozen=True)
class TVAEConfig:
    """Architecture and loss weights; part of the run plan, so every site builds the same network."""

    hidden: int = 256
    latent: int = 16
    kl_weight: float = 0.3
    offset_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.latent < 1:
            raise ValueError("train.hidden and train.latent must be positive integers")
        if self.kl_weight < 0 or self.offset_weight < 0:
            raise ValueError("train.kl-weight must be >= 0")


class _VAE(nn.Module):
    def __init__(self, dim: int, config: TVAEConfig) -> None:
        super().__init__()
        h, z = config.hidden, config.latent
        self.latent = z
        self.encoder = nn.Sequential(nn.Linear(dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 2 * z))
        self.decoder = nn.Sequential(nn.Linear(z, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = self.encoder(x)
        mu, logvar = stats[..., : self.latent], stats[..., self.latent :].clamp(-10.0, 10.0)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        # One tensor out, so Opacus's loss wrapper can pass it to the criterion unchanged.
        return torch.cat([self.decoder(z), mu, logvar], dim=-1)


class TVAELoss(nn.Module):
    """Per-row negative ELBO: cross-entropy per categorical block, squared error per offset, weighted KL."""

    def __init__(self, blocks: tuple[OutputBlock, ...], dim: int, config: TVAEConfig) -> None:
        super().__init__()
        self.reduction = "mean"
        self.dim, self.latent, self.config = dim, config.latent, config
        self.categorical = [b for b in blocks if b.kind == "categorical"]
        offsets = [b.start for b in blocks if b.kind == "offset"]
        self.offset_index: torch.Tensor
        self.register_buffer("offset_index", torch.tensor(offsets, dtype=torch.long), persistent=False)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if output.dim() == 3:  # units: each one's loss is the sum over its real rows
            rows = self._per_row(output.reshape(-1, output.shape[-1]), target.reshape(-1, target.shape[-1]))
            present = (target != 0).any(dim=-1)
            loss = (rows.view(present.shape) * present).sum(dim=1)
        else:
            loss = self._per_row(output, target)
        if self.reduction == "none":
            return loss
        return loss.sum() if self.reduction == "sum" else loss.mean()

    def _per_row(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        recon = output[:, : self.dim]
        mu = output[:, self.dim : self.dim + self.latent]
        logvar = output[:, self.dim + self.latent :]
        loss = torch.zeros(output.shape[0], device=output.device)
        for block in self.categorical:
            logits = recon[:, block.start : block.start + block.width]
            labels = target[:, block.start : block.start + block.width].argmax(dim=1)
            loss = loss + F.cross_entropy(logits, labels, reduction="none")
        if self.offset_index.numel():
            predicted = torch.sigmoid(recon[:, self.offset_index])
            loss = loss + self.config.offset_weight * ((predicted - target[:, self.offset_index]) ** 2).sum(dim=1)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)
        return loss + self.config.kl_weight * kl


class TVAEGenerator(TabularGenerator):
    """The DP tabular VAE behind the generator interface."""

    name = "tvae"

    def __init__(self, blocks: tuple[OutputBlock, ...], dim: int, config: TVAEConfig, *, seed: int = 0) -> None:
        self.blocks, self.dim, self.config = blocks, dim, config
        with torch.random.fork_rng(devices=[]):  # seed the weights only, not the stream training draws from
            torch.manual_seed(seed)  # identical initial weights at every site and at the server
            self._module = _VAE(dim, config)

    @property
    def module(self) -> nn.Module:
        return self._module

    def criterion(self) -> nn.Module:
        return TVAELoss(self.blocks, self.dim, self.config)

    def train_step(
        self, batch: torch.Tensor, *, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer
    ) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(model(batch), batch)
        loss.backward()
        optimizer.step()

    def sample(self, n: int, *, generator: torch.Generator) -> np.ndarray:
        return one_hot(self.sample_slots(n, generator=generator), self.blocks, self.dim)

    @torch.no_grad()
    def sample_slots(self, n: int, *, generator: torch.Generator) -> EncodedSlots:
        self._module.eval()
        device = next(self._module.parameters()).device

        def draw(rows: slice) -> EncodedSlots:
            z = torch.randn(rows.stop - rows.start, self.config.latent, generator=generator).to(device)
            return slots_from_logits(self._module.decoder(z).cpu(), self.blocks, generator=generator)

        sample = in_chunks(n, self.blocks, draw)
        self._module.train()
        return sample


def in_chunks(n: int, blocks: tuple[OutputBlock, ...], draw: Callable[[slice], EncodedSlots]) -> EncodedSlots:
    """``n`` rows drawn ``SAMPLE_CHUNK`` at a time, in order, by ``draw(rows)`` for each slice ``rows`` of them."""
    chunks = [draw(slice(start, min(start + SAMPLE_CHUNK, n))) for start in range(0, n, SAMPLE_CHUNK)]
    return EncodedSlots.concatenate(chunks, blocks)


def slots_from_logits(recon: torch.Tensor, blocks: tuple[OutputBlock, ...], *, generator: torch.Generator) -> EncodedSlots:
    """Rows in compact form from the decoder's output: a category drawn per categorical block, a sigmoid per offset.

    A category is drawn by inverting its block's cumulative softmax at one uniform per row: the same
    distribution as ``torch.multinomial``, in a few vectorised operations instead of a draw per row, which made
    sampling half the time of a synthetic table (``python -m benchmarks --only sampling_vs_ctgan``).
    """
    n = len(recon)
    categorical = [b for b in blocks if b.kind == "categorical"]
    uniforms = torch.rand(n, len(categorical), generator=generator)
    slots = torch.empty(n, len(categorical), dtype=torch.int64)
    for index, block in enumerate(categorical):
        cumulative = torch.softmax(recon[:, block.start : block.start + block.width], dim=1).cumsum_(dim=1)
        # Each row's total is 1 up to rounding: scale the uniform by it, so the last category is never skipped.
        threshold = uniforms[:, index : index + 1] * cumulative[:, -1:]
        torch.clamp((cumulative < threshold).sum(dim=1), max=block.width - 1, out=slots[:, index])
    starts = [b.start for b in blocks if b.kind != "categorical"]
    return EncodedSlots(slots.numpy(), torch.sigmoid(recon[:, starts]).numpy())
