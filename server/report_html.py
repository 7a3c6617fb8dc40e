"""The consortium report (``report.json``, format ``fedsynth-report/1``) as one self-contained HTML page.

The page loads nothing: styles, the figures (inline SVG drawn here) and a tiny self-check script are all in
the file, and a Content-Security-Policy forbids any fetch, so it opens offline and leaks nothing when
opened. Every string from the report (column, category, site and model names come from a user's schema or
configuration) is escaped. The numbers are differentially private estimates: where the report gives a
``std`` the page shows ``value ± std`` and draws an error bar, because the noise is part of the reading.

Conventions for missing data (see docs/REPORT.md): a section that is absent or ``null`` is shown as "not
available"; a section may instead be ``{"unavailable": "<reason>"}``. A ``null`` value is shown as "n/a",
followed by the reason when the report gives one, as a sibling key ``<key>_reason`` or, for score maps,
in a ``reasons`` map next to ``scores``.

The script only checks that the figures were drawn (``document.body.dataset.rendered`` becomes ``"ok"`` or
``"failed:<figure id>"``, which the tests read); the page reads the same with scripts off.

This module reads the report and assembles the page; :mod:`server.report_format` writes the values and
:mod:`server.report_svg` draws the figures.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from server.report_format import (
    as_list,
    as_mapping,
    esc,
    finite,
    fmt,
    fmt_count,
    fmt_date,
    fmt_eps,
    fmt_g,
    fmt_generic,
    na,
    plain,
)
from server.report_svg import NOISY_STD, SVG_DEFS, Bars, Line, bar_chart, heatmap, line_chart
from shared.atomic import atomic_write_text
from shared.errors import FedsynthError

__all__ = ["FORMAT", "render_html", "write_html"]

FORMAT = "fedsynth-report/1"
_REAL, _SYNTHETIC = "real (DP estimate)", "synthetic"


def render_html(report: Mapping[str, Any]) -> str:
    """The report as a complete HTML document (a string); raises FedsynthError on another format."""
    if not isinstance(report, Mapping) or report.get("format") != FORMAT:
        found = report.get("format") if isinstance(report, Mapping) else type(report).__name__
        raise FedsynthError(
            f"report: expected format {FORMAT!r}, found {found!r}; render it with the fedsynth version that wrote it"
        )
    run = as_mapping(report.get("run"))
    sections = [
        _header(run),
        _headline(report),
        _privacy(report.get("privacy")),
        _training(report.get("training")),
        _marginals(report.get("marginals")),
        _dependence(report.get("dependence")),
        _utility(report.get("utility")),
        _privacy_scores(report.get("privacy_scores")),
        _bias(report.get("bias")),
        _sites(report.get("sites")),
        _reference(report.get("reference")),
        _notes(report.get("notes")),
    ]
    title = f"fedsynth report: run {run.get('run_id') or 'unknown'}"
    return _page(title, "\n".join(sections))


def write_html(report: Mapping[str, Any], path: Path) -> None:
    """Render ``report`` and write it to ``path`` atomically (a reader never sees half a page)."""
    atomic_write_text(path, render_html(report))


# ---- building blocks --------------------------------------------------------------------------------------


def _available(value: Any) -> tuple[Any, str | None]:
    """The section's data, or None and the reason the report gives for its absence."""
    if isinstance(value, Mapping) and "unavailable" in value:
        reason = value["unavailable"]
        return None, str(reason) if reason else None
    return value, None


def _unavailable(what: str, reason: str | None) -> str:
    tail = f": {esc(reason)}" if reason else "."
    return f'<p class="unavailable"><strong>{esc(what)} not available</strong>{tail}</p>'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{esc(title)}</h2>\n{body}\n</section>'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "", text_columns: int = 0) -> str:
    """A table whose first column names the row; ``head`` and ``caption`` are plain text, cells HTML already.

    The last ``text_columns`` columns hold prose; the others numbers (right-aligned).
    """
    numeric = range(1, len(head) - text_columns)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    ths = "".join(f'<th scope="col"{_num_class(i, numeric)}>{esc(h)}</th>' for i, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(
            f'<th scope="row">{cell}</th>' if i == 0 else f"<td{_num_class(i, numeric)}>{cell}</td>"
            for i, cell in enumerate(row)
        ) + "</tr>\n"
        for row in rows
    )
    return f"<table>{cap}<thead><tr>{ths}</tr></thead>\n<tbody>\n{body}</tbody></table>"


def _num_class(index: int, numeric: range) -> str:
    return ' class="num"' if index in numeric else ""


def _source(value: Any) -> str:
    return f'<p class="source">Source: {esc(value)}</p>' if value else ""


def _note(value: Any) -> str:
    return f'<p class="note">{esc(value)}</p>' if value else ""


