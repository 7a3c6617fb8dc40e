"""`fedsynth audit`: an empirical check that the accounted epsilon is not a lie.

The audit plants ``m`` canaries, rows drawn uniformly from the schema's public domain, at one site; each is
included with probability 1/2 from OS entropy (or a seed, for tests). It then runs the real federation twice
through the demo's path (the same split, the same ServerApp and ClientApp on Flower's simulation engine):
"with" the included canaries, and "without" any (a reference run that does not depend on the inclusion
bits, so scoring against it is post-processing plus independent randomness). Two attacks score each canary,
reference minus audited, so that a higher score means "member":

- ``generator_loss``: the VAE's negative ELBO of the canary under each final generator, averaged over
  ``LATENT_SAMPLES`` latent draws (the same draws for both generators, which cancels most of the noise);
- ``synthetic_dcr``: the distance from the canary to the closest record of each published synthetic table,
  in the encoded space.

``shared.audit_bound`` turns the scores into an AUC and the one-run lower bound on epsilon of Steinke, Nasr
& Jagielski (NeurIPS 2023), which is compared with the epsilon the "with" run's ledger accounts for the site.
Canaries are synthetic, so ``canaries.csv`` keeps them, their bits and their scores for anyone to recompute.
"""

from __future__ import annotations

import csv
import json
import logging
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from server.checkpoint import CHECKPOINT_NAME, read_checkpoint
from server.demo import APP_DIR, BUNDLED_DATA, BUNDLED_SCHEMA, DemoOptions, demo_run_config, split_table
from server.local_federation import local_superlink, run_app
from shared.atomic import atomic_write_json, atomic_write_text
from shared.audit_bound import (
    CITATION, GUESS_FRACTIONS, AttackAudit, audit_scores, bonferroni_alpha, perfect_attacker_bound,
)
from shared.encoding import TableEncoder
from shared.errors import ConfigError, FedsynthError
from shared.generator import state_hash
from shared.ledger import Ledger
from shared.schema import Column, Schema, load_schema
from shared.tvae import TVAEConfig, TVAEGenerator, TVAELoss
from shared.validation import read_site_table, validate_table

__all__ = [
    "ATTACKS", "AUDIT_FILE", "CANARY_FILE", "Accounted", "AuditOptions", "accounted_epsilon", "closest_distances",
    "generator_losses", "load_generator", "make_canaries", "run_audit",
]

logger = logging.getLogger(__name__)

AUDIT_FILE = "audit.json"
CANARY_FILE = "canaries.csv"
CANARY_SITE = "site-0"
LATENT_SAMPLES = 32
# The split and the plan's seed (initial weights, the sampler of the synthetic table) as in the demo's
# default; both runs share them, so what differs between the runs is the canaries and the DP noise.
PLAN_SEED = 0
ATTACKS: dict[str, str] = {
    "generator_loss": "negative ELBO of the canary under the final generator (reference run minus audited run)",
    "synthetic_dcr": "distance to the closest synthetic record, encoded space (reference run minus audited run)",
}
_RUNS = ("without", "with")
_PLAN_KEYS = ("rounds", "local_steps", "target_epsilon", "noise_multiplier", "sample_rate")
_RUN_OUTPUTS = ("manifest.json", "plan.json", "ledger.json", "synthetic.csv", f"checkpoint/{CHECKPOINT_NAME}")
_OUTPUTS = (AUDIT_FILE, CANARY_FILE, *_RUNS, *(f"{run}.log" for run in _RUNS), ".flower")


@dataclass(frozen=True)
class AuditOptions:
    """What to audit and how; the federation options mean what they mean for ``fedsynth demo``."""

    out: Path
    sites: int = 3
    rounds: int = 30
    epsilon: float = 3.0
    delta: float = 1e-5
    canaries: int = 500
    seed: int | None = None
    rows: int | None = None
    local_steps: int | None = None
    data: Path = BUNDLED_DATA
    schema: Path = BUNDLED_SCHEMA
    confidence: float = 0.95
    force: bool = False

    def __post_init__(self) -> None:
        if self.canaries < 2:
            raise ConfigError(f"--canaries must be >= 2, got {self.canaries}")
        if not 0 < self.confidence < 1:
            raise ConfigError(f"--confidence must be in (0, 1), got {self.confidence}")
        if not self.epsilon > 0:
            raise ConfigError(f"--epsilon must be > 0, got {self.epsilon}")
        self.demo_options(Path("unused"))  # the demo checks sites, rounds and the files

    def demo_options(self, out: Path) -> DemoOptions:
        """The demo's options for one of the two federations."""
        return DemoOptions(
            out=out, sites=self.sites, rounds=self.rounds, epsilon=self.epsilon, delta=self.delta, split="iid",
            seed=PLAN_SEED, rows=self.rows, data=self.data, schema=self.schema, split_by=None,
            local_steps=self.local_steps, force=self.force,
        )


@dataclass(frozen=True)
class Accounted:
    """The epsilon a ledger accounts for one site at record level, and how."""

    site: str
    epsilon: float
    delta: float
    accountant: str


def run_audit(options: AuditOptions) -> dict[str, Any]:
    """Plant canaries, run both federations, attack, write ``audit.json``; return its content."""
    start = time.monotonic()
    out = options.out.resolve()
    _prepare_out(out, options.force)
    schema = load_schema(options.schema)
    rng = np.random.default_rng(options.seed if options.seed is not None else secrets.randbits(128))
    canaries = make_canaries(schema, _header(options.data), options.canaries, rng)
    included = rng.integers(0, 2, size=options.canaries).astype(bool)
    rows = _write_sites(options, out, canaries, included)
    print(f"fedsynth audit: {options.canaries} canaries, {int(included.sum())} planted at {CANARY_SITE}; "
          f"{sum(rows)} rows dealt to {options.sites} sites")
    _federate(options, out, synthetic_rows=options.rows or sum(rows))
    scores = attack_scores(out, schema, validate_table(canaries, schema, source="canaries").clean)
    accounted = accounted_epsilon(out / "with" / "ledger.json", CANARY_SITE)
    alpha = bonferroni_alpha(options.confidence, len(ATTACKS) * len(GUESS_FRACTIONS))
    audits = {name: audit_scores(scores[name], included, delta=accounted.delta, alpha=alpha) for name in ATTACKS}
    _write_canaries(out / CANARY_FILE, canaries, included, scores)
    plan = json.loads((out / "with" / "plan.json").read_text(encoding="utf-8"))
    report = _report(options, plan, accounted, audits, included, alpha, time.monotonic() - start)
    atomic_write_json(out / AUDIT_FILE, report)
    return report


def make_canaries(schema: Schema, header: list[str], m: int, rng: np.random.Generator) -> pd.DataFrame:
    """``m`` rows of text drawn uniformly from the schema's public domain, in the table's column order.

    Categories and numbers are uniform over the public lists and bounds (never missing); a derived column
    follows its source through the schema's mapping; identifiers are ``canary-N``; a column the schema does
    not know is left empty. Every row passes the project's validation, or this raises.
    """
    values: dict[str, list[str]] = {}
    for col in schema.columns:
        if col.type == "identifier":
            values[col.name] = [f"canary-{i}" for i in range(m)]
        elif col.type == "categorical":
            values[col.name] = [str(c) for c in rng.choice(np.array(col.categories, dtype=object), size=m)]
        elif col.derived_from is None:
            values[col.name] = _uniform_numbers(col, m, rng)
    for col in schema.columns:
        if col.derived_from is not None:
            mapping = col.mapping or {}
            values[col.name] = [_number_text(col, mapping[label]) for label in values[col.derived_from]]
    frame = pd.DataFrame({name: values.get(name, [""] * m) for name in header}, dtype=object)
    result = validate_table(frame, schema, source="canaries")
    if not result.ok:
        raise FedsynthError(f"the canaries fail validation ({len(result.issues)} issues); the schema is inconsistent")
    return frame


def _uniform_numbers(col: Column, m: int, rng: np.random.Generator) -> list[str]:
    assert col.bounds is not None
    lo, hi = col.bounds
    if col.is_integer:
        return [str(v) for v in rng.integers(int(lo), int(hi), size=m, endpoint=True)]
    return [repr(float(v)) for v in rng.uniform(lo, hi, size=m)]


def _number_text(col: Column, value: float) -> str:
    return str(int(value)) if col.is_integer else repr(float(value))


def _header(data: Path) -> list[str]:
    with open(data, newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise FedsynthError(f"{data}: the file is empty")
    return header


def _prepare_out(out: Path, force: bool) -> None:
    present = [name for name in _OUTPUTS if (out / name).exists()]
    if present and not force:
        raise FedsynthError(f"{out} already holds an audit ({', '.join(present)}); pass another --out, or --force")
    for name in present:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _write_sites(options: AuditOptions, out: Path, canaries: pd.DataFrame, included: np.ndarray) -> list[int]:
    """Deal the table as the demo does, once, into both runs; append the included canaries to site 0 of "with"."""
    rows = split_table(options.demo_options(out / "without"), out / "without" / "sites")
    shutil.copytree(out / "without" / "sites", out / "with" / "sites")
    with open(out / "with" / "sites" / f"{CANARY_SITE}.csv", "a", newline="", encoding="utf-8") as handle:
        # Poisson sampling ignores row order, so appending is as good as shuffling in.
        csv.writer(handle, lineterminator="\n").writerows(canaries[included].itertuples(index=False))
    return rows


def _federate(options: AuditOptions, out: Path, *, synthetic_rows: int) -> None:
    """Both federations on one private SuperLink, one after the other; Flower's output goes to RUN.log."""
    with local_superlink(out / ".flower") as env:
        for name in _RUNS:
            run_dir = out / name
            print(f"fedsynth audit: federation '{name}' canaries ({options.rounds} rounds), log in {out / name}.log")
            config = demo_run_config(
                options.demo_options(run_dir), run_dir, run_dir / "sites", synthetic_rows=synthetic_rows
            )
            # Every canary must be trained on when included: no hold-out, so no evaluation release either.
            config.update({"evaluate.noise-multiplier": 0.0, "evaluate.holdout-fraction": 0.0})
            config.pop("report.reference-train", None)
            config.pop("report.reference-holdout", None)
            with open(out / f"{name}.log", "w", encoding="utf-8") as log:
                run_app(APP_DIR, num_sites=options.sites, run_config=config, env=env, log=log)
            missing = [f for f in _RUN_OUTPUTS if not (run_dir / f).is_file()]
            if missing:
                raise FedsynthError(f"the '{name}' federation failed ({', '.join(missing)} not written); "
                                    f"see {out / name}.log and {out / '.flower' / 'superlink.log'}")


def attack_scores(out: Path, schema: Schema, canaries: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per canary and attack, the reference run's figure minus the audited run's: higher means member.

    ``canaries`` is the validated frame. Each generator scores them in its own run's layout (a run may have
    paid for data-driven bins); distances are taken in the public schema's layout, the same for both tables.
    """
    loss = {}
    for name in _RUNS:
        generator, encoder = load_generator(out / name)
        loss[name] = generator_losses(generator, encoder.encode(canaries))
    public = TableEncoder.from_schema(schema)
    points = public.encode(canaries)
    dcr = {
        name: closest_distances(points, _encoded_table(out / name / "synthetic.csv", schema, public)) for name in _RUNS
    }
    return {"generator_loss": loss["without"] - loss["with"], "synthetic_dcr": dcr["without"] - dcr["with"]}


def load_generator(run_dir: Path) -> tuple[TVAEGenerator, TableEncoder]:
    """A run's final generator and its encoder: weights from the checkpoint, checked against the hash in the
    signed manifest; layout from the schema in the run's plan (the public one, or with the bins it paid for).
    """
    plan = json.loads((run_dir / "plan.json").read_text(encoding="utf-8"))
    encoder = TableEncoder.from_schema(Schema.from_dict(plan["schema_json"], source=str(run_dir / "plan.json")))
    weights = read_checkpoint(run_dir / "checkpoint" / CHECKPOINT_NAME).generator
    if plan.get("generator", "tvae") != "tvae":
        raise FedsynthError(
            f"{run_dir}: fedsynth audit attacks the VAE's per-row loss; this run trained {plan['generator']!r}. "
            "Audit a VAE run with the same privacy settings, or use the distance attack in the report"
        )
    config = TVAEConfig(hidden=int(plan["hidden"]), latent=int(plan["latent"]), kl_weight=float(plan["kl_weight"]))
    with torch.random.fork_rng(devices=[]):  # the constructor seeds torch; keep that local
        generator = TVAEGenerator(encoder.blocks, encoder.dim, config, seed=int(plan["seed"]))
    generator.load_state_dict(weights)
    published = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))["generator"]["sha256"]
    if state_hash(generator.state_dict()) != published:
        raise FedsynthError(f"{run_dir}: the checkpoint's generator is not the one the manifest publishes")
    return generator, encoder


@torch.no_grad()
def generator_losses(
    generator: TVAEGenerator, points: np.ndarray, *, samples: int = LATENT_SAMPLES, seed: int = 0
) -> np.ndarray:
    """Per row, the generator's training loss (negative ELBO) averaged over ``samples`` latent draws.

    The draws come from ``seed``, so two generators scored with the same seed see the same latent noise.
    """
    criterion = TVAELoss(generator.blocks, generator.dim, generator.config)
    criterion.reduction = "none"
    module = generator.module.eval()
    x = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)).to(next(module.parameters()).device)
    total = torch.zeros(len(x), dtype=torch.float64)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(samples):
            total += criterion(module(x), x).double().cpu()
    return (total / samples).numpy()


def closest_distances(points: np.ndarray, table: np.ndarray, *, chunk: int = 256) -> np.ndarray:
    """Euclidean distance from each point to its nearest row of ``table``."""
    reference = torch.from_numpy(np.asarray(table, dtype=np.float64))
    queries = torch.from_numpy(np.asarray(points, dtype=np.float64))
    parts = [torch.cdist(queries[i : i + chunk], reference).min(dim=1).values for i in range(0, len(queries), chunk)]
    return torch.cat(parts).numpy()


def _encoded_table(path: Path, schema: Schema, encoder: TableEncoder) -> np.ndarray:
    result = read_site_table(path, schema)
    if not result.ok or len(result.clean) == 0:
        raise FedsynthError(f"{path}: the synthetic table does not follow the schema; the run's output is damaged")
    return encoder.encode(result.clean)


def accounted_epsilon(ledger_path: Path, site: str) -> Accounted:
    """The record-level epsilon ``site`` spent, from a ledger whose every epsilon is first recomputed."""
    ledger = Ledger.load(ledger_path)
    ledger.verify()
    entries = ledger.entries_for(site, "record")
    if not entries:
        raise FedsynthError(f"{ledger_path}: no record-level entry for {site}; the site never trained")
    return Accounted(site, ledger.spent(site, "record"), entries[-1].delta, entries[-1].accountant)


def _write_canaries(path: Path, canaries: pd.DataFrame, included: np.ndarray, scores: dict[str, np.ndarray]) -> None:
    table = canaries.copy()  # synthetic rows: safe to keep, and needed to recompute the audit
    table["audit_included"] = included.astype(int)
    for name, values in scores.items():
        table[f"audit_score_{name}"] = values
    atomic_write_text(path, table.to_csv(index=False))


def _report(
    options: AuditOptions, plan: dict[str, Any], accounted: Accounted, audits: dict[str, AttackAudit],
    included: np.ndarray, alpha: float, seconds: float,
) -> dict[str, Any]:
    bound = max(audit.epsilon_lower_bound for audit in audits.values())
    return {
        "format": "fedsynth-audit/1",
        "method": {
            "citation": CITATION,
            "confidence": options.confidence,
            "tests": len(ATTACKS) * len(GUESS_FRACTIONS),
            "alpha_per_test": alpha,
            "correction": "Bonferroni over every (attack, guess rule) pair",
            "guess_fractions": [list(pair) for pair in GUESS_FRACTIONS],
            "latent_samples": LATENT_SAMPLES,
            "perfect_attacker_bound": perfect_attacker_bound(options.canaries, delta=accounted.delta, alpha=alpha),
        },
        "canaries": {"m": options.canaries, "included": int(included.sum()), "site": CANARY_SITE,
                     "file": CANARY_FILE, "seed": options.seed},
        "accounted": {"site": accounted.site, "epsilon": accounted.epsilon, "delta": accounted.delta,
                      "accountant": accounted.accountant, "ledger": "with/ledger.json"},
        "federation": {
            "sites": options.sites, "runs": {"audited": "with", "reference": "without"},
            **{key: plan[key] for key in _PLAN_KEYS},
        },
        "attacks": {name: {"description": ATTACKS[name], **audit.to_dict()} for name, audit in audits.items()},
        "empirical_epsilon_lower_bound": bound,
        "consistent": bound <= accounted.epsilon,
        "seconds": round(seconds, 1),
    }
