"""`fedsynth demo`: a whole federation on one machine, over the same ServerApp and ClientApp as `flwr run`.

The demo plays the part no real deployment has: it holds the table and deals it out to simulated sites
(IID, or non-IID by a column so that sites really differ), then runs the app on Flower's simulation engine
and checks the signed outputs. Everything after the split is the production path.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path


from server.split import deal_rows
from server.local_federation import local_superlink, run_app
from shared.class_shares import ClassShares
from shared.errors import ConfigError, FedsynthError
from shared.manifest import verify_output
from shared.schema import load_schema

APP_DIR = Path(__file__).resolve().parent.parent
BUNDLED_DATA = APP_DIR / "data" / "adult" / "adult_train.csv"
BUNDLED_SCHEMA = APP_DIR / "data" / "adult" / "schema.json"
BUNDLED_HOLDOUT = APP_DIR / "data" / "adult" / "adult_test.csv"  # public: the demo's report may use it centrally
_OUTPUTS = ("synthetic.csv", "synthetic.parquet", "ledger.json", "plan.json", "manifest.json", "manifest.json.sig",
            "report.json", "report.html")
_REMOVED = (*_OUTPUTS, "evaluation.json", "rounds.json")


@dataclass(frozen=True)
class GeneratorProfile:
    """Settings each generator was measured with on Adult (the run config's defaults are the VAE's)."""

    rounds: int
    local_steps: int
    lr: float
    server_lr: float


GENERATOR_PROFILES = {
    "tvae": GeneratorProfile(rounds=30, local_steps=10, lr=1.0, server_lr=0.03),
    # A GAN needs many more discriminator steps, and a gentler server step: at the VAE's settings the
    # averaged generators collapsed onto a few modes (mean TVD 0.72 against 0.19 at these).
    "gan": GeneratorProfile(rounds=60, local_steps=20, lr=0.5, server_lr=0.01),
    # The conditional VAE trains as the VAE does (bank tables: examples/bank-fraud).
    "ctvae": GeneratorProfile(rounds=30, local_steps=10, lr=1.0, server_lr=0.03),
}


@dataclass(frozen=True)
class DemoOptions:
    """The demo's command-line options, validated."""

    out: Path
    sites: int
    rounds: int
    epsilon: float
    delta: float
    split: str
    seed: int
    rows: int | None
    data: Path
    schema: Path
    split_by: str | None
    local_steps: int | None
    force: bool
    site_dp: bool = False
    secure_agg: bool = False
    shared_noise: bool = False
    site_epsilon: float = 10.0
    site_clip: float = 1.0
    dp_bins: bool = False
    class_frequencies: bool = False
    generator: str = "tvae"
    eval_noise: float = 10.0
    eval_pairs: bool = False
    # With a schema that names a privacy unit (a patient): at most this many of a unit's rows per site.
    max_rows_per_unit: int = 1
    # Serve the live console on this address (TLS, a fresh CA and admin token under OUT/console).
    console: str | None = None
    # The target's class shares in the synthetic table (run config sample.class-shares), e.g. fraud at 50%.
    oversample: ClassShares | None = None
    # dp.sample-rate and train.hidden (None: the run config's defaults). A small table learns more with a
    # smaller network (less noise in all) and a larger sample rate (a larger batch to average the noise over).
    sample_rate: float | None = None
    hidden: int | None = None

    def __post_init__(self) -> None:
        if self.sites < 1:
            raise ConfigError(f"--sites must be >= 1, got {self.sites}")
        if self.secure_agg and self.sites < 2:
            raise ConfigError("--secure-agg needs --sites 2 or more: a sum over one site is that site's update")
        if self.generator == "gan" and self.shared_noise:
            raise ConfigError(
                "--generator gan cannot use --shared-noise: each site's generator trains against a partly noised "
                "discriminator, and only the secure sum is private; drop --shared-noise"
            )
        if self.eval_noise < 0:
            raise ConfigError(f"--eval-noise must be >= 0 (0 = no federated evaluation), got {self.eval_noise}")
        if self.rounds < 1:
            raise ConfigError(f"--rounds must be >= 1, got {self.rounds}")
        if self.sample_rate is not None and not 0 < self.sample_rate <= 1:
            raise ConfigError(f"--sample-rate must be in (0, 1], got {self.sample_rate}")
        if self.hidden is not None and self.hidden < 1:
            raise ConfigError(f"--hidden must be >= 1, got {self.hidden}")
        if self.max_rows_per_unit < 1:
            raise ConfigError(f"--max-rows-per-unit must be >= 1, got {self.max_rows_per_unit}")
        if self.split not in ("iid", "non-iid"):
            raise ConfigError(f"--split must be 'iid' or 'non-iid', got {self.split!r}")
        if self.shared_noise and not self.secure_agg:
            raise ConfigError("--shared-noise needs --secure-agg: the partly-noised updates must be hidden in a sum")
        if self.shared_noise and self.site_dp:
            raise ConfigError(
                "--shared-noise cannot be combined with --site-dp: clipping a partly noised update at the site "
                "breaks the Gaussian sum the shared record-level guarantee rests on"
            )
        for path, flag in ((self.data, "--data"), (self.schema, "--schema")):
            if not path.is_file():
                raise ConfigError(f"{flag}: no file at {path}")
        if self.oversample is not None or self.generator == "ctvae":  # refuse now, not after training
            self._check_target()

    def _check_target(self) -> None:
        schema = load_schema(self.schema)
        if self.oversample is not None:
            self.oversample.check(schema)
        target = schema.column(schema.target) if schema.target is not None else None
        if self.generator == "ctvae" and (target is None or target.type != "categorical"):
            raise ConfigError(f"--generator ctvae conditions on the target's class; {self.schema} names no "
                              "categorical target")