def _figure(fig_id: str, caption: str, chart: str, *, small: bool = False, caption_is_html: bool = False) -> str:
    text = caption if caption_is_html else esc(caption)
    chart = chart.replace("<svg ", f'<svg role="img" aria-labelledby="{fig_id}-t" ', 1)
    size = " small" if small else ""
    return (f'<figure class="chart{size}" id="{fig_id}"><figcaption id="{fig_id}-t">{text}</figcaption>'
            f"{chart}</figure>")


# ---- header and headline ------------------------------------------------------------------------------------


def _header(run: Mapping[str, Any]) -> str:
    sites = [str(s) for s in as_list(run.get("sites"))]
    planned, done = finite(run.get("rounds_planned")), finite(run.get("rounds_completed"))
    rounds = f"{fmt_count(done)} of {fmt_count(planned)} planned"
    if done is not None and planned is not None and done < planned:
        rounds += ' <strong class="warn">(stopped early)</strong>'
    signed = run.get("signed")
    sign = (
        f'yes, manifest SHA-256 <code class="hash">{esc(run.get("manifest_sha256") or "n/a")}</code>' if signed
        else '<strong class="warn">no: these figures cannot be checked against a signed manifest</strong>'
    )
    schema_hash = run.get("schema_hash")
    items = [
        ("Run", f"<code>{esc(run.get('run_id') or 'n/a')}</code>"),
        ("Created", fmt_date(run.get("created"))),
        ("Generator", esc(run.get("generator") or "n/a")),
        (f"Sites ({len(sites)})", esc(", ".join(sites)) if sites else na()),
        ("Rounds", rounds),
        ("Synthetic rows", fmt_count(run.get("synthetic_rows"))),
        ("Schema", esc(run.get("schema") or "n/a")
         + (f' <code class="hash">{esc(schema_hash)}</code>' if schema_hash else "")),
        ("Privacy accounting", f"{esc(run.get('accountant') or 'n/a')} accountant, "
         f"target &epsilon; {fmt_eps(run.get('target_epsilon'))}, &delta; {esc(fmt_g(run.get('delta')))}"),
        ("Target column", esc(run.get("target_column") or "none") + _class_shares(run.get("sampling"))),
        ("Sensitive columns", esc(", ".join(map(str, as_list(run.get("sensitive_columns")))) or "none")),
        ("Signed", sign),
    ]
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items)
    return f'<header>\n<h1>Synthetic data report</h1>\n<dl class="run">{rows}</dl>\n{_contents()}\n</header>'


def _class_shares(sampling: Any) -> str:
    """The target's class shares in the table when the coordinator chose them (a rebalanced table)."""
    if not isinstance(sampling, Mapping) or not sampling.get("rebalanced"):
        return ""
    asked = ", ".join(f"{esc(c)} = {esc(fmt_g(v))}" for c, v in (sampling.get("requested_shares") or {}).items())
    made = ", ".join(f"{esc(c)} {finite(v) or 0:.3f}" for c, v in (sampling.get("achieved_shares") or {}).items())
    return (f' <strong class="warn">rebalanced on purpose</strong>: shares requested {asked}; in the table {made} '
            "(each class drawn from the generator conditioned on it)")


_CONTENTS = [
    ("privacy", "Privacy budget"), ("training", "Training"), ("marginals", "Marginals"),
    ("dependence", "Dependence"), ("utility", "Utility"), ("privacy-scores", "Privacy tests"),
    ("bias", "Bias"), ("sites", "Per site"), ("reference", "Reference"), ("notes", "Notes"),
]


def _contents() -> str:
    links = "".join(f'<li><a href="#{a}">{esc(t)}</a></li>' for a, t in _CONTENTS)
    return f'<nav aria-label="Contents"><ol>{links}</ol></nav>'


def _headline(report: Mapping[str, Any]) -> str:
    cards = [_headline_budget(report.get("privacy")), _headline_fidelity(report.get("marginals")),
             _headline_utility(report.get("utility")), _headline_membership(report.get("privacy_scores"))]
    return '<section id="headline" aria-label="Headline">\n<div class="cards">' + "".join(cards) + "</div>\n</section>"


def _card(title: str, body: str) -> str:
    return f'<div class="card"><h3>{esc(title)}</h3>{body}</div>'


def _headline_budget(privacy: Any) -> str:
    data, reason = _available(privacy)
    data = as_mapping(data)
    final, budget = as_mapping(data.get("final")), finite(data.get("budget"))
    if not final:
        return _card("Privacy budget spent", _unavailable("Privacy accounting", reason))
    rows = []
    for site, eps in final.items():
        spent = finite(eps)
        share = f"{spent / budget:.0%}" if spent is not None and budget else "n/a"
        if spent is not None and budget and spent > budget + 1e-9:
            share += ' <strong class="warn">over budget</strong>'
        rows.append(f'<tr><th scope="row">{esc(site)}</th><td class="num">{fmt_eps(eps)}</td><td>{share}</td></tr>')
    return _card("Privacy budget spent",
                 f'<table class="mini"><thead><tr><th>site</th><th class="num">&epsilon;</th>'
                 f'<th>of &epsilon; {fmt_eps(budget)}</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
                 f'<p class="small">{esc(data.get("unit") or "record-level epsilon")}</p>')


