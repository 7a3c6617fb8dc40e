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
from shared.dp_statistics import HistogramSpec, spec_for
from shared.plan import TrainingPlan
from shared.schema import Schema


def make_plan(config: RunConfig, schema: Schema, *, run_id: str | None = None) -> TrainingPlan:
    """The plan every site receives with the weights; its epsilon at the last round equals the target."""
    rounds = config.num_rounds
    spec = spec_for(
        schema, quantile_bins=config.quantile_bins, class_frequencies=config.class_frequencies,
        grid=config.preprocess_grid,
    )
    preprocess = [(config.preprocess_noise_multiplier, 1.0, 1)] if spec.count else []
    evaluation = [(config.evaluate_noise_multiplier, 1.0, 1)] if config.evaluate_noise_multiplier > 0 else []
    noise = solve_noise_multiplier(
        target_epsilon=config.target_epsilon,
        delta=config.delta,
        sample_rate=config.sample_rate,
        steps=rounds * config.local_steps,
        extra_history=[(config.metric_noise_multiplier, 1.0, rounds), *preprocess, *evaluation],
        accountant=config.accountant,
    )
    site_noise = 0.0
    if config.site_dp != "off":
        # A site's whole update is one Gaussian release per round on the clipped sum, with no sampling
        # amplification claimed (Flower samples sites without replacement, not by Poisson).
        site_noise = solve_noise_multiplier(
            target_epsilon=config.site_target_epsilon, delta=config.delta, sample_rate=1.0, steps=rounds,
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
        site_dp=config.site_dp,
        site_clip=config.site_clip,
        site_noise_multiplier=site_noise,
        site_target_epsilon=config.site_target_epsilon if config.site_dp != "off" else 0.0,
        secure_agg=config.secure_agg,
        secagg_threshold=config.min_sites if config.secure_agg else 0,
        record_noise=config.record_noise,
        shared_batch_size=config.shared_batch_size if config.record_noise == "shared" else 0,
        secagg_clip_range=_secagg_clip_range(config, site_noise) if config.secure_agg else 0.0,
        preprocess_noise_multiplier=config.preprocess_noise_multiplier if spec.count else 0.0,
        preprocess_spec_json=spec.to_json() if spec.count else "",
        preprocess_bins=config.preprocess_bins if spec.count else 0,
        evaluate_noise_multiplier=config.evaluate_noise_multiplier,
        evaluate_holdout_fraction=config.evaluate_holdout_fraction,
        evaluate_pairs=config.evaluate_pairs,
        generator=config.generator,
        privacy_unit=schema.privacy_unit or "",
        max_rows_per_unit=config.max_rows_per_unit if schema.privacy_unit else 0,
    )


def _secagg_clip_range(config: RunConfig, site_noise: float) -> float:
    """The per-coordinate range quantized for secure aggregation.

    With distributed site-level DP an update is clipped to L2 norm S, so a coordinate is at most S plus its
    noise share; 10 standard deviations make clipping a coordinate a < 1e-20 event. Otherwise the range is
    the configured bound on a weight update's coordinates (sites log, locally, if they ever hit it).
    """
    if config.site_dp == "distributed":
        share = site_noise * config.site_clip / config.min_sites**0.5
        return config.site_clip + 10 * share
    return config.secagg_clip_range


def planned_epsilon(plan: TrainingPlan, rounds: int | None = None) -> float:
    """What one site that trains in every round has spent after ``rounds`` rounds (default: all)."""
    n = plan.rounds if rounds is None else rounds
    return epsilon(plan.preprocess_releases() + plan.round_releases() * n, delta=plan.delta, accountant=plan.accountant)


def planned_site_epsilon(plan: TrainingPlan, rounds: int | None = None) -> float:
    """Site-level epsilon after ``rounds`` rounds of DP-FedAvg (0.0 when site-level DP is off)."""
    if plan.site_dp == "off":
        return 0.0
    n = plan.rounds if rounds is None else rounds
    return epsilon([plan.site_round_release()] * n, delta=plan.delta, accountant=plan.accountant)


def describe_plan(plan: TrainingPlan) -> str:
    """The plan as a coordinator reads it before training starts."""
    per_round = [planned_epsilon(plan, r) for r in range(1, plan.rounds + 1)]
    sampled = f"{plan.privacy_unit} units" if plan.per_unit else "rows"
    lines = [
        f"run {plan.run_id}: {plan.rounds} rounds x {plan.local_steps} local DP-SGD steps per site",
        f"  sample rate {plan.sample_rate:g} (Poisson over {sampled}), clipping norm {plan.max_grad_norm:g}, "
        f"noise multiplier {plan.noise_multiplier:.4f} (solved), loss-metric noise {plan.metric_noise_multiplier:g}",
        f"  record-level budget: epsilon {plan.target_epsilon:g} at delta {plan.delta:g} ({plan.accountant} accountant)",
        "  epsilon per site after each round: " + ", ".join(f"{e:.3f}" for e in per_round),
    ]
    if plan.per_unit:
        lines[2] = (f"  per-{plan.privacy_unit} budget: epsilon {plan.target_epsilon:g} at delta {plan.delta:g} "
                    f"({plan.accountant} accountant); protects {plan.unit_description()}")
    if plan.preprocess_noise_multiplier > 0:
        spec = HistogramSpec.from_json(plan.preprocess_spec_json)
        what = [f"quantile bins for {', '.join(spec.edges)}"] if spec.edges else []
        what += [f"class frequencies of {', '.join(spec.categories)}"] if spec.categories else []
        lines.append(
            f"  preprocessing (paid, before round 1): {'; '.join(what)}; noisy histograms with noise multiplier "
            f"{plan.preprocess_noise_multiplier:g} (one release, included in the epsilons above)"
        )
    if plan.evaluate_noise_multiplier > 0:
        final = epsilon(
            plan.preprocess_releases() + plan.round_releases() * plan.rounds + plan.evaluation_releases(),
            delta=plan.delta, accountant=plan.accountant,
        )
        lines.append(
            f"  evaluation (paid, after the last round): {plan.evaluate_holdout_fraction:.0%} of each site's "
            f"{plan.privacy_unit + ' units' if plan.per_unit else 'rows'} "
            f"held out of training; one release of noisy score histograms, noise multiplier "
            f"{plan.evaluate_noise_multiplier:g}; epsilon per site with it {final:.3f}"
        )
    if plan.record_noise == "shared":
        lines.append(
            f"  record-level noise is shared: a trusting site adds sigma/sqrt({plan.secagg_threshold}) = "
            f"{plan.record_noise_share(True):.4f}; the securely summed update carries at least sigma "
            f"(a site that does not trust secure aggregation adds all of it)"
        )
    if plan.site_dp != "off":
        where = "the server adds it" if plan.site_dp == "central" else "each site adds its share, summed securely"
        lines.append(
            f"  site-level DP ({plan.site_dp}): updates clipped to {plan.site_clip:g}, noise multiplier "
            f"{plan.site_noise_multiplier:.4f} on the sum ({where}); epsilon {planned_site_epsilon(plan):.3f} "
            f"of a {plan.site_target_epsilon:g} target at delta {plan.delta:g}"
        )
    if plan.secure_agg:
        lines.append(f"  secure aggregation: a round completes only if at least {plan.secagg_threshold} sites survive")
    return "\n".join(lines)
