"""The consortium report: ``report.json`` and a self-contained ``report.html``, built from a run folder alone.

Everything in it is either a DP release the run already paid for (the sites' noisy evaluation histograms,
the noisy training losses), the public synthetic table, or the ledger; so building it costs no privacy and
anyone holding the run folder can rebuild it (``fedsynth report RUN_DIR``) and compare. The report records
the sha256 of the signed manifest it describes; it is not itself listed in the manifest, so rebuilding it
never breaks the signature.

An optional *reference* section scores the table against real rows held centrally (``shared.evaluation``).
It exists for public data (the bundled demo) and for a consortium that has an approved reference table; a
real federation has no such table, and the section then says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from server.consortium import ROUNDS_FILE
from server.evaluation import EVALUATION_FILE, FederatedEvaluation
from server.report_html import write_html
from shared.accounting import epsilon
from shared.atomic import atomic_write_json
from shared.dp_evaluation import EvaluationLayout, cramers_v, layout_for, release_scores, sum_counts, table_counts
from shared.errors import FedsynthError
from shared.evaluation import evaluate
from shared.ledger import Ledger
from shared.schema import Schema
from shared.validation import read_site_table

logger = logging.getLogger(__name__)

REPORT_JSON, REPORT_HTML = "report.json", "report.html"
FORMAT = "fedsynth-report/1"
NOISY = 0.1  # a dependence difference whose noise spread exceeds this is flagged as noise-dominated


def write_report(run_dir: Path, *, reference: tuple[Path, Path] | None = None) -> dict[str, Any]:
    """Build the report of ``run_dir`` and write report.json and report.html there; returns the report."""
    report = build_report(run_dir, reference=reference)
    atomic_write_json(run_dir / REPORT_JSON, report)
    write_html(report, run_dir / REPORT_HTML)
    return report


def build_report(run_dir: Path, *, reference: tuple[Path, Path] | None = None) -> dict[str, Any]:
    """The report as a JSON-ready dict (format ``fedsynth-report/1``, described in docs/REPORT.md)."""
    manifest_path = run_dir / "manifest.json"
    for needed in (manifest_path, run_dir / "plan.json", run_dir / "ledger.json", run_dir / "synthetic.csv"):
        if not needed.is_file():
            raise FedsynthError(f"{needed}: missing; is {run_dir} the output folder of a finished fedsynth run?")
    manifest = json.loads(manifest_path.read_text())
    plan = json.loads((run_dir / "plan.json").read_text())
    schema = Schema.from_dict(plan["schema_json"])
    ledger = Ledger.load(run_dir / "ledger.json")
    synthetic = read_site_table(run_dir / "synthetic.csv", schema).clean
    evaluation = FederatedEvaluation.read(run_dir / EVALUATION_FILE) if (run_dir / EVALUATION_FILE).is_file() else None
    rounds = json.loads((run_dir / ROUNDS_FILE).read_text())["rounds"] if (run_dir / ROUNDS_FILE).is_file() else []

    notes: list[str] = _unit_notes(plan)
    pooled = site_scores = None
    if evaluation is not None:
        _check_table(evaluation, run_dir / "synthetic.csv", notes)
        sites = sorted(evaluation.releases)
        total = sum_counts([evaluation.releases[s] for s in sites], evaluation.layout)
        pooled = release_scores(total, evaluation.layout, schema, synthetic,
                                noise_std=evaluation.noise_std * len(sites) ** 0.5, seed=0)
        site_scores = {
            s: release_scores(evaluation.releases[s], evaluation.layout, schema, synthetic,
                              noise_std=evaluation.noise_std, seed=1)
            for s in sites
        }
    else:
        notes.append(
            f"No federated evaluation: {manifest.get('evaluation', {}).get('reason', 'the run has no evaluation.json')}."
        )
    reference_scores, reference_dependence = _reference(reference, schema, synthetic, notes)

    return {
        "format": FORMAT,
        "run": _run(manifest, plan, schema, manifest_path),
        "privacy": _privacy(ledger, plan, manifest),
        "training": {
            "loss": [{"round": r["round"], "loss": float(np.mean(list(r["noisy_loss"].values()))),
                      "per_site": r["noisy_loss"]} for r in rounds if r["noisy_loss"]],
            "note": "Mean per-row training loss of the generator (negative ELBO for the VAE, discriminator loss "
                    "for the GAN), released by each site with Gaussian noise (noise multiplier "
                    f"{plan['metric_noise_multiplier']:g}) and paid for every round.",
        },
        "marginals": _marginals(pooled, evaluation),
        "dependence": _dependence(pooled, evaluation, reference_dependence),
        "utility": _utility(pooled, evaluation, reference_scores),
        "privacy_scores": _privacy_scores(pooled, evaluation),
        "bias": _bias(pooled, evaluation, synthetic, schema),
        "sites": _sites(site_scores),
        "reference": reference_scores,
        "notes": notes + _sampling_notes(manifest) + _standard_notes(evaluation),
    }


def _check_table(evaluation: FederatedEvaluation, csv: Path, notes: list[str]) -> None:
    digest = hashlib.sha256(csv.read_bytes()).hexdigest()
    if digest != evaluation.synthetic_sha256:
        notes.append("WARNING: synthetic.csv is not the table the sites scored (its sha256 differs).")


def _run(manifest: dict[str, Any], plan: dict[str, Any], schema: Schema, manifest_path: Path) -> dict[str, Any]:
    record = manifest["privacy"]["record"]
    return {
        "run_id": manifest["run_id"],
        "created": manifest.get("created_at"),
        "generator": manifest["generator"]["name"],
        "sites": manifest.get("sites", []),
        "rounds_planned": manifest.get("rounds_planned"),
        "rounds_completed": manifest.get("rounds"),
        "synthetic_rows": manifest.get("rows"),
        "schema": schema.name,
        "schema_hash": manifest["schema"]["sha256"],
        "accountant": record["accountant"],
        "delta": record["delta"],
        "target_epsilon": record["target_epsilon"],
        "target_column": schema.target,
        "sensitive_columns": list(schema.sensitive),
        "signed": (manifest_path.parent / "manifest.json.sig").is_file(),
        "manifest_sha256": hashlib.sha256(manifest_path.read_bytes()).hexdigest(),
        "noise_multiplier": record["noise_multiplier"],
        "record_noise": record.get("noise"),
        "privacy_unit": record.get("privacy_unit"),
        "max_rows_per_unit": record.get("max_rows_per_unit"),
        # How the table was drawn (server.sampling): a rebalanced target says so, with the shares asked for.
        "sampling": manifest.get("sampling", {"method": "unconditional"}),
    }


def _privacy(ledger: Ledger, plan: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """Epsilon of this run after each round, recomputed from the ledger's parameters (as ``ledger verify`` does)."""
    run_id, delta, accountant = plan["run_id"], plan["delta"], plan["accountant"]
    per_round: dict[int, dict[str, float]] = {}
    evaluation_eps: dict[str, float] = {}
    for site in ledger.sites():
        history: list[tuple[float, float, int]] = []
        for entry in ledger.entries_for(site, "record"):
            if entry.run_id != run_id:
                continue
            before = epsilon(history, delta=delta, accountant=accountant) if history else 0.0
            history += entry.history()
            eps = epsilon(history, delta=delta, accountant=accountant)
            if entry.round == plan["rounds"] + 1 and plan.get("evaluate_noise_multiplier", 0) > 0:
                # What the evaluation added: epsilons compose sub-additively, so this is less than the
                # release would cost alone.
                evaluation_eps[site] = eps - before
            else:
                per_round.setdefault(entry.round, {})[site] = eps
    record = manifest["privacy"]["record"]
    fallback = {k: v for k, v in record.get("epsilon_if_trust_fails_per_site", {}).items()}
    site_level = manifest["privacy"].get("site")
    return {
        "budget": plan["target_epsilon"],
        "unit": _unit_text(record),
        "per_round": [{"round": r, "epsilon": per_round[r]} for r in sorted(per_round)],
        "final": record["epsilon_per_site"],
        "evaluation": {"epsilon": evaluation_eps, "noise_multiplier": plan.get("evaluate_noise_multiplier")}
        if evaluation_eps else None,
        "fallback": fallback if any(v is not None and v != record["epsilon_per_site"].get(k)
                                    for k, v in fallback.items()) else None,
        "site_level": _site_level(ledger, plan, site_level) if site_level else None,
    }