def _mean_tvd(marginals: Sequence[Any]) -> tuple[float | None, float | None, int]:
    """Mean TVD over columns that have one; its std if every such column has one (independent noise)."""
    found = [(finite(m.get("tvd")), finite(m.get("tvd_std"))) for m in marginals if isinstance(m, Mapping)]
    pairs = [(t, s) for t, s in found if t is not None]
    if not pairs:
        return None, None, 0
    mean = sum(t for t, _ in pairs) / len(pairs)
    stds = [s for _, s in pairs if s is not None]
    std = math.sqrt(sum(s * s for s in stds)) / len(pairs) if len(stds) == len(pairs) else None
    return mean, std, len(pairs)


def _headline_fidelity(marginals: Any) -> str:
    data, reason = _available(marginals)
    columns = as_list(data)
    mean, std, n = _mean_tvd(columns)
    if mean is None:
        return _card("Fidelity: mean TVD", _unavailable("Mean TVD", reason))
    return _card("Fidelity: mean TVD", f'<p class="big">{fmt(mean, 3, std=std)}</p>'
                 f'<p class="small">over {n} of {len(columns)} columns; 0 = identical marginals, 1 = disjoint</p>')


def _headline_utility(utility: Any) -> str:
    data, reason = _available(utility)
    models = as_mapping(as_mapping(data).get("models"))
    if not models:
        return _card("Utility: TSTR AUC", _unavailable("Utility", reason))
    rows = []
    for name, model in models.items():
        model = as_mapping(model)
        tstr = as_mapping(model.get("tstr"))
        ratio = finite(model.get("ratio_auc"))
        auc = fmt(tstr.get("auc"), std=tstr.get("auc_std"))
        rows.append(f'<tr><th scope="row">{esc(name)}</th><td class="num">{auc}'
                    f'</td><td class="num">{f"{ratio:.0%}" if ratio is not None else na()}</td></tr>')
    return _card("Utility: TSTR AUC",
                 '<table class="mini"><thead><tr><th>model</th><th class="num">AUC</th><th class="num">of real</th>'
                 f'</tr></thead><tbody>{"".join(rows)}</tbody></table>'
                 '<p class="small">train on synthetic, test on real held-out rows; "of real": TSTR/TRTR AUC</p>')


def _headline_membership(scores: Any) -> str:
    data, reason = _available(scores)
    data = as_mapping(data)
    if "membership_auc" not in data:
        return _card("Privacy test: membership AUC", _unavailable("Membership AUC", reason))
    value = fmt(data.get("membership_auc"), std=data.get("membership_auc_std"),
                 reason=data.get("membership_auc_reason"))
    return _card("Privacy test: membership AUC", f'<p class="big">{value}</p>'
                 '<p class="small">0.5 = no membership signal; 1 = every member identified</p>')


# ---- privacy ------------------------------------------------------------------------------------------------


def _round_lines(per_round: Sequence[Any]) -> list[Line]:
    """One line per site from ``[{"round": r, "epsilon": {site: eps}}]``, in order of first appearance."""
    points: dict[str, list[tuple[float, float | None]]] = {}
    for entry in per_round:
        entry = as_mapping(entry)
        x = finite(entry.get("round"))
        if x is None:
            continue
        for site, eps in as_mapping(entry.get("epsilon")).items():
            points.setdefault(str(site), []).append((x, finite(eps)))
    return [Line(site, tuple(sorted(p, key=lambda xy: xy[0]))) for site, p in points.items()]


def _privacy(privacy: Any) -> str:
    data, reason = _available(privacy)
    if not isinstance(data, Mapping):
        return _section("privacy", "Privacy budget", _unavailable("Privacy accounting", reason))
    budget = finite(data.get("budget"))
    lines = _round_lines(as_list(data.get("per_round")))
    parts = [
        "<p>Cumulative privacy loss (&epsilon;, " + esc(data.get("unit") or "record-level epsilon")
        + ") of each site after each round; round 0 is the preprocessing release. Lower is more private; "
        "the dashed line is the budget no site may pass.</p>"
    ]
    if lines:
        chart = line_chart(lines, x_label="round", y_label="cumulative ε",
                            hline=(budget, f"budget ε = {fmt_eps(budget)}") if budget else None)
        parts.append(_figure("fig-epsilon", "Epsilon spent per round, by site", chart))
    else:
        parts.append(_unavailable("Epsilon per round", None))
    parts.append(_privacy_table(data))
    parts.append(_site_level(data.get("site_level")))
    return _section("privacy", "Privacy budget", "\n".join(parts))


