"""The bundled Adult table and a training plan with the run config's defaults, for the speed benchmarks."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import torch

from shared.encoding import TableEncoder
from shared.plan import TrainingPlan
from shared.schema import load_schema
from shared.validation import read_site_table

REPO = Path(__file__).resolve().parents[1]
ADULT = REPO / "data" / "adult"
TRAIN = ADULT / "adult_train.csv"
SCHEMA = ADULT / "schema.json"


@cache
def adult_encoded() -> tuple[TableEncoder, torch.Tensor]:
    """Adult's training rows, validated and encoded with the public schema (what a site trains on)."""
    schema = load_schema(SCHEMA)
    encoder = TableEncoder.from_schema(schema)
    clean = read_site_table(TRAIN, schema).clean
    return encoder, torch.from_numpy(encoder.encode(clean))


def benchmark_plan(*, generator: str = "tvae", local_steps: int = 10) -> TrainingPlan:
    """The run config's defaults (pyproject.toml [tool.flwr.app.config]); sigma 1.0 stands in for the solved one,
    which changes the noise drawn, not the work done."""
    return TrainingPlan(
        run_id="benchmark", rounds=30, local_steps=local_steps, sample_rate=0.05, noise_multiplier=1.0,
        max_grad_norm=1.0, lr=1.0, delta=1e-5, accountant="prv", target_epsilon=3.0, metric_noise_multiplier=100.0,
        hidden=256, latent=16, kl_weight=0.3, seed=0, schema_json=json.dumps(load_schema(SCHEMA).to_dict()),
        generator=generator,
    )
