"""A tabular VAE whose decoder is conditioned on the target's class (CVAE; Sohn, Lee & Yan, "Learning Structured
Output Representation using Deep Conditional Generative Models", NeurIPS 2015), for rebalancing a rare class.

Why: under DP-SGD the plain VAE's latent code carries little, so its decoder learns each column's marginal
and little of how the columns depend on the class; a fraud drawn from it looks like a legitimate row with the
fraud label. Here the class is an input of the decoder (of its first layer, and again of its output layer),
so the class-conditional distributions are learnt directly, and drawing a class on request is exact.

Privacy: the condition of a row is that row's own class, read from the row inside the per-row computation; no
frequency of any class is used. The class shares themselves (for unconditional draws) are a ``prior`` layer
trained in the same DP-SGD steps, on the same per-row loss. Only ``Linear`` layers, each used once per
forward, so Opacus's ghost clipping stays exact; batches of rows or of units (``client.units``) both work.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.encoding import OutputBlock
from shared.generator import categorical_block
from shared.slots import EncodedSlots, one_hot
from shared.tvae import TVAEConfig, TVAEGenerator, TVAELoss, in_chunks, slots_from_logits

__all__ = ["ConditionalTVAEGenerator", "ConditionalTVAELoss"]


class _Decoder(nn.Module):
    """``head([body([z, c]), c])``: the class reaches the output layer directly, not only through the latent."""

    def __init__(self, latent: int, hidden: int, dim: int, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(latent + classes, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden + classes, dim)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.body(torch.cat([z, c], dim=-1)), c], dim=-1))


class _ConditionalVAE(nn.Module):
    def __init__(self, dim: int, config: TVAEConfig, condition: OutputBlock) -> None:
        super().__init__()
        h, z, k = config.hidden, config.latent, condition.width
        self.latent, self.condition = z, condition
        self.encoder = nn.Sequential(nn.Linear(dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 2 * z))
        self.decoder = _Decoder(z, h, dim, k)
        self.prior = nn.Linear(1, k)  # the class shares, as logits of a constant input

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = self.encoder(x)
        mu, logvar = stats[..., : self.latent], stats[..., self.latent :].clamp(-10.0, 10.0)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        c = x[..., self.condition.start : self.condition.start + self.condition.width]
        prior = self.prior(x.new_ones(*x.shape[:-1], 1))
        # One tensor out (decoder output, mu, logvar, class logits), as the plain VAE's plus the class logits.
        return torch.cat([self.decoder(z, c), mu, logvar, prior], dim=-1)


class ConditionalTVAELoss(TVAELoss):
    """The VAE's per-row negative ELBO, plus the cross-entropy of the class-share logits against the row's class."""

    def __init__(self, blocks: tuple[OutputBlock, ...], dim: int, config: TVAEConfig, condition: OutputBlock) -> None:
        super().__init__(blocks, dim, config)
        self.condition = condition

    def _per_row(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k = self.condition.width
        labels = target[:, self.condition.start : self.condition.start + k].argmax(dim=1)
        return super()._per_row(output[:, :-k], target) + F.cross_entropy(output[:, -k:], labels, reduction="none")


class ConditionalTVAEGenerator(TVAEGenerator):
    """The DP tabular VAE with its decoder conditioned on the categorical column ``condition`` (the target)."""

    name = "ctvae"

    def __init__(
        self, blocks: tuple[OutputBlock, ...], dim: int, config: TVAEConfig, *, condition: str, seed: int = 0
    ) -> None:
        self.blocks, self.dim, self.config = blocks, dim, config
        self.condition = categorical_block(blocks, condition)
        with torch.random.fork_rng(devices=[]):  # seed the weights only, not the stream training draws from
            torch.manual_seed(seed)  # identical initial weights at every site and at the server
            self._net = _ConditionalVAE(dim, config, self.condition)

    @property
    def module(self) -> nn.Module:
        return self._net

    def criterion(self) -> nn.Module:
        return ConditionalTVAELoss(self.blocks, self.dim, self.config, self.condition)

    def sample(self, n: int, *, generator: torch.Generator) -> np.ndarray:
        """Draw ``n`` rows: each row's class from the learnt class shares, then the row given its class."""
        return one_hot(self.sample_slots(n, generator=generator), self.blocks, self.dim)

    def sample_conditional(self, n: int, column: str, category: int, *, generator: torch.Generator) -> np.ndarray:
        """Rows of one class of the conditioning column drawn directly given it; other columns by rejection."""
        if column != self.condition.column:
            return super().sample_conditional(n, column, category, generator=generator)
        if not 0 <= category < self.condition.width:
            raise ValueError(f"column {column!r} has category slots 0..{self.condition.width - 1}, got {category}")
        return self._draw(torch.full((n,), category, dtype=torch.long), generator)

    def _draw(self, classes: torch.Tensor, generator: torch.Generator) -> np.ndarray:
        return one_hot(self._draw_slots(classes, generator), self.blocks, self.dim)

    def sample_slots(self, n: int, *, generator: torch.Generator) -> EncodedSlots:
        device = next(self._net.parameters()).device
        with torch.no_grad():
            shares = torch.softmax(self._net.prior(torch.ones(1, 1, device=device)), dim=1).cpu()[0]
        classes = torch.multinomial(shares, n, replacement=True, generator=generator) if n else torch.zeros(0)
        return self._draw_slots(classes.long(), generator)

    @torch.no_grad()
    def _draw_slots(self, classes: torch.Tensor, generator: torch.Generator) -> EncodedSlots:
        n, block = len(classes), self.condition
        index = [b for b in self.blocks if b.kind == "categorical"].index(block)
        self._net.eval()
        device = next(self._net.parameters()).device

        def draw(rows: slice) -> EncodedSlots:
            chosen = classes[rows]
            z = torch.randn(len(chosen), self.config.latent, generator=generator).to(device)
            c = F.one_hot(chosen, block.width).float().to(device)
            drawn = slots_from_logits(self._net.decoder(z, c).cpu(), self.blocks, generator=generator)
            drawn.slots[:, index] = chosen.numpy()  # the class conditioned on
            return drawn

        sample = in_chunks(n, self.blocks, draw)
        self._net.train()
        return sample