def _privacy_table(data: Mapping[str, Any]) -> str:
    final = as_mapping(data.get("final"))
    evaluation = data.get("evaluation")
    spent_eval = as_mapping(as_mapping(evaluation).get("epsilon"))
    fallback = data.get("fallback")
    fb = as_mapping(fallback)
    sites = list(dict.fromkeys([*final, *spent_eval, *fb]))
    rows = [[esc(s), fmt_eps(final.get(s)), fmt_eps(spent_eval.get(s)) if evaluation else na()]
            + ([fmt_eps(fb.get(s))] if fb else []) for s in sites]
    head = ["site", "final ε", "added by the evaluation release"] + (["ε if secure aggregation failed"] if fb else [])
    notes = []
    if isinstance(evaluation, Mapping):
        sigma = finite(evaluation.get("noise_multiplier"))
        notes.append("The evaluation release (the noisy statistics this report is built from) was charged to the "
                     f"same budget, with noise multiplier &sigma; = {fmt_g(sigma)}.")
    else:
        notes.append("No evaluation spend is recorded" + _reason_tail(data.get("evaluation_reason")))
    if fb:
        notes.append("The last column is what each site's guarantee falls back to if secure aggregation "
                     "failed (for example, the server colluded to unmask one update): the noise the site added itself.")
    else:
        notes.append("Fallback: not applicable, no record-level guarantee in this run rests on secure "
                     "aggregation" + _reason_tail(data.get("fallback_reason")))
    table = _table(head, rows, "Privacy loss per site") if rows else _unavailable("Final epsilon", None)
    return table + "".join(f'<p class="small">{n}</p>' for n in notes)


def _reason_tail(reason: Any) -> str:
    return f" ({esc(reason)})." if reason else "."


def _site_level(site_level: Any) -> str:
    data, reason = _available(site_level)
    if not isinstance(data, Mapping):
        why = f": {esc(reason)}" if reason else ": no site-level guarantee in this run."
        return f'<h3>Site-level privacy</h3><p class="unavailable">Not used{why}</p>'
    budget = finite(data.get("budget"))
    points = [(finite(as_mapping(p).get("round")), finite(as_mapping(p).get("epsilon")))
              for p in as_list(data.get("per_round"))]
    line = Line("site-level ε", tuple((x, y) for x, y in points if x is not None))
    intro = (f"<p>Site-level DP protects a whole site's contribution (mode: <strong>{esc(data.get('mode') or 'n/a')}"
             f"</strong>), budget &epsilon; {fmt_eps(budget)}.</p>")
    if not line.points:
        return "<h3>Site-level privacy</h3>" + intro + _unavailable("Site-level epsilon per round", None)
    chart = line_chart([line], x_label="round", y_label="cumulative ε",
                        hline=(budget, f"budget ε = {fmt_eps(budget)}") if budget else None)
    return "<h3>Site-level privacy</h3>" + intro + _figure("fig-site-level", "Site-level epsilon per round", chart)


# ---- training, marginals, dependence ---------------------------------------------------------------------------


def _training(training: Any) -> str:
    data, reason = _available(training)
    rounds = [as_mapping(r) for r in as_list(as_mapping(data).get("loss"))]
    if not rounds:
        return _section("training", "Training", _unavailable("Training loss", reason))
    consortium = Line("consortium", tuple((x, finite(r.get("loss"))) for r in rounds
                                          if (x := finite(r.get("round"))) is not None), width=2.5, colour="#222222")
    per_site = _round_lines([{"round": r.get("round"), "epsilon": r.get("per_site")} for r in rounds])
    chart = line_chart([consortium, *per_site], x_label="round", y_label="loss", from_zero=False)
    body = ("<p>Training loss after each round: the consortium's (thick black line) and each site's own. A "
            "falling, flattening curve means training converged; the losses are computed on noisy batches, so "
            "small wiggles are expected.</p>" + _figure("fig-loss", "Training loss per round", chart)
            + _note(as_mapping(data).get("note")))
    return _section("training", "Training", body)


def _marginals(marginals: Any) -> str:
    data, reason = _available(marginals)
    columns = [as_mapping(m) for m in as_list(data)]
    if not columns:
        return _section("marginals", "Marginals: one column at a time", _unavailable("Marginals", reason))
    charts = [_marginal(i, m) for i, m in enumerate(columns)]
    sources = sorted({str(m["source"]) for m in columns if m.get("source")})
    body = ("<p>Share of rows in each category or bin, real (solid bars, with &plusmn;1 std error bars: the real "
            "shares are noisy DP estimates) against synthetic (hatched bars). TVD, the total variation distance, "
            "is half the summed absolute difference: 0 means identical, 1 disjoint. For numeric columns, KS is the "
            "largest gap between the cumulative shares and Wasserstein the average shift (see docs/REPORT.md for "
            "its scale).</p>"
            + f'<div class="grid">{"".join(charts)}</div>' + "".join(_source(s) for s in sources))
    return _section("marginals", "Marginals: one column at a time", body)


