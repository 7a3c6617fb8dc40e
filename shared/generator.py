"""The generator interface every fedsynth synthesizer implements.

A generator is trained by someone else's loop: the site's DP-SGD trainer wraps ``module`` and ``criterion``
with Opacus and calls ``train_step`` once per Poisson-sampled batch. Whatever the generator is, the trainer
therefore sees only a module, a per-row loss and a batch, which is what the privacy proof needs. Sampling and
state transfer are the generator's own business.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn


class TabularGenerator(ABC):
    """A synthesizer over a fixed encoded layout (see ``shared.encoding``)."""

    name: str

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