def _unit_text(record: dict[str, Any]) -> str:
    """What each epsilon protects, as the manifest says it (one row, or one unit such as a patient)."""
    if record.get("privacy_unit"):
        return f"per-{record['privacy_unit']} epsilon: protects {record.get('unit')}"
    return "record-level epsilon (one row of a site's table)"


def _site_level(ledger: Ledger, plan: dict[str, Any], manifest_site: dict[str, Any]) -> dict[str, Any]:
    by_round: dict[int, float] = {}
    for site in ledger.sites():
        for entry in ledger.entries_for(site, "site"):
            if entry.run_id == plan["run_id"]:
                by_round[entry.round] = max(by_round.get(entry.round, 0.0), entry.epsilon)
    return {"budget": manifest_site["target_epsilon"], "mode": manifest_site["mode"],
            "per_round": [{"round": r, "epsilon": e} for r, e in sorted(by_round.items())]}


def _marginals(pooled: dict[str, Any] | None, evaluation: FederatedEvaluation | None) -> list[dict[str, Any]]:
    if pooled is None or evaluation is None:
        return []
    std = pooled["std"]
    out = []
    for levels in evaluation.layout.columns:
        m = pooled["marginals"][levels.name]
        out.append({
            "column": levels.name,
            "kind": "numeric" if levels.kind == "continuous" else "categorical",
            "labels": list(levels.labels),
            "real": m["real"],
            "real_std": [std.get(f"marginals/{levels.name}/real/{i}") or 0.0 for i in range(len(levels.labels))],
            "synthetic": m["synthetic"],
            "tvd": m["tvd"],
            "tvd_std": std.get(f"marginals/{levels.name}/tvd"),
            "ks": m.get("ks"),
            "wasserstein": m.get("wasserstein"),
            "source": "hold-out rows of every site: noisy DP histograms, summed",
        })
    return out