def _marginal(index: int, column: Mapping[str, Any]) -> str:
    name = str(column.get("column") or f"column {index + 1}")
    tvd = plain(column.get("tvd"), column.get("tvd_std"))
    title = f"{name}: TVD {tvd}"
    labels = [str(x) for x in as_list(column.get("labels"))]
    real, synthetic = as_list(column.get("real")), as_list(column.get("synthetic"))
    extras = [f"{k} {plain(column.get(key))}" for k, key in (("KS", "ks"), ("Wasserstein", "wasserstein"))
              if finite(column.get(key)) is not None]
    caption = esc(title) + (f" ({esc(', '.join(extras))})" if extras else "")
    if column.get("tvd_reason") and finite(column.get("tvd")) is None:
        caption += f'<br><span class="reason">{esc(column["tvd_reason"])}</span>'
    fig_id = f"fig-marginal-{index}"
    if not labels or not (any(finite(v) is not None for v in real + synthetic)):
        return f'<div class="fig-missing" id="{fig_id}"><p class="figtitle">{caption}</p>{na()}</div>'
    bars = [Bars(_REAL, tuple(map(finite, real)), tuple(map(finite, as_list(column.get("real_std")))), "real"),
            Bars(_SYNTHETIC, tuple(map(finite, synthetic)), (), "synthetic")]
    chart = bar_chart(labels, bars, y_label="share of rows", percent=True, width=400)
    return _figure(fig_id, caption, chart, small=True, caption_is_html=True)


def _dependence(dependence: Any) -> str:
    data, reason = _available(dependence)
    data = as_mapping(data)
    columns = [str(c) for c in as_list(data.get("columns"))]
    diff = [as_list(row) for row in as_list(data.get("difference"))]
    if not columns or len(diff) != len(columns):
        return _section("dependence", "Dependence between columns", _unavailable("Dependence", reason))
    std = [as_list(row) for row in as_list(data.get("std"))] if data.get("std") else []
    noisy = sum(1 for i, row in enumerate(std) for j, s in enumerate(row) if i < j and (finite(s) or 0) > NOISY_STD)
    # A report may give signed differences (synthetic - real) or their absolute values; only the first tell
    # stronger from weaker, so the wording and colour scale follow what the numbers allow.
    signed = any((finite(v) or 0.0) < 0 for row in diff for v in row)
    measure = f"<strong>{esc(data.get('measure') or 'n/a')}</strong>"
    reading = ("Each cell is the synthetic minus the real value of " + measure + " for a pair of columns: near 0 "
               "(white) means the synthetic table keeps that relationship; red means it is stronger in the "
               "synthetic data, blue weaker." if signed else
               "Each cell is how far the synthetic value of " + measure + " for a pair of columns lies from the "
               "real one: near 0 (white) means the synthetic table keeps that relationship; the redder, the "
               "further apart.")
    title = "Dependence difference (synthetic − real)" if signed else "Dependence difference |synthetic − real|"
    body = (f"<p>{reading} The printed number is the difference. Hatched cells are noisy: the real value's noise "
            f"std exceeds {NOISY_STD:g}, so a difference there may be noise alone.</p>"
            + _figure("fig-dependence", title, heatmap(columns, diff, std, signed=signed))
            + f'<p class="small">{noisy} of {len(columns) * (len(columns) - 1) // 2} pairs are noisy; '
            "grey cells are n/a (not released or undefined).</p>" + _source(data.get("source")))
    return _section("dependence", "Dependence between columns", body)


# ---- utility, privacy scores, bias --------------------------------------------------------------------------


