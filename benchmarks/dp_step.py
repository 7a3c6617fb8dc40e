"""DP-SGD step time against a non-private step: same generator, same batch, same loss, same device.

The private step runs through exactly the parts a site trains with (``client.trainer.private_parts``: Opacus's
ghost-clipping module, DP optimizer and DP loss, with noise); the non-private step is the bare module with
plain SGD. Both run the generator's own ``train_step`` on the same fixed batch of encoded Adult rows, after a
warm-up, alternating blocks of steps so that a slow spell of a shared machine hits both alike; the figure is
the ratio of the medians.

    .venv/bin/python -m benchmarks --only dp_step_overhead
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass

import torch

from benchmarks.adult import adult_encoded, benchmark_plan
from client.trainer import private_parts
from shared.synthesizers import build_generator


@dataclass(frozen=True)
class StepTimes:
    generator: str
    batch: int
    device: str
    private_ms: float
    plain_ms: float

    @property
    def ratio(self) -> float:
        return self.private_ms / self.plain_ms


def measure(*, generator_name: str = "tvae", batch: int = 256, blocks: int = 7, steps_per_block: int = 20,
            device: torch.device | None = None) -> StepTimes:
    device = device or torch.device("cpu")
    encoder, data = adult_encoded()
    plan = benchmark_plan(generator=generator_name)
    rows = data[torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(0))[:batch]].to(device)

    plain_generator = build_generator(plan, encoder)
    plain_module = plain_generator.module.to(device)
    plain_optimizer = torch.optim.SGD(plain_module.parameters(), lr=plan.lr)
    plain_criterion = plain_generator.criterion().to(device)

    private_generator = build_generator(plan, encoder)
    parts = private_parts(private_generator, plan, noise_multiplier=plan.noise_multiplier, expected_batch=batch,
                          rng=torch.Generator().manual_seed(1), device=device)
    warnings.filterwarnings("ignore", message="Full backward hook is firing")

    def plain() -> None:
        plain_generator.train_step(rows, model=plain_module, criterion=plain_criterion, optimizer=plain_optimizer)

    def private() -> None:
        private_generator.train_step(rows, model=parts.module, criterion=parts.criterion, optimizer=parts.optimizer)

    def block(step: object) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        for _ in range(steps_per_block):
            step()  # type: ignore[operator]
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - began) / steps_per_block * 1000.0

    block(plain), block(private)  # warm-up: allocator, autograd graph, Opacus hooks
    plain_ms, private_ms = [], []
    for _ in range(blocks):
        plain_ms.append(block(plain))
        private_ms.append(block(private))
    parts.module._close()
    return StepTimes(generator_name, batch, device.type, statistics.median(private_ms), statistics.median(plain_ms))
