"""The end-of-run summary a coordinator reads on the terminal."""

from __future__ import annotations

from server.publish import Publication
from shared.plan import TrainingPlan


def summarize(publication: Publication, plan: TrainingPlan, receipts: dict[str, str]) -> str:
    manifest = publication.manifest
    privacy = manifest["privacy"]["record"]  # type: ignore[index]
    lines = [
        f"run {plan.run_id}: {manifest['rounds']} of {plan.rounds} rounds, {publication.rows} synthetic rows",
        f"record-level privacy (delta {plan.delta:g}, {plan.accountant} accountant), target epsilon "
        f"{plan.target_epsilon:g}:",
    ]
    if plan.per_unit:
        lines[1] = (f"per-{plan.privacy_unit} privacy (delta {plan.delta:g}, {plan.accountant} accountant; protects "
                    f"{plan.unit_description()}), target epsilon {plan.target_epsilon:g}:")
    for site, eps in sorted(privacy["epsilon_per_site"].items()):  # type: ignore[index]
        lines.append(f"  {site}: epsilon {eps:.4f} spent of {plan.target_epsilon:g}")
    site_level = manifest["privacy"].get("site")  # type: ignore[attr-defined]
    if site_level:
        lines.append(
            f"site-level privacy ({site_level['mode']}, clip {site_level['clipping_norm']:g}, rests on "
            f"{', '.join(site_level['rests_on'])}), target epsilon {site_level['target_epsilon']:g}:"
        )
        for site, eps in sorted(site_level["epsilon_per_site"].items()):
            lines.append(f"  {site}: epsilon {eps:.4f}")
    lines.append(f"outputs in {publication.out_dir}:")
    for name in (*publication.files, "manifest.json", "manifest.json.sig"):
        lines.append(f"  {name}")
    for site, where in sorted(receipts.items()):
        lines.append(f"delivered to {site}: {where}")
    lines.append(f"check it: fedsynth verify {publication.out_dir}")
    return "\n".join(lines)