def run_demo(options: DemoOptions) -> int:
    """Split, run, verify, summarise. Returns the process exit code."""
    start = time.monotonic()
    out = options.out.resolve()
    _prepare_out(out, options.force)
    sites_dir = out / "sites"
    rows = split_table(options, sites_dir)
    print(f"fedsynth demo: {sum(rows)} rows dealt to {options.sites} simulated sites ({options.split}): {rows}")
    run_config = demo_run_config(options, out, sites_dir, synthetic_rows=options.rows or sum(rows))
    if options.console:
        run_config.update(_console_setup(out / "console", options.console))
    with local_superlink(out / ".flower") as env:
        run_app(APP_DIR, num_sites=options.sites, run_config=run_config, env=env)
    missing = [name for name in _OUTPUTS if not (out / name).is_file()]
    if missing:
        print(f"fedsynth demo: the run failed, {missing} were not written; see the log above "
              f"and {out / '.flower' / 'superlink.log'}")
        return 1
    report = verify_output(out)
    _print_summary(out, time.monotonic() - start, report.fingerprint)
    return 0


def _console_setup(directory: Path, address: str) -> dict[str, object]:
    """Certificates and an admin token for the demo's live console; prints how to watch it."""
    from server.certs import make_consortium_certs
    from server.console.tokens import add_token
    from shared.console.transport import split_address

    host, _ = split_address(address)
    make_consortium_certs(directory / "pki", sorted({host.strip("[]"), "localhost", "127.0.0.1"}))
    token_file = directory / "admin.token"
    token_file.write_text(add_token(directory / "tokens.json", "demo-admin", "admin") + "\n")
    token_file.chmod(0o600)
    print("fedsynth demo: watch it live in another terminal with\n"
          f"  fedsynth console --address {address} --tls-ca {directory / 'pki' / 'ca.crt'} --token-file {token_file}")
    return {"console.address": address, "console.tokens": str(directory / "tokens.json"),
            "console.tls-cert": str(directory / "pki" / "server.crt"),
            "console.tls-key": str(directory / "pki" / "server.key")}


def demo_run_config(options: DemoOptions, out: Path, sites_dir: Path, *, synthetic_rows: int) -> dict[str, object]:
    """The run config `flwr run` gets for these options (the audit runs its federations with it too)."""
    run_config: dict[str, object] = {
        "out-dir": str(out), "sites-dir": str(sites_dir), "schema-path": str(options.schema.resolve()),
        "num-rounds": options.rounds, "min-sites": options.sites, "seed": options.seed,
        "synthetic-rows": synthetic_rows, "dp.target-epsilon": options.epsilon,
        "dp.delta": options.delta, "simulation.site-epsilon-cap": options.epsilon,
    }
    profile = GENERATOR_PROFILES[options.generator]
    run_config.update({"train.local-steps": options.local_steps or profile.local_steps, "train.lr": profile.lr,
                       "train.server-lr": profile.server_lr, "train.generator": options.generator})
    if options.sample_rate is not None:
        run_config["dp.sample-rate"] = options.sample_rate
    if options.hidden is not None:
        run_config["train.hidden"] = options.hidden
    run_config["evaluate.noise-multiplier"] = options.eval_noise
    run_config["evaluate.pairs"] = options.eval_pairs
    run_config["dp.max-rows-per-unit"] = options.max_rows_per_unit
    if options.data.resolve() == BUNDLED_DATA and BUNDLED_HOLDOUT.is_file():
        # Adult is public, so the demo's report can also score the table centrally (a real run cannot).
        run_config["report.reference-train"] = str(BUNDLED_DATA)
        run_config["report.reference-holdout"] = str(BUNDLED_HOLDOUT)
    run_config.update(_privacy_options(options))
    return run_config


