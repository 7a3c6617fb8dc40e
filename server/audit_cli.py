"""The `fedsynth audit` command: its options, and the summary a privacy officer reads.

``server/cli.py`` hooks it in with ``add_parser(sub)`` and, for ``args.command == "audit"``, ``run(args)``.
Exit codes: 0 when the empirical lower bound is consistent with the accounted epsilon, 1 when it exceeds it
(the accounting or its implementation is wrong), 2 on an error (raised as ``FedsynthError`` to the CLI).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from server.demo import BUNDLED_DATA, BUNDLED_SCHEMA

__all__ = ["add_parser", "format_summary", "run"]

_LABELS = {"generator_loss": "generator loss (ELBO)", "synthetic_dcr": "synthetic table (DCR)"}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``audit`` sub-command to ``fedsynth``'s sub-parsers."""
    audit = subparsers.add_parser(
        "audit", help="empirically check the accounted epsilon with canaries (two simulated federations)",
        description="Plant canaries at one site, run the federation with and without them, attack both, and "
        "bound epsilon from below (Steinke, Nasr & Jagielski, NeurIPS 2023).",
    )
    audit.add_argument("--out", type=Path, default=Path("fedsynth-audit"))
    audit.add_argument("--canaries", type=int, default=500, help="canaries, each planted with probability 1/2")
    audit.add_argument("--seed", type=int, default=None,
                       help="seed for the canaries and their inclusion bits (default: fresh OS entropy; tests only)")
    audit.add_argument("--confidence", type=float, default=0.95, help="for all reported bounds together")
    audit.add_argument("--sites", type=int, default=3)
    audit.add_argument("--rounds", type=int, default=30)
    audit.add_argument("--epsilon", type=float, default=3.0, help="record-level target epsilon per site")
    audit.add_argument("--delta", type=float, default=1e-5)
    audit.add_argument("--rows", type=int, default=None, help="synthetic rows (default: as many as the input)")
    audit.add_argument("--local-steps", type=int, default=None, help="DP-SGD steps per site and round")
    audit.add_argument("--data", type=Path, default=None, help="a CSV table (needs --schema)")
    audit.add_argument("--schema", type=Path, default=None, help="the table's schema.json")
    audit.add_argument("--force", action="store_true", help="replace an earlier audit in --out")


def run(args: argparse.Namespace) -> int:
    """Run the audit from parsed arguments, print the summary; 0 consistent, 1 violation."""
    from server.audit import AuditOptions, run_audit
    from shared.errors import ConfigError

    if (args.data is None) != (args.schema is None):
        raise ConfigError("--data and --schema go together (a table and its public schema)")
    options = AuditOptions(
        out=args.out, sites=args.sites, rounds=args.rounds, epsilon=args.epsilon, delta=args.delta,
        canaries=args.canaries, seed=args.seed, rows=args.rows, local_steps=args.local_steps,
        data=args.data or BUNDLED_DATA, schema=args.schema or BUNDLED_SCHEMA, confidence=args.confidence,
        force=args.force,
    )
    report = run_audit(options)
    print(format_summary(report, options.out.resolve()))
    return 0 if report["consistent"] else 1


def format_summary(report: dict[str, Any], out: Path) -> str:
    """A few lines: what was audited, each attack's AUC and bound, and the verdict."""
    accounted, canaries, method = report["accounted"], report["canaries"], report["method"]
    lines = [
        f"\nfedsynth audit finished in {report['seconds']:.0f} s: {canaries['m']} canaries, "
        f"{canaries['included']} planted at {canaries['site']}",
        f"  accounted epsilon ({accounted['site']}, {accounted['accountant']}, delta {accounted['delta']:g}): "
        f"{accounted['epsilon']:.4f}",
        f"  lower bounds hold together with {method['confidence']:.0%} confidence "
        f"(Bonferroni over {method['tests']} tests)",
        f"  {'attack':<24}{'AUC':>7}{'guesses':>9}{'correct':>9}{'eps lower bound':>17}",
    ]
    for name, attack in report["attacks"].items():
        auc = "n/a" if attack["auc"] is None else f"{attack['auc']:.3f}"
        lines.append(f"  {_LABELS.get(name, name):<24}{auc:>7}{attack['guesses']:>9}{attack['correct']:>9}"
                     f"{attack['epsilon_lower_bound']:>17.3f}")
    bound, eps = report["empirical_epsilon_lower_bound"], accounted["epsilon"]
    ceiling = method["perfect_attacker_bound"]
    lines.append(f"  (an attacker right every time would show {ceiling:.2f} with {canaries['m']} canaries"
                 f"{'; raise --canaries to probe higher' if ceiling < eps else ''})")
    if report["consistent"]:
        lines.append(f"  empirical lower bound {bound:.3f} <= accounted epsilon {eps:.3f}: consistent")
    else:
        lines.append(f"  VIOLATION: empirical lower bound {bound:.3f} > accounted epsilon {eps:.3f}: the accounting "
                     "or its implementation understates the privacy loss")
    lines.append(f"  report: {out / 'audit.json'}; canaries, bits and scores: {out / canaries['file']}")
    return "\n".join(lines)
