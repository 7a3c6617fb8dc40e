"""Planning a run: solve the noise that spends the target epsilon exactly at the last round.

Each site pays, per round, ``local_steps`` DP-SGD steps at the public sample rate plus one noisy loss
release. The solver composes all rounds of both with Opacus's accountant and returns the smallest DP-SGD
noise multiplier whose total stays within ``tolerance`` below the target.
"""

from __future__ import annotations

import json
import uuid

from server.config import RunConfig
from shared.accounting import epsilon, solve_noise_multiplier
from shared.plan import TrainingPlan
from shared.schema import Schema


def make_plan(config: RunConfig, schema: Schema, *, run_id: str | None = None) -> TrainingPlan:
    """The plan every site receives with the weights; its epsilon at the last round equals the target."""
    rounds = config.num_rounds
    noise = solve_noise_multiplier(
        target_epsilon=config.target_epsilon,
        delta=config.delta,
        sample_rate=config.sample_rate,
        steps=rounds * config.local_steps,
        extra_history=[(config.metric_noise_multiplier, 1.0, rounds)],
        accountant=config.accountant,
    )
    return TrainingPlan(
        run_id=run_id or uuid.uuid4().hex[:12],
        rounds=rounds,
        local_steps=config.local_steps,
        sample_rate=config.sample_rate,
        noise_multiplier=noise,
        max_grad_norm=config.max_grad_norm,
        lr=config.lr,
        delta=config.delta,
        accountant=config.accountant,
        target_epsilon=config.target_epsilon,
        metric_noise_multiplier=config.metric_noise_multiplier,
        hidden=config.hidden,
        latent=config.latent,
        kl_weight=config.kl_weight,
        seed=config.seed,
        schema_json=json.dumps(schema.to_dict(), sort_keys=True),
    )


def planned_epsilon(plan: TrainingPlan, rounds: int | None = None) -> float:
    """What one site that trains in every round has spent after ``rounds`` rounds (default: all)."""
    n = plan.rounds if rounds is None else rounds
    return epsilon(plan.round_releases() * n, delta=plan.delta, accountant=plan.accountant)


def describe_plan(plan: TrainingPlan) -> str:
    """The plan as a coordinator reads it before training starts."""
    per_round = [planned_epsilon(plan, r) for r in range(1, plan.rounds + 1)]
    lines = [
        f"run {plan.run_id}: {plan.rounds} rounds x {plan.local_steps} local DP-SGD steps per site",
        f"  sample rate {plan.sample_rate:g} (Poisson), clipping norm {plan.max_grad_norm:g}, "
        f"noise multiplier {plan.noise_multiplier:.4f} (solved), loss-metric noise {plan.metric_noise_multiplier:g}",
        f"  record-level budget: epsilon {plan.target_epsilon:g} at delta {plan.delta:g} ({plan.accountant} accountant)",
        "  epsilon per site after each round: " + ", ".join(f"{e:.3f}" for e in per_round),
    ]
    return "\n".join(lines)