def _dependence(
    pooled: dict[str, Any] | None, evaluation: FederatedEvaluation | None, reference: dict[str, Any] | None
) -> dict[str, Any] | None:
    if pooled is not None and evaluation is not None and evaluation.layout.pairs:
        names = [c.name for c in evaluation.layout.columns]
        real, syn, diff, spread = (_square(len(names)) for _ in range(4))
        for a, b in evaluation.layout.pairs:
            i, j = names.index(a), names.index(b)
            entry = pooled["dependence"][f"{a}:{b}"]
            s = pooled["std"].get(f"dependence/{a}:{b}/real")
            for x, y in ((i, j), (j, i)):
                real[x][y], syn[x][y] = entry["real"], entry["synthetic"]
                diff[x][y] = abs(entry["real"] - entry["synthetic"]) if None not in (entry["real"], entry["synthetic"]) else None
                spread[x][y] = s
        return {"measure": "Cramér's V on the report's levels", "columns": names, "real": real, "synthetic": syn,
                "difference": diff, "std": spread,
                "source": f"noisy pair histograms of the sites' hold-out rows (cells with spread > {NOISY} are noise)"}
    return reference


def _square(n: int) -> list[list[float | None]]:
    return [[None] * n for _ in range(n)]


def _utility(
    pooled: dict[str, Any] | None, evaluation: FederatedEvaluation | None, reference: dict[str, Any] | None
) -> dict[str, Any] | None:
    if pooled is None or evaluation is None or evaluation.layout.target is None:
        return None
    trtr = (reference or {}).get("trtr", {})
    models = {}
    for model in evaluation.layout.models:
        scores = pooled["utility"][model]
        tstr = {k: scores[k] for k in ("auc", "accuracy", "f1")}
        tstr.update({f"{k}_std": pooled["std"].get(f"utility/{model}/{k}") for k in ("auc", "accuracy", "f1")})
        ref = trtr.get(model)
        ratio = tstr["auc"] / ref["auc"] if ref and ref.get("auc") and tstr["auc"] is not None else None
        models[model] = {"tstr": tstr, "trtr": ref, "ratio_auc": ratio}
    return {
        "target": evaluation.layout.target,
        "positive_class": evaluation.layout.positive,
        "models": models,
        "source": "models trained on the synthetic table, scored on every site's hold-out rows through noisy "
                  "histograms of their predicted probabilities",
        "note": ("TRTR comes from the reference section (a model trained on the central reference table and "
                 "tested on its hold-out), so the ratio compares scores on different real rows."
                 ) if trtr else "TRTR (train on real) is not part of a federated release: a model trained on a "
                                  "site's rows has no bounded sensitivity. Each site keeps its exact TRTR in its "
                                  "local site-evaluation.json.",
    }


