"""The run configuration, parsed once from Flower's ``run_config`` into a frozen, self-validating object.

Nothing else in the server indexes ``run_config`` by string. Keys and defaults are those of
``[tool.flwr.app.config]`` in pyproject.toml; nested tables arrive flattened (``dp.target-epsilon``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.console.config import ConsoleConfig
from server.strategy import ROBUST_RULES
from shared.accounting import ACCOUNTANTS
from shared.class_shares import ClassShares
from shared.errors import ConfigError
from shared.flags import parse_flag
from shared.plan import GENERATORS, RECORD_NOISE_MODES, SITE_DP_MODES
from shared.schema import Schema, load_schema


@dataclass(frozen=True)
class RunConfig:
    """What the coordinator chose for this run. Users set the budget; the noise is derived from it."""

    out_dir: Path
    schema_path: Path
    num_rounds: int
    min_sites: int
    seed: int
    synthetic_rows: int
    signing_key: Path
    target_epsilon: float
    delta: float
    accountant: str
    sample_rate: float
    max_grad_norm: float
    metric_noise_multiplier: float
    local_steps: int
    lr: float
    server_lr: float
    hidden: int
    latent: int
    kl_weight: float
    site_dp: str = "off"
    site_target_epsilon: float = 10.0
    site_clip: float = 1.0
    secure_agg: bool = False
    record_noise: str = "local"
    shared_batch_size: int = 256
    # With a schema that names a privacy unit (a patient): how many of a unit's rows a site uses at most.
    max_rows_per_unit: int = 1
    secagg_clip_range: float = 10.0
    quantile_bins: bool = False
    class_frequencies: bool = False
    preprocess_noise_multiplier: float = 30.0
    preprocess_grid: int = 128
    preprocess_bins: int = 16
    # Federated evaluation (shared.dp_evaluation): 0 = off; else the noise multiplier of the release.
    evaluate_noise_multiplier: float = 10.0
    evaluate_holdout_fraction: float = 0.2
    evaluate_pairs: bool = False
    generator: str = "tvae"
    # A central reference table (training part, hold-out part) for the report; only for public data.
    reference: tuple[Path, Path] | None = None
    # Seconds a round waits for the sites' replies; a site silent that long is dropped from the round.
    round_timeout: float = 3600.0
    # Robust aggregation (server.strategy.robust_rule) and a bound on any one update's L2 norm (0 = none).
    aggregate_rule: str = "mean"
    aggregate_trim_beta: float = 0.2
    aggregate_byzantine: int = 1
    max_update_norm: float = 0.0
    # Continue the run whose plan, ledger and checkpoint are in out_dir (server.resume), instead of refusing.
    resume: bool = False
    # The live console (server.console); None = none.
    console: ConsoleConfig | None = None
    # The target's class shares in the synthetic table (server.sampling), e.g. fraud oversampled; None = as learnt.
    class_shares: ClassShares | None = None

    def __post_init__(self) -> None:
        rules: list[tuple[bool, str, object]] = [
            (self.num_rounds >= 1, "num-rounds must be >= 1", self.num_rounds),
            (self.min_sites >= 1, "min-sites must be >= 1", self.min_sites),
            (self.synthetic_rows >= 1, "synthetic-rows must be >= 1", self.synthetic_rows),
            (self.target_epsilon > 0, "dp.target-epsilon must be > 0", self.target_epsilon),
            (0 < self.delta < 1, "dp.delta must be in (0, 1)", self.delta),
            (self.accountant in ACCOUNTANTS, f"dp.accountant must be one of {ACCOUNTANTS}", self.accountant),
            (0 < self.sample_rate <= 1, "dp.sample-rate must be in (0, 1]", self.sample_rate),
            (self.max_grad_norm > 0, "dp.max-grad-norm must be > 0", self.max_grad_norm),
            (self.metric_noise_multiplier > 0, "dp.metric-noise-multiplier must be > 0", self.metric_noise_multiplier),
            (self.local_steps >= 1, "train.local-steps must be >= 1", self.local_steps),
            (self.lr > 0, "train.lr must be > 0", self.lr),
            (self.server_lr > 0, "train.server-lr must be > 0", self.server_lr),
            (self.hidden >= 1 and self.latent >= 1, "train.hidden and train.latent must be >= 1", self.hidden),
            (self.kl_weight >= 0, "train.kl-weight must be >= 0", self.kl_weight),
            (self.site_dp in SITE_DP_MODES, f"site-dp.mode must be one of {SITE_DP_MODES}", self.site_dp),
            (self.site_target_epsilon > 0, "site-dp.target-epsilon must be > 0", self.site_target_epsilon),
            (self.site_clip > 0, "site-dp.clip must be > 0", self.site_clip),
            (self.record_noise in RECORD_NOISE_MODES, f"dp.record-noise must be one of {RECORD_NOISE_MODES}",
             self.record_noise),
            (self.shared_batch_size >= 1, "dp.shared-batch-size must be >= 1", self.shared_batch_size),
            (self.max_rows_per_unit >= 1, "dp.max-rows-per-unit must be >= 1", self.max_rows_per_unit),
            (self.secagg_clip_range > 0, "secure-agg.clip-range must be > 0", self.secagg_clip_range),
            (self.preprocess_noise_multiplier > 0, "preprocess.noise-multiplier must be > 0",
             self.preprocess_noise_multiplier),
            (self.preprocess_grid >= 2, "preprocess.grid must be >= 2", self.preprocess_grid),
            (self.preprocess_bins >= 2, "preprocess.bins must be >= 2", self.preprocess_bins),
            (self.evaluate_noise_multiplier >= 0, "evaluate.noise-multiplier must be >= 0 (0 = no evaluation)",
             self.evaluate_noise_multiplier),
            (0 <= self.evaluate_holdout_fraction < 1, "evaluate.holdout-fraction must be in [0, 1)",
             self.evaluate_holdout_fraction),
            (self.evaluate_noise_multiplier == 0 or self.evaluate_holdout_fraction > 0,
             "evaluate.noise-multiplier > 0 needs a hold-out: set evaluate.holdout-fraction > 0",
             self.evaluate_holdout_fraction),
            (self.generator in GENERATORS, f"train.generator must be one of {GENERATORS}", self.generator),
            (self.round_timeout > 0, "round-timeout must be > 0 seconds", self.round_timeout),
            (self.aggregate_rule in ROBUST_RULES, f"aggregate.rule must be one of {ROBUST_RULES}", self.aggregate_rule),
            (0 <= self.aggregate_trim_beta < 0.5, "aggregate.trim-beta must be in [0, 0.5)", self.aggregate_trim_beta),
            (self.aggregate_byzantine >= 0, "aggregate.byzantine must be >= 0", self.aggregate_byzantine),
            (self.max_update_norm >= 0, "aggregate.max-update-norm must be >= 0 (0 = no bound)", self.max_update_norm),
        ]
        for ok, message, value in rules:
            if not ok:
                raise ConfigError(f"{message}, got {value!r}")
        needs_secagg = self.site_dp == "distributed" or self.record_noise == "shared"
        if needs_secagg and not self.secure_agg:
            raise ConfigError(
                "site-dp.mode='distributed' and dp.record-noise='shared' rely on secure aggregation to hide each "
                "site's partly-noised update from the server: set secure-agg=true"
            )
        if self.site_dp == "central" and self.secure_agg:
            raise ConfigError(
                "site-dp.mode='central' adds the noise at the server, which under secure-agg sees only the sum and "
                "cannot clip each update: use site-dp.mode='distributed' with secure-agg"
            )
        if self.generator == "gan" and self.record_noise == "shared":
            raise ConfigError(
                "train.generator='gan' cannot use dp.record-noise='shared': each site's discriminator is then only "
                "partly noised and the sites' generators, trained against it, are not a function of the secure "
                "sum; use dp.record-noise='local' with the GAN"
            )
        if self.site_dp == "distributed" and self.record_noise == "shared":
            raise ConfigError(
                "dp.record-noise='shared' cannot be combined with site-dp.mode='distributed': clipping a partly "
                "noised update at the site breaks the Gaussian sum the shared record-level guarantee rests on"
            )
        if self.aggregate_rule != "mean" and (self.secure_agg or self.site_dp == "central"):
            raise ConfigError(
                f"aggregate.rule={self.aggregate_rule!r} needs each site's update: under secure-agg the server sees "
                "only their sum, and central site-level DP's noise is calibrated to the mean; use aggregate.rule='mean'"
            )
        if self.secure_agg and self.min_sites < 2:
            raise ConfigError("secure-agg needs min-sites >= 2: a sum over one site is that site's update")
        if self.record_noise == "shared" and self.local_steps != 1:
            raise ConfigError(
                f"dp.record-noise='shared' needs train.local-steps=1, got {self.local_steps}: with more local steps "
                "a site's later gradients depend on its own, less-noised earlier steps, and the securely summed "
                "update is no longer a central DP-SGD step (raise dp.sample-rate or num-rounds instead)"
            )
        if not self.schema_path.is_file():
            raise ConfigError(f"schema-path: no schema file at {self.schema_path}; pass --run-config 'schema-path=\"...\"'")
        if self.class_shares is not None or self.generator == "ctvae":  # before training, not after
            self._check_target(load_schema(self.schema_path))

    def _check_target(self, schema: Schema) -> None:
        """The requested class shares must name the target's classes; the conditional VAE needs such a target."""
        if self.class_shares is not None:
            self.class_shares.check(schema)
        target = schema.column(schema.target) if schema.target is not None else None
        if self.generator == "ctvae" and (target is None or target.type != "categorical"):
            raise ConfigError(
                f"train.generator='ctvae' conditions its decoder on the target's class, and schema {schema.name!r} "
                "has no categorical target; set \"target\" in the schema or use train.generator='tvae'"
            )

    @classmethod
    def from_run_config(cls, rc: dict[str, Any]) -> RunConfig:
        out_dir = Path(str(_get(rc, "out-dir", "")) or "fedsynth-run").expanduser().resolve()
        key = str(_get(rc, "signing-key", "")) or str(Path.home() / ".fedsynth" / "keys" / "server-ed25519.pem")
        return cls(
            out_dir=out_dir,
            schema_path=Path(str(_get(rc, "schema-path", "")) or "data/adult/schema.json").expanduser().resolve(),
            num_rounds=int(_get(rc, "num-rounds", 30)),
            min_sites=int(_get(rc, "min-sites", 2)),
            seed=int(_get(rc, "seed", 0)),
            synthetic_rows=int(_get(rc, "synthetic-rows", 0)) or 10_000,
            signing_key=Path(key).expanduser().resolve(),
            target_epsilon=float(_get(rc, "dp.target-epsilon", 3.0)),
            delta=float(_get(rc, "dp.delta", 1e-5)),
            accountant=str(_get(rc, "dp.accountant", "prv")),
            sample_rate=float(_get(rc, "dp.sample-rate", 0.05)),
            max_grad_norm=float(_get(rc, "dp.max-grad-norm", 1.0)),
            metric_noise_multiplier=float(_get(rc, "dp.metric-noise-multiplier", 100.0)),
            local_steps=int(_get(rc, "train.local-steps", 10)),
            lr=float(_get(rc, "train.lr", 1.0)),
            server_lr=float(_get(rc, "train.server-lr", 0.03)),
            hidden=int(_get(rc, "train.hidden", 256)),
            latent=int(_get(rc, "train.latent", 16)),
            kl_weight=float(_get(rc, "train.kl-weight", 0.3)),
            site_dp=str(_get(rc, "site-dp.mode", "off")),
            site_target_epsilon=float(_get(rc, "site-dp.target-epsilon", 10.0)),
            site_clip=float(_get(rc, "site-dp.clip", 1.0)),
            secure_agg=_flag(rc, "secure-agg"),
            record_noise=str(_get(rc, "dp.record-noise", "local")),
            shared_batch_size=int(_get(rc, "dp.shared-batch-size", 256)),
            max_rows_per_unit=int(_get(rc, "dp.max-rows-per-unit", 1)),
            secagg_clip_range=float(_get(rc, "secure-agg.clip-range", 10.0)),
            quantile_bins=_flag(rc, "preprocess.quantile-bins"),
            class_frequencies=_flag(rc, "preprocess.class-frequencies"),
            preprocess_noise_multiplier=float(_get(rc, "preprocess.noise-multiplier", 30.0)),
            preprocess_grid=int(_get(rc, "preprocess.grid", 128)),
            preprocess_bins=int(_get(rc, "preprocess.bins", 16)),
            evaluate_noise_multiplier=float(_get(rc, "evaluate.noise-multiplier", 10.0)),
            evaluate_holdout_fraction=float(_get(rc, "evaluate.holdout-fraction", 0.2)),
            evaluate_pairs=_flag(rc, "evaluate.pairs"),
            generator=str(_get(rc, "train.generator", "tvae")),
            reference=_reference(rc),
            round_timeout=float(_get(rc, "round-timeout", 3600.0)),
            aggregate_rule=str(_get(rc, "aggregate.rule", "mean")),
            aggregate_trim_beta=float(_get(rc, "aggregate.trim-beta", 0.2)),
            aggregate_byzantine=int(_get(rc, "aggregate.byzantine", 1)),
            max_update_norm=float(_get(rc, "aggregate.max-update-norm", 0.0)),
            resume=_flag(rc, "resume"),
            console=ConsoleConfig.from_run_config(rc),
            class_shares=ClassShares.parse(_get(rc, "sample.class-shares", ""), key="sample.class-shares"),
        )


def _reference(rc: dict[str, Any]) -> tuple[Path, Path] | None:
    train, holdout = str(_get(rc, "report.reference-train", "")), str(_get(rc, "report.reference-holdout", ""))
    if not train and not holdout:
        return None
    if not (train and holdout):
        raise ConfigError("report.reference-train and report.reference-holdout go together: set both or neither")
    paths = (Path(train).expanduser().resolve(), Path(holdout).expanduser().resolve())
    for path in paths:
        if not path.is_file():
            raise ConfigError(f"report reference table {path} does not exist")
    return paths


def _get(rc: dict[str, Any], key: str, default: Any) -> Any:
    value = rc.get(key, default)
    if isinstance(value, (dict, list)):
        raise ConfigError(f"run config {key!r} must be a single value")
    return value


def _flag(rc: dict[str, Any], key: str) -> bool:
    return parse_flag(_get(rc, key, False), f"run config {key!r}")