def _privacy_options(options: DemoOptions) -> dict[str, object]:
    """Run-config keys for site-level DP, secure aggregation and shared record-level noise."""
    extra: dict[str, object] = {}
    if options.secure_agg:
        # SecAgg's threshold (min-sites) must be a majority; a round then survives any minority dropping out.
        extra.update({"secure-agg": True, "min-sites": options.sites // 2 + 1})
    if options.site_dp:
        extra.update({
            "site-dp.mode": "distributed" if options.secure_agg else "central",
            "site-dp.target-epsilon": options.site_epsilon, "site-dp.clip": options.site_clip,
        })
    if options.dp_bins:
        extra["preprocess.quantile-bins"] = True
    if options.class_frequencies:
        extra["preprocess.class-frequencies"] = True
    if options.oversample is not None:
        extra["sample.class-shares"] = options.oversample.to_text()
    if options.shared_noise:
        extra.update({"dp.record-noise": "shared", "train.local-steps": 1, "simulation.trust-secure-aggregation": True})
    return extra


def _prepare_out(out: Path, force: bool) -> None:
    if (out / "manifest.json").exists() or (out / "sites").exists():
        if not force:
            raise FedsynthError(f"{out} already holds a run; pass another --out, or --force to replace it")
        for name in (*_REMOVED, "sites", "checkpoint", ".flower", "console"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def split_table(options: DemoOptions, sites_dir: Path) -> list[int]:
    """Deal the demo's table to site-N.csv files (server.split)."""
    return deal_rows(options.data, options.schema, options.sites, sites_dir, split=options.split, seed=options.seed,
                     split_by=options.split_by)


def _print_summary(out: Path, seconds: float, fingerprint: str) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    record = manifest["privacy"]["record"]
    print("\nfedsynth demo finished in %.0f s" % seconds)
    print(f"  rounds: {manifest['rounds']} of {manifest['rounds_planned']}; sites: {', '.join(manifest['sites'])}")
    level = f"per-{record['privacy_unit']}" if record.get("privacy_unit") else "record-level"
    print(f"  {level} epsilon spent per site (target {record['target_epsilon']:g}, delta {record['delta']:g}, "
          f"{record['accountant']}):")
    if record.get("privacy_unit"):
        print(f"    each protects {record['unit']}")
    for site, eps in sorted(record["epsilon_per_site"].items()):
        print(f"    {site}: {eps:.4f}")
    if record.get("rests_on", ["local"]) != ["local"]:
        fallback = record["epsilon_if_trust_fails_per_site"]
        print(f"    (rests on {', '.join(record['rests_on'])}; if that fails: "
              + ", ".join(f"{s} {e:.2f}" for s, e in sorted(fallback.items())) + ")")
    site_level = manifest["privacy"].get("site")
    if site_level:
        print(f"  site-level epsilon ({site_level['mode']}, target {site_level['target_epsilon']:g}, rests on "
              f"{', '.join(site_level['rests_on'])}): " + ", ".join(
                  f"{s} {e:.4f}" for s, e in sorted(site_level["epsilon_per_site"].items())))
    print(f"  synthetic rows: {manifest['rows']}")
    sampling = manifest.get("sampling", {})
    if sampling.get("rebalanced"):
        achieved = ", ".join(f"{c} {s:.3f}" for c, s in sampling["achieved_shares"].items())
        print(f"  rebalanced on purpose: {sampling['column']} shares requested "
              + ", ".join(f"{c}={s:g}" for c, s in sampling["requested_shares"].items())
              + f"; in the table: {achieved}")
    print(f"  outputs: {out}/synthetic.csv, synthetic.parquet, ledger.json, manifest.json (+ .sig)")
    _print_quality(out)
    print(f"  signature verified (key fingerprint {fingerprint[:16]}); each site's copy is in {out}/sites/site-N-received/")


def _print_quality(out: Path) -> None:
    """The report's headline, so the terminal says how good the table is, not only that it exists."""
    report = json.loads((out / "report.json").read_text())
    print(f"  report: {out}/report.html (open it in a browser; report.json holds the same numbers)")
    utility = report.get("utility")
    if utility:
        for model, scores in utility["models"].items():
            tstr = scores["tstr"]
            line = f"    TSTR AUC {model}: {_pm(tstr['auc'], tstr.get('auc_std'))} (federated, on the sites' hold-out)"
            if scores.get("ratio_auc"):
                line += f"; {scores['ratio_auc']:.2f} of TRTR {scores['trtr']['auc']:.3f}"
            print(line)
    if report.get("marginals"):
        tvds = [m["tvd"] for m in report["marginals"]]
        print(f"    mean TVD over columns: {sum(tvds) / len(tvds):.3f}")
    privacy = report.get("privacy_scores")
    if privacy:
        print(f"    membership AUC of a distance attack: {_pm(privacy['membership_auc'], privacy.get('membership_auc_std'))}"
              " (0.5 = no signal)")
    reference = report.get("reference")
    if reference:
        scores = reference["scores"]
        print(f"    reference check on public Adult: TSTR/TRTR AUC (gradient boosting) "
              f"{scores.get('auc_ratio_gradient_boosting')}, mean TVD {scores.get('mean_tvd')}, "
              f"DCR share {scores.get('dcr_share')}")


def _pm(value: float | None, std: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" ± {std:.3f}" if std is not None else "")
