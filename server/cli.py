"""`fedsynth`: the one command for what a person does by hand. Federated runs themselves go through
Flower's own CLI (`flwr run`); `fedsynth demo` is a convenience over the very same app.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from server import audit_cli, console_cli
from shared.errors import FedsynthError
from shared.ledger import LEVELS, Ledger


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedsynth", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run a simulated federation on a bundled (or your) table")
    demo.add_argument("--out", type=Path, default=Path("fedsynth-demo"))
    demo.add_argument("--sites", type=int, default=3)
    demo.add_argument("--rounds", type=int, default=None, help="rounds (default 30; 60 with --generator gan)")
    demo.add_argument("--epsilon", type=float, default=3.0, help="record-level target epsilon per site")
    demo.add_argument("--delta", type=float, default=1e-5)
    demo.add_argument("--split", choices=("iid", "non-iid"), default="iid")
    demo.add_argument("--split-by", default=None, help="column for --split non-iid (default: the schema's)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--rows", type=int, default=None, help="synthetic rows (default: as many as the input)")
    demo.add_argument("--data", type=Path, default=None, help="a CSV table (needs --schema)")
    demo.add_argument("--schema", type=Path, default=None, help="the table's schema.json")
    demo.add_argument("--local-steps", type=int, default=None,
                      help="DP-SGD steps per site and round (default 10; 20 with --generator gan)")
    demo.add_argument("--force", action="store_true", help="replace an earlier run in --out")
    demo.add_argument("--sample-rate", type=float, default=None,
                      help="DP-SGD Poisson sample rate (default 0.05; a small table learns more with a larger one)")
    demo.add_argument("--hidden", type=int, default=None,
                      help="width of the hidden layers (the VAE's, or the GAN discriminator's; default 256; a small table learns more with 64)")
    demo.add_argument("--site-dp", action="store_true",
                      help="add site-level DP (DP-FedAvg): central, or distributed with --secure-agg")
    demo.add_argument("--secure-agg", action="store_true", help="secure aggregation: the server sees only the sum")
    demo.add_argument("--shared-noise", action="store_true",
                      help="with --secure-agg: each site adds only its share of the record-level noise (1 local step)")
    demo.add_argument("--site-epsilon", type=float, default=10.0, help="site-level target epsilon (with --site-dp)")
    demo.add_argument("--site-clip", type=float, default=1.0, help="site-level clipping norm of an update")
    demo.add_argument("--dp-bins", action="store_true",
                      help="estimate quantile bins for continuous columns without public bins (paid, DP histograms)")
    demo.add_argument("--class-frequencies", action="store_true",
                      help="estimate the target's class shares (paid) and sample the synthetic table to match them")
    demo.add_argument("--oversample", default="", metavar="CLASS=SHARE[,CLASS=SHARE]",
                      help="rebalance the target in the synthetic table, e.g. 1=0.5 for half the rows of class 1; "
                           "each class is drawn from the generator conditioned on it (free: post-processing)")
    demo.add_argument("--generator", choices=("tvae", "gan", "ctvae"), default="tvae",
                      help="the synthesizer: a DP tabular VAE, a DP conditional GAN (DP-SGD on the discriminator), "
                           "or a DP VAE whose decoder is conditioned on the target's class (for --oversample)")
    demo.add_argument("--eval-noise", type=float, default=10.0,
                      help="noise multiplier of the sites' evaluation release (0 = no federated evaluation)")
    demo.add_argument("--eval-pairs", action="store_true",
                      help="also release pair histograms for the dependence heatmap (costs more noise per cell)")
    demo.add_argument("--max-rows-per-unit", type=int, default=1, metavar="K",
                      help="with a schema that names a privacy_unit (e.g. a patient): use at most K of a unit's rows "
                           "per site; DP-SGD then samples and clips whole units, and every epsilon is per unit")
    demo.add_argument("--console", nargs="?", const="127.0.0.1:50151", default=None, metavar="HOST:PORT",
                      help="serve the live console (TLS; certificates and an admin token under OUT/console)")

    schema = sub.add_parser("schema", help="schema tools")
    schema_sub = schema.add_subparsers(dest="schema_command", required=True)
    check = schema_sub.add_parser("check", help="validate a table against a schema")
    check.add_argument("--schema", type=Path, required=True)
    check.add_argument("--data", type=Path, required=True)
    check.add_argument("--quarantine", type=Path, default=None, help="where failing rows go")

    verify = sub.add_parser("verify", help="check a run's signature and every file's hash")
    verify.add_argument("dir", type=Path)
    verify.add_argument("--public-key", type=Path, default=None, help="pin the signer's key (raw or PEM)")

    audit_cli.add_parser(sub)
    console_cli.add_parsers(sub)

    evaluate = sub.add_parser("evaluate", help="score a synthetic table against real rows (aggregates only)")
    evaluate.add_argument("--synthetic", type=Path, required=True)
    evaluate.add_argument("--real", type=Path, required=True, help="the real table; split into training and holdout")
    evaluate.add_argument("--schema", type=Path, required=True)
    evaluate.add_argument("--holdout-fraction", type=float, default=0.2)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--out", type=Path, default=None, help="write the full report as JSON")

    ledger = sub.add_parser("ledger", help="privacy ledger tools")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    lverify = ledger_sub.add_parser("verify", help="recompute every epsilon in a ledger from its parameters")
    lverify.add_argument("path", type=Path)

    report = sub.add_parser("report", help="rebuild a run's report.json and report.html from its folder")
    report.add_argument("dir", type=Path)
    report.add_argument("--reference-train", type=Path, default=None,
                        help="a central table the generator was trained on (public data only), for a reference check")
    report.add_argument("--reference-holdout", type=Path, default=None,
                        help="a central table it never saw (with --reference-train)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except FedsynthError as exc:
        print(f"fedsynth: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from server.demo import BUNDLED_DATA, BUNDLED_SCHEMA, GENERATOR_PROFILES, DemoOptions, run_demo
        from shared.class_shares import ClassShares

        if (args.data is None) != (args.schema is None) and args.data is not None:
            raise FedsynthError("--data needs --schema (the table's public schema)")
        options = DemoOptions(
            out=args.out, sites=args.sites, rounds=args.rounds or GENERATOR_PROFILES[args.generator].rounds,
            epsilon=args.epsilon, delta=args.delta,
            split=args.split, seed=args.seed, rows=args.rows, data=args.data or BUNDLED_DATA,
            schema=args.schema or BUNDLED_SCHEMA, split_by=args.split_by, local_steps=args.local_steps,
            force=args.force, site_dp=args.site_dp, secure_agg=args.secure_agg, shared_noise=args.shared_noise,
            site_epsilon=args.site_epsilon, site_clip=args.site_clip, dp_bins=args.dp_bins,
            class_frequencies=args.class_frequencies, generator=args.generator, eval_noise=args.eval_noise,
            eval_pairs=args.eval_pairs, console=args.console, max_rows_per_unit=args.max_rows_per_unit,
            oversample=ClassShares.parse(args.oversample, key="--oversample"),
            sample_rate=args.sample_rate, hidden=args.hidden,
        )
        return run_demo(options)
    if args.command == "report":
        return _report(args)
    if args.command == "schema":
        from shared.validation import check_table

        return check_table(args.schema, args.data, args.quarantine)
    if args.command == "verify":
        return _verify(args.dir, args.public_key)
    if args.command == "audit":
        return audit_cli.run(args)
    if args.command in ("console", "certs", "node-key", "split"):
        return console_cli.run(args)
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "ledger":

        return _verify_ledger(Ledger.load(args.path))
    raise AssertionError(args.command)


def _verify_ledger(ledger: Ledger) -> int:
    """Recompute every entry, then show what each site spent at each level and what it rests on."""
    checked = ledger.verify()
    print(f"{ledger.path}: {checked} entries, every epsilon recomputed from its logged parameters "
          "(within 1%): ok")
    for site in ledger.sites():
        for level in LEVELS:
            entries = ledger.entries_for(site, level)
            if not entries:
                continue
            last = entries[-1]
            trusts = sorted({e.trust for e in entries} - {"local"}) or ["local"]  # what the epsilon rests on
            unit = "" if last.privacy_unit is None else f" per {last.privacy_unit} (<= {last.max_rows_per_unit} rows)"
            line = (f"  {site} {level}-level{unit}: epsilon {last.epsilon:.4f} at delta {last.delta:g} "
                    f"({last.accountant}, {len(entries)} entries; rests on: {', '.join(trusts)})")
            if trusts != ["local"]:
                fallback = ledger.fallback_spent(site, level)
                shown = "no bound (the server added all the noise)" if fallback == float("inf") else f"{fallback:.4f}"
                line += f"; if that trust fails: {shown}"
            print(line)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from shared.evaluation import evaluate_files

    report = evaluate_files(args.synthetic, args.real, args.schema,
                            holdout_fraction=args.holdout_fraction, seed=args.seed)
    print(report.summary())
    if args.out:
        report.write_json(args.out)
        print(f"report written to {args.out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from server.report import REPORT_HTML, REPORT_JSON, write_report

    if (args.reference_train is None) != (args.reference_holdout is None):
        raise FedsynthError("--reference-train and --reference-holdout go together")
    reference = (args.reference_train, args.reference_holdout) if args.reference_train else None
    report = write_report(args.dir, reference=reference)
    print(f"{args.dir / REPORT_JSON} and {args.dir / REPORT_HTML} written (run {report['run']['run_id']}; "
          "open the .html in any browser, it needs no network)")
    return 0


def _verify(directory: Path, public_key: Path | None) -> int:
    from shared.manifest import load_public_key, verify_output

    pinned = load_public_key(public_key) if public_key else None
    report = verify_output(directory, public_key=pinned)
    print(f"{directory}: signature valid, {len(report.files_checked)} files match the manifest "
          f"(signer {report.fingerprint[:16]}{'' if report.pinned else ', key not pinned: compare the fingerprint'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