def _utility(utility: Any) -> str:
    data, reason = _available(utility)
    data = as_mapping(data)
    models = {str(k): as_mapping(v) for k, v in as_mapping(data.get("models")).items()}
    if not models:
        return _section("utility", "Utility: train on synthetic, test on real", _unavailable("Utility", reason))
    rows = []
    for name, model in models.items():
        tstr, trtr = as_mapping(model.get("tstr")), as_mapping(model.get("trtr"))
        cells = [fmt(tstr.get(k), std=tstr.get(f"{k}_std"), reason=tstr.get(f"{k}_reason"))
                 for k in ("auc", "accuracy", "f1")]
        real = ([fmt(trtr.get(k)) for k in ("auc", "accuracy", "f1")] if trtr
                else [na(model.get("trtr_reason"))] * 3)
        ratio = fmt(model.get("ratio_auc"), 2, reason=model.get("ratio_auc_reason"))
        rows.append([esc(name), *cells, *real, ratio])
    head = ["model", "TSTR AUC", "TSTR accuracy", "TSTR F1", "TRTR AUC", "TRTR accuracy", "TRTR F1", "AUC ratio"]
    positive = data.get("positive_class")
    intro = (f"<p>Models predicting <strong>{esc(data.get('target') or 'n/a')}</strong>"
             + (f" (positive class <strong>{esc(positive)}</strong>)" if positive else "")
             + ", trained on the synthetic table and tested on real rows the generator never saw (TSTR), against "
             "the same model trained on real rows (TRTR). The AUC ratio TSTR/TRTR near 1 means the synthetic "
             "data is as useful as the real data for this task. AUC 0.5 is chance.</p>")
    models_auc = [Bars("TSTR AUC", tuple(finite(as_mapping(m.get("tstr")).get("auc")) for m in models.values()),
                       tuple(finite(as_mapping(m.get("tstr")).get("auc_std")) for m in models.values()), "synthetic"),
                  Bars("TRTR AUC", tuple(finite(as_mapping(m.get("trtr")).get("auc")) for m in models.values()), (),
                       "real")]
    chart = bar_chart(list(models), models_auc, y_label="AUC", y_range=(0.0, 1.0), ref=(0.5, "chance"), width=560)
    body = (intro + _table(head, rows, "Classifier scores (± 1 std of the DP noise)")
            + _figure("fig-utility", "AUC by model: synthetic-trained (TSTR) against real-trained (TRTR)", chart)
            + _source(data.get("source")) + _note(data.get("note")))
    return _section("utility", "Utility: train on synthetic, test on real", body)


_PRIVACY_SCORES = (
    ("membership_auc", "Membership inference AUC", False,
     "How well an attacker who sees the synthetic table tells training rows from held-out rows, by how close "
     "each real row is to a synthetic one. 0.5 means no membership signal (a coin flip); 1 means every member "
     "is identified."),
    ("dcr_train_closer_share", "Closer to training than to holdout", False,
     "Distance to closest record: how often the training rows, rather than held-out rows, are the ones nearer "
     "to the synthetic table. 0.5 means the generator sits no closer to its training data than to unseen "
     "data; well above 0.5 suggests memorisation."),
    ("exact_copy_rate", "Exact copies of training rows", True,
     "How often a row appears verbatim in both the training rows and the synthetic table. Near 0 is expected; "
     "common rows can repeat by chance."),
    ("exact_copy_rate_holdout", "Exact copies of held-out rows (baseline)", True,
     "The same for rows the generator never saw: the rate chance alone gives. Training copies well above it "
     "suggest memorisation."),
)


def _privacy_scores(scores: Any) -> str:
    data, reason = _available(scores)
    if not isinstance(data, Mapping):
        return _section("privacy-scores", "Privacy tests", _unavailable("Privacy tests", reason))
    rows = []
    for key, label, percent, meaning in _PRIVACY_SCORES:
        if key == "exact_copy_rate_holdout" and key not in data:
            continue  # an optional baseline
        value, std = data.get(key), data.get(f"{key}_std")
        shown = fmt(value, 2 if percent else 3, std=std, percent=percent, reason=data.get(f"{key}_reason"))
        rows.append([esc(label), shown, esc(meaning) + _verdict(key, finite(value), finite(std))])
    body = ("<p>Empirical attacks on the synthetic table, run by each site on its own rows. They complement the "
            "&epsilon; guarantee, which bounds <em>every</em> attack; a test that finds nothing shows only that "
            "this test found nothing.</p>"
            + _table(["test", "value", "how to read it"], rows, "Privacy tests (± 1 std of the DP noise)",
                     text_columns=1)
            + _source(data.get("source")) + _note(data.get("note")))
    return _section("privacy-scores", "Privacy tests", body)


def _verdict(key: str, value: float | None, std: float | None) -> str:
    if key.startswith("exact_copy_rate") or value is None:
        return ""
    if std is not None and abs(value - 0.5) <= 2 * std:
        return " <strong>Here: within 2 std of 0.5, no signal beyond the noise.</strong>"
    side = "above" if value > 0.5 else "below"
    return f" <strong>Here: {side} 0.5 by more than the noise; look into it.</strong>"


