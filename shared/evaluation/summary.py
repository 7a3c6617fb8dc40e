"""The short, readable account of an evaluation report that ``fedsynth evaluate`` prints."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.evaluation.fidelity import DependenceFidelity
    from shared.evaluation.report import EvaluationReport
    from shared.evaluation.utility import Scores

__all__ = ["format_summary"]


def format_summary(report: EvaluationReport) -> str:
    """Headline scores, one model per line, and the bias table."""
    lines = [
        f"evaluated {report.synthetic_rows} synthetic rows against {report.train_rows} real training rows "
        f"and {report.holdout_rows} holdout rows (schema {report.schema!r}, seed {report.seed})",
        *_fidelity(report),
        *_utility(report),
        *_privacy(report),
        *_bias(report),
    ]
    return "\n".join(lines)


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _fidelity(report: EvaluationReport) -> list[str]:
    f = report.fidelity
    return [
        "fidelity (synthetic vs holdout, 0 = identical):",
        f"  mean TVD {_num(f.mean_tvd)} over {len(f.categorical)} categorical columns; "
        f"mean KS {_num(f.mean_ks)}, mean Wasserstein/bounds {_num(f.mean_wasserstein, 4)} "
        f"over {len(f.continuous)} continuous columns",
        f"  Pearson correlation: {_dependence(f.correlation)}",
        f"  Cramér's V: {_dependence(f.cramers_v)}",
    ]


def _dependence(d: DependenceFidelity) -> str:
    if d.mean_abs_diff is None:
        return "n/a (fewer than two columns)"
    return f"mean |diff| {_num(d.mean_abs_diff)} over {d.pairs} pairs, worst {d.max_pair} {_num(d.max_abs_diff)}"


def _scores(s: Scores | None) -> str:
    return "n/a" if s is None else f"AUC {_num(s.auc)} acc {_num(s.accuracy)} F1 {_num(s.f1_macro)}"


def _utility(report: EvaluationReport) -> list[str]:
    u = report.utility
    if u.skipped:
        return [f"utility: skipped ({u.skipped})"]
    lines = [f"utility on target {u.target!r} (tested on the holdout):"]
    for m in u.models:
        lines.append(
            f"  {m.model}: TSTR {_scores(m.tstr)} | TRTR {_scores(m.trtr)} | TSTR/TRTR AUC {_num(m.auc_ratio)}"
            + (f" ({m.skipped})" if m.skipped else "")
        )
    return lines


def _privacy(report: EvaluationReport) -> list[str]:
    p = report.privacy
    return [
        f"privacy ({p.synthetic_rows_compared} synthetic rows vs {p.real_rows_per_side} real rows per side):",
        f"  DCR share {_num(p.dcr_share)} (0.5 ideal, 1 = copies the training rows); "
        f"MIA AUC {_num(p.mia_auc)} (0.5 ideal)",
        f"  exact copies of training rows {100 * p.exact_copy_rate:.2f}% "
        f"(of holdout rows, a baseline: {100 * p.exact_copy_rate_holdout:.2f}%)",
    ]


def _bias(report: EvaluationReport) -> list[str]:
    if not report.bias:
        return ["bias: the schema names no sensitive attributes"]
    width = max(len(f"{g.attribute}={g.group}") for g in report.bias)
    lines = [
        "bias (gradient boosting; gap = TSTR AUC - TRTR AUC on the group's holdout rows):",
        f"  {'group':<{width}}  real   synth  TSTR   TRTR   gap",
    ]
    for g in report.bias:
        head = f"  {f'{g.attribute}={g.group}':<{width}}  {g.real_share:.3f}  {g.synthetic_share:.3f}"
        if g.skipped:
            lines.append(f"{head}  skipped: {g.skipped}")
        else:
            lines.append(f"{head}  {_num(g.tstr_auc)}  {_num(g.trtr_auc)}  {_num(g.auc_gap)}")
    return lines
