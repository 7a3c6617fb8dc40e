"""The generator interface every fedsynth synthesizer implements.

A generator is trained by someone else's loop: the site's DP-SGD trainer wraps ``module`` and ``criterion``
with Opacus and calls ``train_step`` once per Poisson-sampled batch. Whatever the generator is, the trainer
therefore sees only a module, a per-row loss and a batch, which is what the privacy proof needs. Sampling and
state transfer are the generator's own business.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

from shared.encoding import OutputBlock
from shared.slots import EncodedSlots, slots_of

_MAX_DRAWS_PER_ROW = 200  # rejection sampling gives up when fewer than 1 draw in this many has the class
_MIN_DRAWS = 10_000
_CHUNK = 16_384  # rows drawn at a time (bounds memory for wide layouts)


class TabularGenerator(ABC):
    """A synthesizer over a fixed encoded layout (see ``shared.encoding``)."""

    name: str
    blocks: tuple[OutputBlock, ...]  # the encoder's layout the generator was built for
    dim: int

    @property
    @abstractmethod
    def module(self) -> nn.Module:
        """The trainable network; the only thing DP-SGD updates."""

    @abstractmethod
    def criterion(self) -> nn.Module:
        """A loss ``criterion(output, batch)`` honouring ``.reduction`` ("none" gives one value per row)."""

    @abstractmethod
    def train_step(
        self, batch: torch.Tensor, *, model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer
    ) -> None:
        """One optimizer step on ``batch`` through the (possibly DP-wrapped) ``model`` and ``criterion``."""

    def after_empty_batch(self) -> None:
        """Called when a Poisson batch was empty and the DP step was pure noise.

        A generator with steps of its own beside the DP step (the GAN) takes them here too, so that how many
        of them it took cannot reveal how many batches were empty.
        """

    @abstractmethod
    def sample(self, n: int, *, generator: torch.Generator) -> np.ndarray:
        """Draw ``n`` encoded rows (float32, the encoder's layout)."""

    def sample_slots(self, n: int, *, generator: torch.Generator) -> EncodedSlots:
        """The same draw as ``sample`` in compact form (``shared.slots``), which is what a table is decoded from.

        A generator that makes its categories one at a time overrides this to skip the one-hot table.
        """
        return slots_of(self.sample(n, generator=generator), self.blocks)

    def sample_conditional(self, n: int, column: str, category: int, *, generator: torch.Generator) -> np.ndarray:
        """Draw ``n`` encoded rows whose categorical ``column`` is the category in slot ``category``.

        Post-processing of the trained model, so free: how a class is oversampled without copying any row. The
        default conditions by rejection (draw from the model, keep the rows of that category), which is exactly
        the model's conditional distribution; one with a condition input (the GAN, ``ctvae``) overrides it. A
        ValueError says when the model makes the category in fewer than one draw in ``_MAX_DRAWS_PER_ROW``.
        """
        block = categorical_block(self.blocks, column)
        if not 0 <= category < block.width:
            raise ValueError(f"column {column!r} has category slots 0..{block.width - 1}, got {category}")
        return draw_until(n, lambda k: self.sample(k, generator=generator), block.start + category,
                          dim=self.dim, what=f"{column!r} slot {category}")

    def per_row_loss(self, data: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """The training loss of each row of ``data`` (shape (N,)), without gradients, for the noisy loss metric.

        Each value must depend on its own row only (and on randomness), so that the trainer's clipped sum has
        sensitivity one loss bound. The default runs ``criterion`` on ``module(data)``; a generator whose module
        does not take rows as they are (a GAN's discriminator takes pairs) overrides it. ``generator`` is a CPU
        random stream; ``data`` may live on another device.
        """
        del generator  # unused: the module keeps drawing from its own source, as the trainer always had it
        criterion = self.criterion().to(data.device)
        setattr(criterion, "reduction", "none")  # noqa: B010 - per-row losses, as Opacus's loss wrapper does
        with torch.no_grad():
            losses: torch.Tensor = criterion(self.module(data), data)
        return losses

    @property
    def weights(self) -> nn.Module:
        """Everything the federation averages; the DP-trained module unless a generator has more (the GAN)."""
        return self.module

    def state_dict(self) -> dict[str, torch.Tensor]:
        """CPU copies of the parameters, safe to serialise."""
        return {k: v.detach().cpu().clone() for k, v in self.weights.state_dict().items()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor | np.ndarray]) -> None:
        """Load parameters, refusing a state whose names or shapes do not match this architecture."""
        own = self.weights.state_dict()
        if set(state) != set(own):
            missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
            raise ValueError(f"generator state does not match the architecture: missing {missing}, unexpected {extra}")
        tensors = {}
        for key, value in state.items():
            tensor = torch.as_tensor(np.asarray(value)) if isinstance(value, np.ndarray) else value
            if tuple(tensor.shape) != tuple(own[key].shape):
                raise ValueError(
                    f"generator parameter {key!r} has shape {tuple(tensor.shape)}, expected {tuple(own[key].shape)}"
                )
            if not torch.isfinite(tensor).all():
                raise ValueError(f"generator parameter {key!r} contains non-finite values")
            tensors[key] = tensor.to(own[key].dtype)
        self.weights.load_state_dict(tensors)


def draw_until(n: int, draw: Callable[[int], np.ndarray], slot: int, *, dim: int, what: str) -> np.ndarray:
    """Rejection sampling: ``draw(k)`` rows in chunks and keep those whose one-hot ``slot`` is set, until ``n``.

    Gives up with a ValueError after ``max(_MAX_DRAWS_PER_ROW * n, _MIN_DRAWS)`` draws.
    """
    kept, have, made = [np.zeros((0, dim), dtype=np.float32)], 0, 0
    budget = max(_MAX_DRAWS_PER_ROW * n, _MIN_DRAWS)
    while have < n and made < budget:
        draws = min(_CHUNK, budget - made, max(4 * (n - have), 1024))
        rows = np.asarray(draw(draws))
        made += draws
        hits = rows[rows[:, slot] == 1.0][: n - have]
        kept.append(hits)
        have += len(hits)
    if have < n:
        raise ValueError(
            f"the generator gave {what} in only {have} of {made} draws; train it longer, or ask for a smaller "
            "share of that class"
        )
    return np.concatenate(kept).astype(np.float32)


def categorical_block(blocks: tuple[OutputBlock, ...], column: str) -> OutputBlock:
    """The one-hot block of a categorical column (a number's bin block is not a class)."""
    numeric = {b.column for b in blocks if b.kind == "offset"}
    found = next((b for b in blocks if b.column == column and b.kind == "categorical"), None)
    if found is None or column in numeric:
        names = [b.column for b in blocks if b.kind == "categorical" and b.column not in numeric]
        raise ValueError(f"cannot condition on {column!r}: the categorical columns are {names}")
    return found


def state_hash(state: Mapping[str, torch.Tensor | np.ndarray]) -> str:
    """sha256 over parameter names, shapes and float32 bytes, independent of device and dict order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        array = np.ascontiguousarray(array, dtype=np.float32)
        digest.update(key.encode())
        digest.update(repr(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