def _bias(bias: Any) -> str:
    data, reason = _available(bias)
    attributes = [as_mapping(a) for a in as_list(data)]
    if not attributes:
        return _section("bias", "Bias: sensitive groups", _unavailable("Bias", reason))
    parts = ["<p>For each sensitive attribute, the share of rows in each group, real against synthetic, and how "
             "well the TSTR model works for that group. A group that shrinks in the synthetic data, or whose AUC "
             "falls behind, is served worse by it.</p>"]
    for index, attribute in enumerate(attributes):
        name = str(attribute.get("attribute") or f"attribute {index + 1}")
        groups = [as_mapping(g) for g in as_list(attribute.get("groups"))]
        if not groups:
            parts.append(f"<h3>{esc(name)}</h3>" + _unavailable("Groups", None))
            continue
        parts.append(f"<h3>{esc(name)}</h3>" + _bias_table(groups) + _bias_chart(index, name, groups))
    return _section("bias", "Bias: sensitive groups", "\n".join(parts))


def _bias_table(groups: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for g in groups:
        real, synthetic = finite(g.get("real_share")), finite(g.get("synthetic_share"))
        gap = (fmt(synthetic - real, 1, std=g.get("real_share_std"), percent=True, signed=True)
               if real is not None and synthetic is not None else na())
        rows.append([esc(g.get("group")), fmt(real, 1, std=g.get("real_share_std"), percent=True),
                     fmt(synthetic, 1, percent=True), gap,
                     fmt(g.get("tstr_auc"), std=g.get("tstr_auc_std"), reason=g.get("tstr_auc_reason"))])
    head = ["group", "real share", "synthetic share", "synthetic − real (points)", "TSTR AUC"]
    return _table(head, rows, "Representation and utility by group (± 1 std of the DP noise)")


def _bias_chart(index: int, name: str, groups: Sequence[Mapping[str, Any]]) -> str:
    labels = [str(g.get("group")) for g in groups]
    bars = [Bars(_REAL, tuple(finite(g.get("real_share")) for g in groups),
                 tuple(finite(g.get("real_share_std")) for g in groups), "real"),
            Bars(_SYNTHETIC, tuple(finite(g.get("synthetic_share")) for g in groups), (), "synthetic")]
    if all(v is None for b in bars for v in b.values):
        return ""
    chart = bar_chart(labels, bars, y_label="share of rows", percent=True, width=480)
    return _figure(f"fig-bias-{index}", f"Group shares: {name}", chart, small=True)


# ---- per site, reference, notes --------------------------------------------------------------------------


def _sites(sites: Any) -> str:
    data, reason = _available(sites)
    entries = [as_mapping(s) for s in as_list(data)]
    if not entries:
        return _section("sites", "Scores per site", _unavailable("Per-site scores", reason))
    names = list(dict.fromkeys(str(k) for e in entries for k in as_mapping(e.get("scores"))))
    rows = []
    for e in entries:
        scores, stds, reasons = (as_mapping(e.get(k)) for k in ("scores", "stds", "reasons"))
        rows.append([esc(e.get("site")), *(fmt_generic(scores.get(n), stds.get(n), reasons.get(n)) for n in names)])
    charts = []
    for i, name in enumerate(names):
        values = tuple(finite(as_mapping(e.get("scores")).get(name)) for e in entries)
        if all(v is None for v in values):
            continue
        stds_ = tuple(finite(as_mapping(e.get("stds")).get(name)) for e in entries)
        chart = bar_chart([str(e.get("site")) for e in entries], [Bars(name, values, stds_, "real")],
                           y_label=name, width=320, legend=False)
        charts.append(_figure(f"fig-site-{i}", name, chart, small=True))
    body = ("<p>The same scores computed by each site on its own rows (± 1 std of the DP noise). A site far from "
            "the others may hold data the generator does not represent well.</p>"
            + _table(["site", *names], rows, "Scores per site") + f'<div class="grid">{"".join(charts)}</div>')
    return _section("sites", "Scores per site", body)


def _reference(reference: Any) -> str:
    data, reason = _available(reference)
    if not isinstance(data, Mapping):
        why = reason or "no central evaluation against a public reference table in this run"
        return _section("reference", "Reference evaluation", _unavailable("Reference evaluation", why))
    scores, reasons = as_mapping(data.get("scores")), as_mapping(data.get("reasons"))
    rows = [[esc(k), fmt_generic(v, reason=reasons.get(k))] for k, v in scores.items()]
    body = (f"<p><strong>{esc(data.get('title') or 'Reference')}</strong>. Computed centrally on public data, so "
            "without DP noise.</p>" + (_table(["score", "value"], rows) if rows else _unavailable("Scores", None))
            + _source(data.get("source")))
    return _section("reference", "Reference evaluation", body)


def _notes(notes: Any) -> str:
    data, reason = _available(notes)
    items = [str(n) for n in as_list(data)]
    if not items:
        return _section("notes", "Notes", _unavailable("Notes", reason) if reason else "<p>None.</p>")
    return _section("notes", "Notes", "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in items) + "</ul>")


# ---- the page -------------------------------------------------------------------------------------------------

_CSS = """
:root { color-scheme: light; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", "DejaVu Sans", sans-serif;
  color: #1a1a1a; background: #fff; margin: 0 auto; max-width: 1120px; padding: 24px 32px 48px; }
h1 { font-size: 1.8rem; margin: 0 0 .6rem; }
h2 { font-size: 1.35rem; border-bottom: 2px solid #1a1a1a; padding-bottom: .2rem; margin: 2.4rem 0 .6rem; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 .4rem; }
p { max-width: 62rem; }
code { font-family: "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace; font-size: .9em; }
code.hash { font-size: .78rem; word-break: break-all; color: #444; }
dl.run { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1.2rem; margin: 0 0 .8rem; }
dl.run dt { font-weight: 600; color: #444; } dl.run dd { margin: 0; }
nav ol { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .2rem 1.1rem; margin: .4rem 0 0; }
a { color: #0b4f8a; }
.cards { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; margin-top: 1.2rem; }
@media (max-width: 720px) { .cards { grid-template-columns: 1fr; } }
.card { border: 1px solid #aab4be; border-radius: 6px; padding: 10px 14px; background: #f5f8fb; }
table.mini { margin: 0; font-size: .9rem; } table.mini th, table.mini td { padding: .1rem .6rem .1rem 0; }
table.mini thead th { border-bottom: 1px solid #555; font-weight: 600; color: #444; }
.card h3 { margin: 0 0 .4rem; font-size: .95rem; color: #333; }
.big { font-size: 1.6rem; font-weight: 600; margin: .1rem 0; }
.small, .source, .reason { font-size: .85rem; color: #444; }
ul.plain { list-style: none; padding: 0; margin: 0; } ul.plain span { font-weight: 600; margin-right: .4em; }
table { border-collapse: collapse; margin: .6rem 0 1rem; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding-bottom: .3rem; }
th, td { border-bottom: 1px solid #ccc; padding: .3rem .7rem; text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #555; }
.num { text-align: right; }
.v { white-space: nowrap; }
.num .reason { display: block; max-width: 22rem; margin-left: auto; }
.pm { color: #555; }
.na { color: #555; font-style: italic; }
.warn { color: #a00000; }
.unavailable { color: #333; background: #f3f3f3; border-left: 4px solid #999; padding: .4rem .8rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 4px 24px; }
figure { margin: .8rem 0; }
figcaption, .figtitle { font-weight: 600; font-size: .92rem; margin: 0 0 .2rem; }
figcaption .reason, .figtitle .reason { font-weight: normal; }
figure svg { max-width: 100%; height: auto; display: block; }
svg.defs { position: absolute; }
svg text { font-family: inherit; font-size: 11px; fill: #222; }
svg .axis { stroke: #333; stroke-width: 1; } svg .gl { stroke: #e2e2e2; stroke-width: 1; }
svg .err { stroke: #000; stroke-width: 1.2; } svg .ref { stroke: #555; stroke-dasharray: 5 4; }
svg .budget { stroke: #a00000; stroke-width: 2; stroke-dasharray: 8 5; }
svg text.warn { fill: #a00000; font-weight: 600; } svg text.na { fill: #555; font-style: italic; }
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  nav { display: none; }
  h2, h3, figcaption { break-after: avoid; }
  .card, figure, tr, .fig-missing { break-inside: avoid; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""

# Checks that every figure was drawn; the tests read the verdict from the dumped DOM.
_SCRIPT = """
(function () {
  "use strict";
  function drawn(svg) {
    var box = svg.getBoundingClientRect();
    if (!(box.width > 0 && box.height > 0)) { return false; }
    var marks = svg.querySelectorAll(".mark");
    for (var i = 0; i < marks.length; i++) {
      var b = marks[i].getBBox();
      if (b.width > 0 || b.height > 0) { return true; }
    }
    return false;
  }
  function check() {
    var figures = document.querySelectorAll("figure.chart");
    try {
      for (var i = 0; i < figures.length; i++) {
        var svg = figures[i].querySelector("svg");
        if (!svg || !drawn(svg)) { document.body.dataset.rendered = "failed:" + figures[i].id; return; }
      }
      document.body.dataset.rendered = "ok";
    } catch (err) {
      document.body.dataset.rendered = "failed:error " + err;
    }
  }
  if (document.readyState === "complete") { check(); } else { window.addEventListener("load", check); }
})();
"""


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _page(title: str, body: str) -> str:
    # The policy is the offline guarantee: nothing may be fetched, only this exact script and style run.
    csp = (f"default-src 'none'; script-src {_csp_hash(_SCRIPT)}; style-src {_csp_hash(_CSS)}; "
           "img-src data:; base-uri 'none'; form-action 'none'")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{SVG_DEFS}\n<main>\n{body}\n</main>\n"
        f'<footer><p class="small">Format {FORMAT}. Written by fedsynth; this page is self-contained and '
        "loads nothing from the network.</p></footer>\n"
        f"<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )
