"""Publishing the run: write the pooled synthetic table (drawn by ``server.sampling``) with the plan and the
ledger, and sign a manifest over all of it, including how the table was drawn. Sampling is post-processing:
it costs no privacy.
"""

from __future__ import annotations

import io
import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import pandas as pd
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from server.consortium import ROUNDS_FILE
from server.evaluation import EVALUATION_FILE, FederatedEvaluation
from shared.atomic import atomic_write_bytes, atomic_write_text
from shared.generator import TabularGenerator, state_hash
from shared.ledger import Ledger
from shared.manifest import write_signed_manifest
from shared.plan import TRUST_LOCAL, TrainingPlan
from shared.schema import Schema

logger = logging.getLogger(__name__)

SYNTHETIC_NOTICE = (
    "SYNTHETIC DATA: every row was sampled from a generator trained with differential privacy; "
    "no row describes a real person or record."
)


@dataclass(frozen=True)
class Publication:
    """What the run wrote, for the summary and the delivery to sites."""

    out_dir: Path
    files: tuple[str, ...]
    rows: int
    manifest: dict[str, object]


def publish(
    out_dir: Path,
    *,
    table: pd.DataFrame,
    generator: TabularGenerator,
    schema: Schema,
    plan: TrainingPlan,
    ledger: Ledger,
    rounds_completed: int,
    key: Ed25519PrivateKey,
    sampling: dict[str, object] | None = None,
    evaluation: FederatedEvaluation | None = None,
) -> Publication:
    """Write synthetic.csv/.parquet, plan.json, ledger.json (and the evaluation and round files), then sign.

    ``table`` and ``sampling`` (how it was drawn) come from ``server.sampling.sample_table``; the sites have
    scored it (``evaluation``) before it is published, so the ledger written here already holds the
    evaluation's cost.
    """
    _write_table(out_dir, table)
    atomic_write_text(out_dir / "plan.json", plan.to_json() + "\n")
    atomic_write_text(out_dir / "ledger.json", _ledger_json(ledger))
    files = ["synthetic.csv", "synthetic.parquet", "plan.json", "ledger.json"]
    if (out_dir / ROUNDS_FILE).is_file():
        files.append(ROUNDS_FILE)
    if evaluation is not None:
        evaluation.write(out_dir / EVALUATION_FILE)
        files.append(EVALUATION_FILE)
    manifest = _manifest(generator, schema, plan, ledger, rounds_completed, len(table))
    manifest["sampling"] = sampling or {"method": "unconditional"}
    manifest["evaluation"] = _evaluation_section(plan, evaluation)
    write_signed_manifest(out_dir, manifest, files, key)
    return Publication(out_dir=out_dir, files=tuple(files), rows=len(table), manifest=manifest)


def _evaluation_section(plan: TrainingPlan, evaluation: FederatedEvaluation | None) -> dict[str, object]:
    if plan.evaluate_noise_multiplier == 0:
        return {"federated": False, "reason": "evaluation was off (evaluate.noise-multiplier = 0)"}
    if evaluation is None:
        return {"federated": False, "reason": "no site answered the evaluation request",
                "holdout_fraction": plan.evaluate_holdout_fraction}
    return {
        "federated": True,
        "file": EVALUATION_FILE,
        "sites": sorted(evaluation.releases),
        "holdout_fraction": evaluation.holdout_fraction,
        "noise_multiplier": evaluation.noise_multiplier,
        "sensitivity": evaluation.layout.sensitivity,
        "noise_std_per_cell_and_site": evaluation.noise_std,
        "synthetic_sha256": evaluation.synthetic_sha256,
        "charged_at_round": plan.evaluation_round,
        **({"counted": f"one row per {plan.privacy_unit} (so one unit moves each histogram as one row does)"}
           if plan.per_unit else {}),
    }


def _write_table(out_dir: Path, table: pd.DataFrame) -> None:
    atomic_write_text(out_dir / "synthetic.csv", table.to_csv(index=False))
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    atomic_write_bytes(out_dir / "synthetic.parquet", buffer.getvalue())


def _ledger_json(ledger: Ledger) -> str:
    return json.dumps(ledger.to_dict(), indent=2, sort_keys=True) + "\n"


def _manifest(
    generator: TabularGenerator, schema: Schema, plan: TrainingPlan, ledger: Ledger, rounds: int, rows: int
) -> dict[str, object]:
    per_site = {site: ledger.spent(site, "record") for site in ledger.sites()}
    privacy: dict[str, object] = {
        "record": {
            "epsilon": max(per_site.values(), default=0.0),
            "epsilon_per_site": per_site,
            "delta": plan.delta,
            "target_epsilon": plan.target_epsilon,
            "accountant": plan.accountant,
            "noise_multiplier": plan.noise_multiplier,
            "sample_rate": plan.sample_rate,
            "steps_per_round": plan.local_steps,
            "max_grad_norm": plan.max_grad_norm,
            "noise": plan.record_noise,
            "rests_on": _trusts(ledger, "record"),
            "epsilon_if_trust_fails_per_site": _fallback(ledger, "record"),
            "unit": plan.unit_description(),
            **({"privacy_unit": plan.privacy_unit, "max_rows_per_unit": plan.max_rows_per_unit,
                "sampled": f"Poisson over {plan.privacy_unit} units; each unit's gradient (its rows together) "
                           "clipped as one sample"} if plan.per_unit else {}),
        }
    }
    if plan.site_dp != "off":
        site_level = {site: ledger.spent(site, "site") for site in ledger.sites() if ledger.entries_for(site, "site")}
        privacy["site"] = {
            "epsilon": max(site_level.values(), default=0.0),
            "epsilon_per_site": site_level,
            "delta": plan.delta,
            "target_epsilon": plan.site_target_epsilon,
            "accountant": plan.accountant,
            "mode": plan.site_dp,
            "noise_multiplier": plan.site_noise_multiplier,
            "clipping_norm": plan.site_clip,
            "rests_on": _trusts(ledger, "site"),
            "epsilon_if_trust_fails_per_site": _fallback(ledger, "site"),
            "unit": "a site's whole table (its entire update in a round)",
        }
    if plan.secure_agg:
        privacy["secure_aggregation"] = {"protocol": "SecAgg (Bonawitz et al. 2017), full graph",
                                         "threshold": plan.secagg_threshold}
    return {
        "label": "SYNTHETIC",
        "notice": SYNTHETIC_NOTICE,
        "run_id": plan.run_id,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "schema": {"name": schema.name, "sha256": schema.hash},
        "generator": {"name": generator.name, "sha256": state_hash(generator.state_dict()),
                      "config": {"hidden": plan.hidden, "latent": plan.latent, "kl_weight": plan.kl_weight}},
        "privacy": privacy,
        "rounds": rounds,
        "rounds_planned": plan.rounds,
        "sites": sorted(per_site),
        "rows": rows,
        "software": _versions(),
    }


def _trusts(ledger: Ledger, level: str) -> list[str]:
    """What the level's epsilon rests on: every trust its entries took, or ["local"] if none took any."""
    trusts = {e.trust for e in ledger.entries if e.level == level} - {TRUST_LOCAL}
    return sorted(trusts) or [TRUST_LOCAL]


def _fallback(ledger: Ledger, level: str) -> dict[str, float | None]:
    """Per site, the epsilon if every trust assumption failed; None (JSON null) where there is no bound."""
    out: dict[str, float | None] = {}
    for site in ledger.sites():
        if ledger.entries_for(site, level):
            value = ledger.fallback_spent(site, level)
            out[site] = None if math.isinf(value) else value
    return out


def _versions() -> dict[str, str]:
    out = {}
    for name in ("fedsynth", "flwr", "opacus", "torch", "pandas"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed as a package"
    return out
