"""Opacus's ghost clipping with its first backward pass pruned to what the clipping needs.

Opacus's ``DPTensorFastGradientClipping.backward`` runs two backward passes: the first only to let its hooks
compute each sample's gradient norm from the layers' activations and output gradients (the weight gradients
it also accumulates are thrown away by ``zero_grad``), the second on the loss reweighted by the clipping
coefficients. Here the first pass asks autograd only for the gradients of one *anchor* parameter per layer,
its bias where it has one: every layer's output gradient is still computed, so every norm hook fires with
exactly the values it would have had, but no weight gradient (a matmul per layer) is formed. The second pass,
the coefficients, the noise and the optimizer are Opacus's own, untouched.

The pruning is checked, not assumed: Opacus counts each trainable parameter's forwards and its hooks count
them down, so after the first pass every counter must be back at zero, or the step is refused before any
gradient exists. ``tests/unit/test_ghost_clipping.py`` compares the coefficients and the clipped gradients
with Opacus's own two passes. On Adult's default TVAE this takes a DP-SGD step from 2.3x to about 2.0x a
non-private one (``python -m benchmarks --only dp_step_overhead``).
"""

from __future__ import annotations

import torch
from opacus.grad_sample.grad_sample_module_fast_gradient_clipping import GradSampleModuleFastGradientClipping
from opacus.optimizers import DPOptimizerFastGradientClipping
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping, DPTensorFastGradientClipping
from opacus.utils.module_utils import trainable_modules

from shared.errors import LedgerError


class PrunedGhostClippingLoss(DPLossFastGradientClipping):
    """``DPLossFastGradientClipping`` whose loss runs the pruned first pass on ``backward()``."""

    def __init__(self, module: GradSampleModuleFastGradientClipping, optimizer: DPOptimizerFastGradientClipping,
                 criterion: torch.nn.Module, loss_reduction: str = "mean") -> None:
        super().__init__(module, optimizer, criterion, loss_reduction=loss_reduction)
        self.anchors = anchor_parameters(module)

    def __call__(self, *args: object, shape: object = None, **kwargs: object) -> DPTensorFastGradientClipping:
        loss = super().__call__(*args, shape=shape, **kwargs)
        return _PrunedLoss(self.module, self.optimizer, loss.loss_per_sample, self.loss_reduction, self.anchors)


class _PrunedLoss(DPTensorFastGradientClipping):
    def __init__(self, module: GradSampleModuleFastGradientClipping, optimizer: DPOptimizerFastGradientClipping,
                 loss_per_sample: torch.Tensor, loss_reduction: str, anchors: list[torch.nn.Parameter]) -> None:
        super().__init__(module, optimizer, loss_per_sample, loss_reduction)
        self.anchors = anchors

    def backward(self) -> None:  # type: ignore[override]
        if self.loss_reduction == "mean":
            reduced = torch.mean(self.loss_per_sample, dim=0)
        else:
            reduced = torch.sum(self.loss_per_sample, dim=0)
        torch.autograd.backward(reduced, inputs=self.anchors, retain_graph=True)
        unreached = [p for p in self.module.trainable_parameters if getattr(p, "_forward_counter", 0) != 0]
        if unreached:
            raise LedgerError(
                f"{len(unreached)} trainable parameter(s) got no per-sample gradient norm in the first backward "
                "pass; refusing the step (its clipping would be wrong)"
            )
        self.optimizer.zero_grad()
        coefficients = self.module.get_clipping_coef()
        second = torch.sum(coefficients.to(self.loss_per_sample.device) * self.loss_per_sample)
        self.module.disable_hooks()
        second.backward()
        self.module.enable_hooks()


class GhostClippingOptimizer(DPOptimizerFastGradientClipping):
    """Opacus's ghost-clipping optimizer without one copy of every gradient per step.

    With one backward per step, ``accumulate`` deep-copies each (already clipped) gradient into
    ``summed_grad``, which ``add_noise`` then replaces ``p.grad`` with a new tensor built from anyway; referring
    to the gradient instead of copying it gives the same sum. Accumulation over several backward passes
    (``summed_grad`` already set) is Opacus's own code.
    """

    def accumulate(self) -> None:
        for p in self.params:
            if p.summed_grad is None:
                p.summed_grad = p.grad.data
            else:
                p.summed_grad.add_(p.grad.data)


def anchor_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """One parameter per trainable layer whose gradient needs that layer's output gradient: its bias if it has
    a trainable one (a sum over the batch, cheap), else every trainable parameter of the layer."""
    anchors: list[torch.nn.Parameter] = []
    for _, layer in trainable_modules(module):
        own = [p for name, p in layer.named_parameters(recurse=False) if p.requires_grad]
        bias = [p for name, p in layer.named_parameters(recurse=False) if p.requires_grad and name == "bias"]
        anchors.extend(bias or own)
    return anchors
