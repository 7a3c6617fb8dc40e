"""The training plan: what the server decides before round 1 and sends to every site each round.

The plan is the typed object that crosses the wire with the weights. It carries the noise multiplier, the
clipping norm and the sample rate, so a site can check before it trains what the round will cost it, and
the ledger can be recomputed from logged parameters alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from shared.accounting import History
from shared.errors import ConfigError
from shared.tvae import TVAEConfig

# Per-row losses are clipped to [0, LOSS_BOUND] before the noisy training-loss metric is released, which
# bounds one row's influence on the metric (its sensitivity).
LOSS_BOUND = 100.0
ROUND_RELEASE_NAMES = ("dp-sgd", "train-loss")


@dataclass(frozen=True)
class TrainingPlan:
    """Everything a site needs to train one round, and to account for it."""

    run_id: str
    rounds: int
    local_steps: int
    sample_rate: float
    noise_multiplier: float
    max_grad_norm: float
    lr: float
    delta: float
    accountant: str
    target_epsilon: float
    metric_noise_multiplier: float
    hidden: int
    latent: int
    kl_weight: float
    seed: int
    schema_json: str

    def __post_init__(self) -> None:
        checks = [
            (self.rounds >= 1, "num-rounds must be >= 1"),
            (self.local_steps >= 1, "train.local-steps must be >= 1"),
            (0 < self.sample_rate <= 1, "dp.sample-rate must be in (0, 1]"),
            (self.noise_multiplier > 0, "the noise multiplier must be > 0"),
            (self.max_grad_norm > 0, "dp.max-grad-norm must be > 0"),
            (self.lr > 0, "train.lr must be > 0"),
            (0 < self.delta < 1, "dp.delta must be in (0, 1)"),
            (self.metric_noise_multiplier > 0, "dp.metric-noise-multiplier must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def model_config(self) -> TVAEConfig:
        return TVAEConfig(hidden=self.hidden, latent=self.latent, kl_weight=self.kl_weight)

    def round_releases(self) -> History:
        """What one round costs a site: its DP-SGD steps, then the noisy training-loss metric."""
        return [(self.noise_multiplier, self.sample_rate, self.local_steps), (self.metric_noise_multiplier, 1.0, 1)]

    def named_round_releases(self) -> list[tuple[str, float, float, int]]:
        """``round_releases`` with the names the ledgers record them under."""
        return [(name, *release) for name, release in zip(ROUND_RELEASE_NAMES, self.round_releases(), strict=True)]

    def to_config(self) -> dict[str, Any]:
        """Flat values for a Flower ``ConfigRecord`` (keys prefixed so they cannot clash with Flower's)."""
        return {f"plan.{k}": v for k, v in asdict(self).items()}

    @classmethod
    def from_config(cls, config: Any) -> TrainingPlan:
        values = {}
        for field in fields(cls):
            key = f"plan.{field.name}"
            if key not in config:
                raise ConfigError(f"the round's configuration lacks {key!r}: server and site run different versions")
            values[field.name] = config[key]
        return cls(**values)

    def to_json(self) -> str:
        body = asdict(self)
        body["schema_json"] = json.loads(self.schema_json)
        return json.dumps(body, indent=2, sort_keys=True)
