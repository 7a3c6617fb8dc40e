"""The training plan: what the server decides before round 1 and sends to every site each round.

The plan is the typed object that crosses the wire with the weights. It carries the noise multiplier, the
clipping norm and the sample rate, so a site can check before it trains what the round will cost it, and
the ledger can be recomputed from logged parameters alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from shared.accounting import History
from shared.errors import ConfigError
from shared.secure_aggregation import SecAggConfig

if TYPE_CHECKING:  # shared.tvae imports torch, which a message that does not train never needs
    from shared.tvae import TVAEConfig

# Per-row losses are clipped to [0, LOSS_BOUND] before the noisy training-loss metric is released, which
# bounds one row's influence on the metric (its sensitivity).
LOSS_BOUND = 100.0
ROUND_RELEASE_NAMES = ("dp-sgd", "train-loss")
SITE_DP_MODES = ("off", "central", "distributed")
RECORD_NOISE_MODES = ("local", "shared")
GENERATORS = ("tvae", "gan", "ctvae")
# What each epsilon rests on, as the ledgers record it (see docs/PRIVACY.md).
TRUST_LOCAL = "local"  # the site added all the noise itself: holds against everyone
TRUST_SECAGG = "secure-aggregation"  # the rest of the noise came from other sites; the sum hid their shares
TRUST_SERVER = "server"  # the server clipped and added the noise (central site-level DP)


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
    site_dp: str = "off"
    site_clip: float = 1.0
    site_noise_multiplier: float = 0.0
    site_target_epsilon: float = 0.0
    secure_agg: bool = False
    secagg_threshold: int = 0
    record_noise: str = "local"
    shared_batch_size: int = 0
    secagg_clip_range: float = 0.0
    # Paid-for preprocessing (shared.dp_statistics): 0.0 = off; else the histograms' noise multiplier.
    preprocess_noise_multiplier: float = 0.0
    preprocess_spec_json: str = ""
    preprocess_bins: int = 0
    # Federated evaluation: 0.0 = off; else the noise multiplier of the sites' one evaluation release.
    evaluate_noise_multiplier: float = 0.0
    evaluate_holdout_fraction: float = 0.0
    evaluate_pairs: bool = False
    generator: str = "tvae"
    # The privacy unit (client.units): "" = each row is its own unit (record-level DP); else the schema's
    # identifier column whose every row at a site is protected together, at most ``max_rows_per_unit`` of them
    # used, each DP-SGD sample one unit. 0 rows for record-level plans.
    privacy_unit: str = ""
    max_rows_per_unit: int = 0

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
            (self.site_dp in SITE_DP_MODES, f"site-dp.mode must be one of {SITE_DP_MODES}"),
            (self.site_dp == "off" or (self.site_noise_multiplier > 0 and self.site_clip > 0),
             "site-level DP needs a noise multiplier and a clipping norm > 0"),
            (self.record_noise in RECORD_NOISE_MODES, f"dp.record-noise must be one of {RECORD_NOISE_MODES}"),
            (not self.secure_agg or (self.secagg_threshold >= 2 and self.secagg_clip_range > 0),
             "secure aggregation needs a threshold >= 2 and a clipping range > 0"),
            ((self.site_dp != "distributed" and self.record_noise != "shared") or self.secure_agg,
             "distributed site-level DP and shared record-level noise need secure aggregation"),
            (self.record_noise != "shared" or (self.local_steps == 1 and self.shared_batch_size >= 1),
             "shared record-level noise needs one local step per round and a public batch size"),
            (self.generator in GENERATORS, f"train.generator must be one of {GENERATORS}"),
            (self.generator != "gan" or self.record_noise != "shared",
             "the GAN cannot use shared record-level noise (its generators are not a function of the secure sum)"),
            (0 <= self.evaluate_holdout_fraction < 1, "evaluate.holdout-fraction must be in [0, 1)"),
            (self.evaluate_noise_multiplier == 0 or self.evaluate_holdout_fraction > 0,
             "federated evaluation needs a hold-out fraction > 0"),
            ((self.privacy_unit == "") == (self.max_rows_per_unit == 0),
             "a privacy unit needs dp.max-rows-per-unit >= 1 (and a record-level plan has none)"),
            (isinstance(self.max_rows_per_unit, int) and self.max_rows_per_unit >= 0,
             "dp.max-rows-per-unit must be an integer >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def per_unit(self) -> bool:
        """True when the guarantee protects a unit (all of a patient's rows at a site), not one row."""
        return self.privacy_unit != ""

    def unit_description(self) -> str:
        """What one epsilon of this plan protects, in words (manifest, report, ledger tools)."""
        if not self.per_unit:
            return "one row of a site's table"
        return unit_description(self.privacy_unit, self.max_rows_per_unit)

    def ledger_unit(self) -> dict[str, Any]:
        """The unit fields of a record-level ledger entry (none for a record-level plan, as before)."""
        if not self.per_unit:
            return {}
        return {"privacy_unit": self.privacy_unit, "max_rows_per_unit": self.max_rows_per_unit}

    @property
    def model_config(self) -> TVAEConfig:
        from shared.tvae import TVAEConfig

        return TVAEConfig(hidden=self.hidden, latent=self.latent, kl_weight=self.kl_weight)

    def round_releases(self) -> History:
        """What one round costs a site: its DP-SGD steps, then the noisy training-loss metric."""
        return [(self.noise_multiplier, self.sample_rate, self.local_steps), (self.metric_noise_multiplier, 1.0, 1)]

    def preprocess_releases(self) -> History:
        """The one-time cost of the DP histograms, charged at round 0 (empty when preprocessing is off)."""
        return [(self.preprocess_noise_multiplier, 1.0, 1)] if self.preprocess_noise_multiplier > 0 else []

    def evaluation_releases(self) -> History:
        """The one-time cost of the federated evaluation release (empty when evaluation is off)."""
        return [(self.evaluate_noise_multiplier, 1.0, 1)] if self.evaluate_noise_multiplier > 0 else []

    @property
    def evaluation_round(self) -> int:
        """The round number the ledgers give the evaluation release: after the last training round."""
        return self.rounds + 1

    def record_noise_share(self, trusts_secure_aggregation: bool) -> float:
        """The DP-SGD noise multiplier a site adds itself this round.

        With shared noise, a site that accepts secure aggregation adds sigma/sqrt(t): at least t sites must
        survive for the sum to be unmasked at all, so the sum carries noise of at least sigma. A site that
        does not accept it adds the full sigma: it never goes below its own policy.
        """
        if self.record_noise == "shared" and trusts_secure_aggregation:
            return self.noise_multiplier / self.secagg_threshold**0.5
        return self.noise_multiplier

    def site_noise_std(self) -> float:
        """Standard deviation of the site-level noise a site adds to its clipped update (distributed mode)."""
        if self.site_dp != "distributed":
            return 0.0
        return self.site_noise_multiplier * self.site_clip / self.secagg_threshold**0.5

    def site_fallback_noise_multiplier(self) -> float | None:
        """Distributed mode: the noise multiplier (relative to S) of one site's update seen alone, z/sqrt(t)."""
        if self.site_dp != "distributed":
            return None
        return self.site_noise_multiplier / self.secagg_threshold**0.5

    def site_round_release(self) -> tuple[float, float, int]:
        """What one round costs at site level: a Gaussian mechanism on the clipped sum, no sampling."""
        return (self.site_noise_multiplier, 1.0, 1)

    def secagg_config(self) -> SecAggConfig:
        """The secure-aggregation parameters every party derives from the plan alone."""
        # 32-bit quantization of [-R, R] (resolution ~R/2e9) summed mod 2^64 cannot wrap below 2^31 sites.
        return SecAggConfig(
            threshold=self.secagg_threshold, clipping_range=self.secagg_clip_range, quantization_bits=32,
            modulus_bits=64,
        )

    @property
    def site_trust(self) -> str:
        return TRUST_SERVER if self.site_dp == "central" else TRUST_SECAGG

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

    @classmethod
    def from_json(cls, text: str) -> TrainingPlan:
        """Inverse of ``to_json`` (plan.json); unknown or missing keys are a ConfigError."""
        body = json.loads(text)
        names = {f.name for f in fields(cls)}
        if not isinstance(body, dict) or set(body) - names:
            raise ConfigError(f"plan.json has keys this version does not know: {sorted(set(body) - names)}")
        body["schema_json"] = json.dumps(body.get("schema_json"))
        try:
            return cls(**body)
        except TypeError as exc:
            raise ConfigError(f"plan.json is incomplete: {exc}") from None

    def to_json(self) -> str:
        body = asdict(self)
        body["schema_json"] = json.loads(self.schema_json)
        return json.dumps(body, indent=2, sort_keys=True)


def unit_description(privacy_unit: str, max_rows_per_unit: int) -> str:
    """One unit's protection in words: all of its rows at a site, at most ``max_rows_per_unit`` of them used."""
    rows = "row" if max_rows_per_unit == 1 else "rows"
    return f"one {privacy_unit} with all of its rows at a site (at most {max_rows_per_unit} {rows} of each used)"