def _privacy_scores(pooled: dict[str, Any] | None, evaluation: FederatedEvaluation | None) -> dict[str, Any] | None:
    if pooled is None or evaluation is None:
        return None
    p, std = pooled["privacy"], pooled["std"]
    return {
        "membership_auc": p["membership_auc"], "membership_auc_std": std.get("privacy/membership_auc"),
        "dcr_train_closer_share": p["train_closer_share"],
        "dcr_train_closer_share_std": std.get("privacy/train_closer_share"),
        "exact_copy_rate": p["exact_copy_rate"], "exact_copy_rate_std": std.get("privacy/exact_copy_rate"),
        "exact_copy_rate_holdout": p["exact_copy_rate_holdout"],
        "source": "distance of each real row (training and hold-out) to its closest synthetic row, as noisy "
                  "histograms from every site",
        "note": "dcr_train_closer_share: of pairs (training row, hold-out row) at different distances, the share "
                "in which the training row is the closer one to the synthetic table; 0.5 means the generator "
                "is no closer to the rows it trained on. exact_copy_rate: share of training rows that appear "
                "verbatim in the synthetic table (compare with the hold-out's rate: common rows recur by chance).",
    }


def _bias(
    pooled: dict[str, Any] | None, evaluation: FederatedEvaluation | None, synthetic: pd.DataFrame, schema: Schema
) -> list[dict[str, Any]] | None:
    if pooled is None or evaluation is None or not evaluation.layout.sensitive:
        return None
    counts = table_counts(evaluation.layout, schema, synthetic)
    out = []
    for name in evaluation.layout.sensitive:
        levels = evaluation.layout.level(name)
        syn = counts[f"marginal:{name}"] / max(counts[f"marginal:{name}"].sum(), 1.0)
        groups = []
        for g, group in enumerate(levels.labels):
            entry = pooled["bias"][name][group]
            groups.append({
                "group": group, "real_share": entry["real_share"],
                "real_share_std": pooled["std"].get(f"bias/{name}/{group}/real_share"),
                "synthetic_share": float(syn[g]), "tstr_auc": entry["tstr_auc"],
                "tstr_auc_std": pooled["std"].get(f"bias/{name}/{group}/tstr_auc"),
            })
        out.append({"attribute": name, "groups": groups})
    return out


def _sites(site_scores: dict[str, dict[str, Any]] | None) -> list[dict[str, Any]]:
    if not site_scores:
        return []
    out = []
    for site, s in sorted(site_scores.items()):
        scores = {"mean_tvd": s["mean_tvd"], "membership_auc": s["privacy"]["membership_auc"],
                  "holdout_rows": s["rows_holdout"]}
        stds = {"mean_tvd": s["std"].get("mean_tvd"), "membership_auc": s["std"].get("privacy/membership_auc"),
                "holdout_rows": s["noise_std_per_cell"]}
        for model, u in s.get("utility", {}).items():
            scores[f"tstr_auc_{model}"] = u["auc"]
            stds[f"tstr_auc_{model}"] = s["std"].get(f"utility/{model}/auc")
        out.append({"site": site, "scores": scores, "stds": stds})
    return out


def _reference(
    reference: tuple[Path, Path] | None, schema: Schema, synthetic: pd.DataFrame, notes: list[str]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Central scores against a reference table (training rows, hold-out rows); None without one."""
    if reference is None:
        return None, None
    train_path, holdout_path = reference
    train = read_site_table(train_path, schema).clean
    holdout = read_site_table(holdout_path, schema).clean
    scored = evaluate(synthetic, train, holdout, schema, seed=0).to_dict()
    utility = {m["model"]: m for m in scored["utility"]["models"]}
    summary = {
        "mean_tvd": scored["fidelity"]["mean_tvd"],
        "mean_ks": scored["fidelity"]["mean_ks"],
        "mean_wasserstein": scored["fidelity"]["mean_wasserstein"],
        "worstcramers_v_difference": scored["fidelity"]["cramers_v"]["max_abs_diff"],
        "worst_correlation_difference": scored["fidelity"]["correlation"]["max_abs_diff"],
        "dcr_share": scored["privacy"]["dcr_share"],
        "exact_copy_rate": scored["privacy"]["exact_copy_rate"],
        "membership_auc": scored["privacy"]["mia_auc"],
    }
    trtr = {}
    for model, u in utility.items():
        summary[f"tstr_auc_{model}"] = (u["tstr"] or {}).get("auc")
        summary[f"trtr_auc_{model}"] = (u["trtr"] or {}).get("auc")
        summary[f"auc_ratio_{model}"] = u["auc_ratio"]
        if u["trtr"]:
            trtr[model] = {"auc": u["trtr"]["auc"], "accuracy": u["trtr"]["accuracy"], "f1": u["trtr"]["f1_macro"]}
    notes.append(
        f"The reference section scores the table centrally against {train_path.name} (trained on) and "
        f"{holdout_path.name} (never seen). That is possible only because these rows are public or approved for "
        "central use; the federated sections above never see a raw row."
    )
    layout = layout_for(schema, synthetic, pairs=True)
    real_counts, syn_counts = table_counts(layout, schema, holdout), table_counts(layout, schema, synthetic)
    dependence = _reference_dependence(layout, real_counts, syn_counts, holdout_path.name)
    return {"title": "Central check against a reference table", "source": f"{train_path.name} / {holdout_path.name}",
            "scores": summary, "trtr": trtr}, dependence


def _reference_dependence(
    layout: EvaluationLayout, real: dict[str, np.ndarray], syn: dict[str, np.ndarray], source: str
) -> dict[str, Any]:
    names = [c.name for c in layout.columns]
    r, s, d = _square(len(names)), _square(len(names)), _square(len(names))
    for a, b in layout.pairs:
        i, j = names.index(a), names.index(b)
        vr, vs = cramers_v(real[f"pair:{a}:{b}"]), cramers_v(syn[f"pair:{a}:{b}"])
        for x, y in ((i, j), (j, i)):
            r[x][y], s[x][y] = vr, vs
            d[x][y] = abs(vr - vs) if vr is not None and vs is not None else None
    return {"measure": "Cramér's V on the report's levels", "columns": names, "real": r, "synthetic": s,
            "difference": d, "std": None, "source": f"reference table {source} (exact, not DP)"}


def _unit_notes(plan: dict[str, Any]) -> list[str]:
    """What a privacy unit changes in how to read the scores (nothing for a record-level run)."""
    unit, rows = plan.get("privacy_unit"), plan.get("max_rows_per_unit")
    if not unit:
        return []
    return [
        f"The privacy unit is {unit}: every epsilon protects one {unit} with all of its rows at a site. Each site "
        f"trained on at most {rows} rows per {unit}, clipping each {unit}'s gradient as one sample, so units with "
        "many rows weigh less than their row count: the synthetic table leans toward one row per unit. The hold-out "
        f"is whole units, and every count in the evaluation release is one row per {unit} (so are the real shares "
        "and scores here)."
    ]


def _sampling_notes(manifest: dict[str, Any]) -> list[str]:
    """A rebalanced table's target marginal differs from the real one on purpose: say so beside the scores."""
    sampling = manifest.get("sampling") or {}
    if not sampling.get("rebalanced"):
        return []
    asked = ", ".join(f"{c} {s:g}" for c, s in sampling["requested_shares"].items())
    made = ", ".join(f"{c} {s:.3f}" for c, s in sampling["achieved_shares"].items())
    return [
        f"Rebalanced on purpose: the coordinator asked for {sampling['column']} shares {asked} (sample.class-shares); "
        f"the table has {made}, each class drawn from the generator conditioned on it (post-processing, no privacy "
        f"cost, no row copied). The {sampling['column']} marginal, and any mean TVD over the categorical columns "
        "that includes it, differs from the real data by design; AUC does not depend on class shares, accuracy "
        "and F1 do."
    ]


def _standard_notes(evaluation: FederatedEvaluation | None) -> list[str]:
    if evaluation is None:
        return []
    return [
        f"Federated scores come from one DP release per site: noisy counts on {evaluation.holdout_fraction:.0%} of "
        f"its rows that training never used, noise multiplier {evaluation.noise_multiplier:g} on L2 sensitivity "
        f"{evaluation.layout.sensitivity:.2f}, i.e. noise std {evaluation.noise_std:.1f} rows per cell and site. "
        "The ± figures are the spread that this noise alone gives each score (parametric bootstrap, "
        "200 draws); small hold-outs make wide spreads.",
        "Distances from noisy histograms are biased upward a little: noise adds mass to every cell.",
    ]
