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
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.atomic import atomic_write_text
from shared.errors import FedsynthError

__all__ = ["FORMAT", "render_html", "write_html"]

FORMAT = "fedsynth-report/1"
# A dependence estimate whose noise std exceeds this is hatched and called noisy.
NOISY_STD = 0.1
_REAL, _SYNTHETIC = "real (DP estimate)", "synthetic"


def render_html(report: Mapping[str, Any]) -> str:
    """The report as a complete HTML document (a string); raises FedsynthError on another format."""
    if not isinstance(report, Mapping) or report.get("format") != FORMAT:
        found = report.get("format") if isinstance(report, Mapping) else type(report).__name__
        raise FedsynthError(
            f"report: expected format {FORMAT!r}, found {found!r}; render it with the fedsynth version that wrote it"
        )
    run = _mapping(report.get("run"))
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


# ---- formatting -------------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else []


def _num(value: Any) -> float | None:
    """A finite number, or None for null, NaN, infinities and anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _available(value: Any) -> tuple[Any, str | None]:
    """The section's data, or None and the reason the report gives for its absence."""
    if isinstance(value, Mapping) and "unavailable" in value:
        reason = value["unavailable"]
        return None, str(reason) if reason else None
    return value, None


def _na(reason: Any = None) -> str:
    text = '<span class="na">n/a</span>'
    return f'{text} <span class="reason">({_e(reason)})</span>' if reason else text


def _decimals(std: float | None, default: int) -> int:
    """Decimals that show the noise std to 2 significant digits if they start 10-34, else to 1 (the Particle
    Data Group's rounding rule), never more than one beyond ``default``."""
    if std is None or std <= 0:
        return default
    exponent = math.floor(math.log10(std))
    leading = std / 10 ** (exponent - 1)  # in [10, 100)
    digits = 2 if leading < 35 else 1
    return int(max(0, min(default + 1, digits - 1 - exponent)))


def _fixed(value: float, decimals: int, percent: bool = False) -> str:
    scaled = value * 100 if percent else value
    text = f"{scaled:,.{decimals}f}"
    if text.lstrip("-").strip("0.,") == "":  # no "-0.000"
        text = text.lstrip("-")
    return text.replace("-", "\u2212") + ("%" if percent else "")


def _fmt(value: Any, decimals: int = 3, *, std: Any = None, percent: bool = False, reason: Any = None,
        signed: bool = False) -> str:
    """HTML for a number: ``0.742 ± 0.011`` with a std, "n/a (reason)" for null; ``signed`` writes a "+"."""
    number, noise = _num(value), _num(std)
    if number is None:
        return _na(reason)
    digits = _decimals(noise * 100 if percent and noise else noise, decimals)
    text = _fixed(number, digits, percent)
    if signed and number > 0 and text.strip("0.%,") != "":
        text = "+" + text
    if noise is None:
        return text
    return f'<span class="v">{text}<span class="pm">&nbsp;± {_fixed(noise, digits, percent)}</span></span>'


def _fmt_eps(value: Any, reason: Any = None) -> str:
    number = _num(value)
    if number is None:
        return _na(reason)
    return f"{number:.2f}" if abs(number) >= 0.1 else f"{number:.2g}"


def _generic(value: Any, std: Any = None, reason: Any = None) -> str:
    """A score whose scale the renderer does not know (a share, an AUC, a row count): 3 decimals below 10, 1 below
    100, none above; a std narrows or widens that as usual."""
    number = _num(value)
    decimals = 3 if number is None or abs(number) < 10 else 1 if abs(number) < 100 else 0
    return _fmt(value, decimals, std=std, reason=reason)


def _count(value: Any) -> str:
    number = _num(value)
    return _na() if number is None else f"{int(number):,}"


def _unavailable(what: str, reason: str | None) -> str:
    tail = f": {_e(reason)}" if reason else "."
    return f'<p class="unavailable"><strong>{_e(what)} not available</strong>{tail}</p>'


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}">\n<h2>{_e(title)}</h2>\n{body}\n</section>'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "", text_columns: int = 0) -> str:
    """A table whose first column names the row; ``head`` and ``caption`` are plain text, cells HTML already.

    The last ``text_columns`` columns hold prose; the others numbers (right-aligned).
    """
    numeric = range(1, len(head) - text_columns)
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    ths = "".join(f'<th scope="col"{_num_class(i, numeric)}>{_e(h)}</th>' for i, h in enumerate(head))
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
    return f'<p class="source">Source: {_e(value)}</p>' if value else ""


def _note(value: Any) -> str:
    return f'<p class="note">{_e(value)}</p>' if value else ""


# ---- header and headline ------------------------------------------------------------------------------------


def _date(value: Any) -> str:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return _e(value) if value else _na()
    zone = moment.strftime(" %Z") if moment.tzinfo else ""
    return _e(moment.strftime("%Y-%m-%d %H:%M") + zone)


def _header(run: Mapping[str, Any]) -> str:
    sites = [str(s) for s in _list(run.get("sites"))]
    planned, done = _num(run.get("rounds_planned")), _num(run.get("rounds_completed"))
    rounds = f"{_count(done)} of {_count(planned)} planned"
    if done is not None and planned is not None and done < planned:
        rounds += ' <strong class="warn">(stopped early)</strong>'
    signed = run.get("signed")
    sign = (
        f'yes, manifest SHA-256 <code class="hash">{_e(run.get("manifest_sha256") or "n/a")}</code>' if signed
        else '<strong class="warn">no: these figures cannot be checked against a signed manifest</strong>'
    )
    schema_hash = run.get("schema_hash")
    items = [
        ("Run", f"<code>{_e(run.get('run_id') or 'n/a')}</code>"),
        ("Created", _date(run.get("created"))),
        ("Generator", _e(run.get("generator") or "n/a")),
        (f"Sites ({len(sites)})", _e(", ".join(sites)) if sites else _na()),
        ("Rounds", rounds),
        ("Synthetic rows", _count(run.get("synthetic_rows"))),
        ("Schema", _e(run.get("schema") or "n/a")
         + (f' <code class="hash">{_e(schema_hash)}</code>' if schema_hash else "")),
        ("Privacy accounting", f"{_e(run.get('accountant') or 'n/a')} accountant, "
         f"target &epsilon; {_fmt_eps(run.get('target_epsilon'))}, &delta; {_e(_g(run.get('delta')))}"),
        ("Target column", _e(run.get("target_column") or "none")),
        ("Sensitive columns", _e(", ".join(map(str, _list(run.get("sensitive_columns")))) or "none")),
        ("Signed", sign),
    ]
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items)
    return f'<header>\n<h1>Synthetic data report</h1>\n<dl class="run">{rows}</dl>\n{_contents()}\n</header>'


def _g(value: Any) -> str:
    number = _num(value)
    return "n/a" if number is None else f"{number:g}"


_CONTENTS = [
    ("privacy", "Privacy budget"), ("training", "Training"), ("marginals", "Marginals"),
    ("dependence", "Dependence"), ("utility", "Utility"), ("privacy-scores", "Privacy tests"),
    ("bias", "Bias"), ("sites", "Per site"), ("reference", "Reference"), ("notes", "Notes"),
]


def _contents() -> str:
    links = "".join(f'<li><a href="#{a}">{_e(t)}</a></li>' for a, t in _CONTENTS)
    return f'<nav aria-label="Contents"><ol>{links}</ol></nav>'


def _headline(report: Mapping[str, Any]) -> str:
    cards = [_headline_budget(report.get("privacy")), _headline_fidelity(report.get("marginals")),
             _headline_utility(report.get("utility")), _headline_membership(report.get("privacy_scores"))]
    return '<section id="headline" aria-label="Headline">\n<div class="cards">' + "".join(cards) + "</div>\n</section>"


def _card(title: str, body: str) -> str:
    return f'<div class="card"><h3>{_e(title)}</h3>{body}</div>'


def _headline_budget(privacy: Any) -> str:
    data, reason = _available(privacy)
    data = _mapping(data)
    final, budget = _mapping(data.get("final")), _num(data.get("budget"))
    if not final:
        return _card("Privacy budget spent", _unavailable("Privacy accounting", reason))
    rows = []
    for site, eps in final.items():
        spent = _num(eps)
        share = f"{spent / budget:.0%}" if spent is not None and budget else "n/a"
        if spent is not None and budget and spent > budget + 1e-9:
            share += ' <strong class="warn">over budget</strong>'
        rows.append(f'<tr><th scope="row">{_e(site)}</th><td class="num">{_fmt_eps(eps)}</td><td>{share}</td></tr>')
    return _card("Privacy budget spent",
                 f'<table class="mini"><thead><tr><th>site</th><th class="num">&epsilon;</th>'
                 f'<th>of &epsilon; {_fmt_eps(budget)}</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
                 f'<p class="small">{_e(data.get("unit") or "record-level epsilon")}</p>')


def _mean_tvd(marginals: Sequence[Any]) -> tuple[float | None, float | None, int]:
    """Mean TVD over columns that have one; its std if every such column has one (independent noise)."""
    found = [(_num(m.get("tvd")), _num(m.get("tvd_std"))) for m in marginals if isinstance(m, Mapping)]
    pairs = [(t, s) for t, s in found if t is not None]
    if not pairs:
        return None, None, 0
    mean = sum(t for t, _ in pairs) / len(pairs)
    stds = [s for _, s in pairs if s is not None]
    std = math.sqrt(sum(s * s for s in stds)) / len(pairs) if len(stds) == len(pairs) else None
    return mean, std, len(pairs)


def _headline_fidelity(marginals: Any) -> str:
    data, reason = _available(marginals)
    columns = _list(data)
    mean, std, n = _mean_tvd(columns)
    if mean is None:
        return _card("Fidelity: mean TVD", _unavailable("Mean TVD", reason))
    return _card("Fidelity: mean TVD", f'<p class="big">{_fmt(mean, 3, std=std)}</p>'
                 f'<p class="small">over {n} of {len(columns)} columns; 0 = identical marginals, 1 = disjoint</p>')


def _headline_utility(utility: Any) -> str:
    data, reason = _available(utility)
    models = _mapping(_mapping(data).get("models"))
    if not models:
        return _card("Utility: TSTR AUC", _unavailable("Utility", reason))
    rows = []
    for name, model in models.items():
        model = _mapping(model)
        tstr = _mapping(model.get("tstr"))
        ratio = _num(model.get("ratio_auc"))
        auc = _fmt(tstr.get("auc"), std=tstr.get("auc_std"))
        rows.append(f'<tr><th scope="row">{_e(name)}</th><td class="num">{auc}'
                    f'</td><td class="num">{f"{ratio:.0%}" if ratio is not None else _na()}</td></tr>')
    return _card("Utility: TSTR AUC",
                 '<table class="mini"><thead><tr><th>model</th><th class="num">AUC</th><th class="num">of real</th>'
                 f'</tr></thead><tbody>{"".join(rows)}</tbody></table>'
                 '<p class="small">train on synthetic, test on real held-out rows; "of real": TSTR/TRTR AUC</p>')


def _headline_membership(scores: Any) -> str:
    data, reason = _available(scores)
    data = _mapping(data)
    if "membership_auc" not in data:
        return _card("Privacy test: membership AUC", _unavailable("Membership AUC", reason))
    value = _fmt(data.get("membership_auc"), std=data.get("membership_auc_std"),
                 reason=data.get("membership_auc_reason"))
    return _card("Privacy test: membership AUC", f'<p class="big">{value}</p>'
                 '<p class="small">0.5 = no membership signal; 1 = every member identified</p>')


# ---- privacy ------------------------------------------------------------------------------------------------


def _round_lines(per_round: Sequence[Any]) -> list[Line]:
    """One line per site from ``[{"round": r, "epsilon": {site: eps}}]``, in order of first appearance."""
    points: dict[str, list[tuple[float, float | None]]] = {}
    for entry in per_round:
        entry = _mapping(entry)
        x = _num(entry.get("round"))
        if x is None:
            continue
        for site, eps in _mapping(entry.get("epsilon")).items():
            points.setdefault(str(site), []).append((x, _num(eps)))
    return [Line(site, tuple(sorted(p, key=lambda xy: xy[0]))) for site, p in points.items()]


def _privacy(privacy: Any) -> str:
    data, reason = _available(privacy)
    if not isinstance(data, Mapping):
        return _section("privacy", "Privacy budget", _unavailable("Privacy accounting", reason))
    budget = _num(data.get("budget"))
    lines = _round_lines(_list(data.get("per_round")))
    parts = [
        "<p>Cumulative privacy loss (&epsilon;, " + _e(data.get("unit") or "record-level epsilon")
        + ") of each site after each round; round 0 is the preprocessing release. Lower is more private; "
        "the dashed line is the budget no site may pass.</p>"
    ]
    if lines:
        chart = _line_chart(lines, x_label="round", y_label="cumulative ε",
                            hline=(budget, f"budget ε = {_fmt_eps(budget)}") if budget else None)
        parts.append(_figure("fig-epsilon", "Epsilon spent per round, by site", chart))
    else:
        parts.append(_unavailable("Epsilon per round", None))
    parts.append(_privacy_table(data))
    parts.append(_site_level(data.get("site_level")))
    return _section("privacy", "Privacy budget", "\n".join(parts))


def _privacy_table(data: Mapping[str, Any]) -> str:
    final = _mapping(data.get("final"))
    evaluation = data.get("evaluation")
    spent_eval = _mapping(_mapping(evaluation).get("epsilon"))
    fallback = data.get("fallback")
    fb = _mapping(fallback)
    sites = list(dict.fromkeys([*final, *spent_eval, *fb]))
    rows = [[_e(s), _fmt_eps(final.get(s)), _fmt_eps(spent_eval.get(s)) if evaluation else _na()]
            + ([_fmt_eps(fb.get(s))] if fb else []) for s in sites]
    head = ["site", "final ε", "added by the evaluation release"] + (["ε if secure aggregation failed"] if fb else [])
    notes = []
    if isinstance(evaluation, Mapping):
        sigma = _num(evaluation.get("noise_multiplier"))
        notes.append("The evaluation release (the noisy statistics this report is built from) was charged to the "
                     f"same budget, with noise multiplier &sigma; = {_g(sigma)}.")
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
    return f" ({_e(reason)})." if reason else "."


def _site_level(site_level: Any) -> str:
    data, reason = _available(site_level)
    if not isinstance(data, Mapping):
        why = f": {_e(reason)}" if reason else ": no site-level guarantee in this run."
        return f'<h3>Site-level privacy</h3><p class="unavailable">Not used{why}</p>'
    budget = _num(data.get("budget"))
    points = [(_num(_mapping(p).get("round")), _num(_mapping(p).get("epsilon"))) for p in _list(data.get("per_round"))]
    line = Line("site-level ε", tuple((x, y) for x, y in points if x is not None))
    intro = (f"<p>Site-level DP protects a whole site's contribution (mode: <strong>{_e(data.get('mode') or 'n/a')}"
             f"</strong>), budget &epsilon; {_fmt_eps(budget)}.</p>")
    if not line.points:
        return "<h3>Site-level privacy</h3>" + intro + _unavailable("Site-level epsilon per round", None)
    chart = _line_chart([line], x_label="round", y_label="cumulative ε",
                        hline=(budget, f"budget ε = {_fmt_eps(budget)}") if budget else None)
    return "<h3>Site-level privacy</h3>" + intro + _figure("fig-site-level", "Site-level epsilon per round", chart)


# ---- training, marginals, dependence ---------------------------------------------------------------------------


def _training(training: Any) -> str:
    data, reason = _available(training)
    rounds = [_mapping(r) for r in _list(_mapping(data).get("loss"))]
    if not rounds:
        return _section("training", "Training", _unavailable("Training loss", reason))
    consortium = Line("consortium", tuple((x, _num(r.get("loss"))) for r in rounds
                                          if (x := _num(r.get("round"))) is not None), width=2.5, colour="#222222")
    per_site = _round_lines([{"round": r.get("round"), "epsilon": r.get("per_site")} for r in rounds])
    chart = _line_chart([consortium, *per_site], x_label="round", y_label="loss", from_zero=False)
    body = ("<p>Training loss after each round: the consortium's (thick black line) and each site's own. A "
            "falling, flattening curve means training converged; the losses are computed on noisy batches, so "
            "small wiggles are expected.</p>" + _figure("fig-loss", "Training loss per round", chart)
            + _note(_mapping(data).get("note")))
    return _section("training", "Training", body)


def _marginals(marginals: Any) -> str:
    data, reason = _available(marginals)
    columns = [_mapping(m) for m in _list(data)]
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
    tvd = _plain(column.get("tvd"), column.get("tvd_std"))
    title = f"{name}: TVD {tvd}"
    labels = [str(x) for x in _list(column.get("labels"))]
    real, synthetic = _list(column.get("real")), _list(column.get("synthetic"))
    extras = [f"{k} {_plain(column.get(key))}" for k, key in (("KS", "ks"), ("Wasserstein", "wasserstein"))
              if _num(column.get(key)) is not None]
    caption = _e(title) + (f" ({_e(', '.join(extras))})" if extras else "")
    if column.get("tvd_reason") and _num(column.get("tvd")) is None:
        caption += f'<br><span class="reason">{_e(column["tvd_reason"])}</span>'
    fig_id = f"fig-marginal-{index}"
    if not labels or not (any(_num(v) is not None for v in real + synthetic)):
        return f'<div class="fig-missing" id="{fig_id}"><p class="figtitle">{caption}</p>{_na()}</div>'
    bars = [Bars(_REAL, tuple(map(_num, real)), tuple(map(_num, _list(column.get("real_std")))), "real"),
            Bars(_SYNTHETIC, tuple(map(_num, synthetic)), (), "synthetic")]
    chart = _bar_chart(labels, bars, y_label="share of rows", percent=True, width=400)
    return _figure(fig_id, caption, chart, small=True, caption_is_html=True)


def _plain(value: Any, std: Any = None) -> str:
    """Plain text (for SVG titles) of a score with its std."""
    return html.unescape(_strip_tags(_fmt(value, 3, std=std)))


def _strip_tags(text: str) -> str:
    out, depth = [], 0
    for ch in text:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _dependence(dependence: Any) -> str:
    data, reason = _available(dependence)
    data = _mapping(data)
    columns = [str(c) for c in _list(data.get("columns"))]
    diff = [_list(row) for row in _list(data.get("difference"))]
    if not columns or len(diff) != len(columns):
        return _section("dependence", "Dependence between columns", _unavailable("Dependence", reason))
    std = [_list(row) for row in _list(data.get("std"))] if data.get("std") else []
    noisy = sum(1 for i, row in enumerate(std) for j, s in enumerate(row) if i < j and (_num(s) or 0) > NOISY_STD)
    # A report may give signed differences (synthetic - real) or their absolute values; only the first tell
    # stronger from weaker, so the wording and colour scale follow what the numbers allow.
    signed = any((_num(v) or 0.0) < 0 for row in diff for v in row)
    measure = f"<strong>{_e(data.get('measure') or 'n/a')}</strong>"
    reading = ("Each cell is the synthetic minus the real value of " + measure + " for a pair of columns: near 0 "
               "(white) means the synthetic table keeps that relationship; red means it is stronger in the "
               "synthetic data, blue weaker." if signed else
               "Each cell is how far the synthetic value of " + measure + " for a pair of columns lies from the "
               "real one: near 0 (white) means the synthetic table keeps that relationship; the redder, the "
               "further apart.")
    title = "Dependence difference (synthetic − real)" if signed else "Dependence difference |synthetic − real|"
    body = (f"<p>{reading} The printed number is the difference. Hatched cells are noisy: the real value's noise "
            f"std exceeds {NOISY_STD:g}, so a difference there may be noise alone.</p>"
            + _figure("fig-dependence", title, _heatmap(columns, diff, std, signed=signed))
            + f'<p class="small">{noisy} of {len(columns) * (len(columns) - 1) // 2} pairs are noisy; '
            "grey cells are n/a (not released or undefined).</p>" + _source(data.get("source")))
    return _section("dependence", "Dependence between columns", body)


# ---- utility, privacy scores, bias --------------------------------------------------------------------------


def _utility(utility: Any) -> str:
    data, reason = _available(utility)
    data = _mapping(data)
    models = {str(k): _mapping(v) for k, v in _mapping(data.get("models")).items()}
    if not models:
        return _section("utility", "Utility: train on synthetic, test on real", _unavailable("Utility", reason))
    rows = []
    for name, model in models.items():
        tstr, trtr = _mapping(model.get("tstr")), _mapping(model.get("trtr"))
        cells = [_fmt(tstr.get(k), std=tstr.get(f"{k}_std"), reason=tstr.get(f"{k}_reason"))
                 for k in ("auc", "accuracy", "f1")]
        real = ([_fmt(trtr.get(k)) for k in ("auc", "accuracy", "f1")] if trtr
                else [_na(model.get("trtr_reason"))] * 3)
        ratio = _fmt(model.get("ratio_auc"), 2, reason=model.get("ratio_auc_reason"))
        rows.append([_e(name), *cells, *real, ratio])
    head = ["model", "TSTR AUC", "TSTR accuracy", "TSTR F1", "TRTR AUC", "TRTR accuracy", "TRTR F1", "AUC ratio"]
    positive = data.get("positive_class")
    intro = (f"<p>Models predicting <strong>{_e(data.get('target') or 'n/a')}</strong>"
             + (f" (positive class <strong>{_e(positive)}</strong>)" if positive else "")
             + ", trained on the synthetic table and tested on real rows the generator never saw (TSTR), against "
             "the same model trained on real rows (TRTR). The AUC ratio TSTR/TRTR near 1 means the synthetic "
             "data is as useful as the real data for this task. AUC 0.5 is chance.</p>")
    models_auc = [Bars("TSTR AUC", tuple(_num(_mapping(m.get("tstr")).get("auc")) for m in models.values()),
                       tuple(_num(_mapping(m.get("tstr")).get("auc_std")) for m in models.values()), "synthetic"),
                  Bars("TRTR AUC", tuple(_num(_mapping(m.get("trtr")).get("auc")) for m in models.values()), (),
                       "real")]
    chart = _bar_chart(list(models), models_auc, y_label="AUC", y_range=(0.0, 1.0), ref=(0.5, "chance"), width=560)
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
        shown = _fmt(value, 2 if percent else 3, std=std, percent=percent, reason=data.get(f"{key}_reason"))
        rows.append([_e(label), shown, _e(meaning) + _verdict(key, _num(value), _num(std))])
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
    attributes = [_mapping(a) for a in _list(data)]
    if not attributes:
        return _section("bias", "Bias: sensitive groups", _unavailable("Bias", reason))
    parts = ["<p>For each sensitive attribute, the share of rows in each group, real against synthetic, and how "
             "well the TSTR model works for that group. A group that shrinks in the synthetic data, or whose AUC "
             "falls behind, is served worse by it.</p>"]
    for index, attribute in enumerate(attributes):
        name = str(attribute.get("attribute") or f"attribute {index + 1}")
        groups = [_mapping(g) for g in _list(attribute.get("groups"))]
        if not groups:
            parts.append(f"<h3>{_e(name)}</h3>" + _unavailable("Groups", None))
            continue
        parts.append(f"<h3>{_e(name)}</h3>" + _bias_table(groups) + _bias_chart(index, name, groups))
    return _section("bias", "Bias: sensitive groups", "\n".join(parts))


def _bias_table(groups: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for g in groups:
        real, synthetic = _num(g.get("real_share")), _num(g.get("synthetic_share"))
        gap = (_fmt(synthetic - real, 1, std=g.get("real_share_std"), percent=True, signed=True)
               if real is not None and synthetic is not None else _na())
        rows.append([_e(g.get("group")), _fmt(real, 1, std=g.get("real_share_std"), percent=True),
                     _fmt(synthetic, 1, percent=True), gap,
                     _fmt(g.get("tstr_auc"), std=g.get("tstr_auc_std"), reason=g.get("tstr_auc_reason"))])
    head = ["group", "real share", "synthetic share", "synthetic − real (points)", "TSTR AUC"]
    return _table(head, rows, "Representation and utility by group (± 1 std of the DP noise)")


def _bias_chart(index: int, name: str, groups: Sequence[Mapping[str, Any]]) -> str:
    labels = [str(g.get("group")) for g in groups]
    bars = [Bars(_REAL, tuple(_num(g.get("real_share")) for g in groups),
                 tuple(_num(g.get("real_share_std")) for g in groups), "real"),
            Bars(_SYNTHETIC, tuple(_num(g.get("synthetic_share")) for g in groups), (), "synthetic")]
    if all(v is None for b in bars for v in b.values):
        return ""
    chart = _bar_chart(labels, bars, y_label="share of rows", percent=True, width=480)
    return _figure(f"fig-bias-{index}", f"Group shares: {name}", chart, small=True)


# ---- per site, reference, notes --------------------------------------------------------------------------


def _sites(sites: Any) -> str:
    data, reason = _available(sites)
    entries = [_mapping(s) for s in _list(data)]
    if not entries:
        return _section("sites", "Scores per site", _unavailable("Per-site scores", reason))
    names = list(dict.fromkeys(str(k) for e in entries for k in _mapping(e.get("scores"))))
    rows = []
    for e in entries:
        scores, stds, reasons = (_mapping(e.get(k)) for k in ("scores", "stds", "reasons"))
        rows.append([_e(e.get("site")), *(_generic(scores.get(n), stds.get(n), reasons.get(n)) for n in names)])
    charts = []
    for i, name in enumerate(names):
        values = tuple(_num(_mapping(e.get("scores")).get(name)) for e in entries)
        if all(v is None for v in values):
            continue
        stds_ = tuple(_num(_mapping(e.get("stds")).get(name)) for e in entries)
        chart = _bar_chart([str(e.get("site")) for e in entries], [Bars(name, values, stds_, "real")],
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
    scores, reasons = _mapping(data.get("scores")), _mapping(data.get("reasons"))
    rows = [[_e(k), _generic(v, reason=reasons.get(k))] for k, v in scores.items()]
    body = (f"<p><strong>{_e(data.get('title') or 'Reference')}</strong>. Computed centrally on public data, so "
            "without DP noise.</p>" + (_table(["score", "value"], rows) if rows else _unavailable("Scores", None))
            + _source(data.get("source")))
    return _section("reference", "Reference evaluation", body)


def _notes(notes: Any) -> str:
    data, reason = _available(notes)
    items = [str(n) for n in _list(data)]
    if not items:
        return _section("notes", "Notes", _unavailable("Notes", reason) if reason else "<p>None.</p>")
    return _section("notes", "Notes", "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in items) + "</ul>")


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

# Shared SVG patterns: hatching tells synthetic bars and noisy cells apart without colour.
_DEFS = (
    '<svg class="defs" width="0" height="0" aria-hidden="true" focusable="false">'
    '<pattern id="pat-synthetic" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f6c89f"/>'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#D55E00" stroke-width="3"/></pattern>'
    '<pattern id="pat-noisy" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#333" stroke-width="1.3" '
    'stroke-opacity="0.7"/></pattern></svg>'
)


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
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{_DEFS}\n<main>\n{body}\n</main>\n"
        f'<footer><p class="small">Format {FORMAT}. Written by fedsynth; this page is self-contained and '
        "loads nothing from the network.</p></footer>\n"
        f"<script>{_SCRIPT}</script>\n</body>\n</html>\n"
    )


# ---- SVG charts (self-contained: they know nothing of the report) --------------------------------------------

# Okabe & Ito's palette (distinguishable with the common colour-vision deficiencies); every series also has
# its own dash pattern and marker, and a legend, so no chart is read by colour alone.
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7F7F7F", "#000000")
_DASHES = ("", "7 3", "2 3", "9 3 2 3", "4 4", "12 4")
_BAR_FILL = {"real": "#0072B2", "synthetic": "url(#pat-synthetic)"}


@dataclass(frozen=True)
class Line:
    """A line-chart series; ``None`` in a point's y leaves a gap."""

    name: str
    points: tuple[tuple[float, float | None], ...]
    width: float = 1.8
    colour: str | None = None


@dataclass(frozen=True)
class Bars:
    """One bar per category, with optional ±std error bars; ``style`` is "real" (solid) or "synthetic" (hatched)."""

    name: str
    values: tuple[float | None, ...]
    stds: tuple[float | None, ...]
    style: str


def _figure(fig_id: str, caption: str, chart: str, *, small: bool = False, caption_is_html: bool = False) -> str:
    text = caption if caption_is_html else _e(caption)
    chart = chart.replace("<svg ", f'<svg role="img" aria-labelledby="{fig_id}-t" ', 1)
    size = " small" if small else ""
    return (f'<figure class="chart{size}" id="{fig_id}"><figcaption id="{fig_id}-t">{text}</figcaption>'
            f"{chart}</figure>")


def _ticks(lo: float, hi: float, count: int = 5, *, integer: bool = False) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1.0, round(step))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def _tick_label(value: float, ticks: Sequence[float], percent: bool = False) -> str:
    step = (ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    scaled, step = (value * 100, step * 100) if percent else (value, step)
    decimals = next(d for d in range(8) if abs(round(step, d) - step) < 1e-9 * max(1.0, step))
    return _fixed(scaled, decimals) + ("%" if percent else "")


def _scale(lo: float, hi: float, out_lo: float, out_hi: float) -> Callable[[float], float]:
    span = (hi - lo) or 1.0
    return lambda v: out_lo + (v - lo) / span * (out_hi - out_lo)


def _svg(width: float, height: float, content: Sequence[str]) -> str:
    return (f'<svg viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" '
            f'height="{height:.0f}">' + "".join(content) + "</svg>")


def _y_axis(ticks: Sequence[float], y: Callable[[float], float], left: float, right: float, label: str,
            percent: bool = False) -> list[str]:
    out = []
    for t in ticks:
        out.append(f'<line class="gl" x1="{left}" x2="{right:.1f}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
                   f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{_tick_label(t, ticks, percent)}</text>')
    top, bottom = y(ticks[-1]), y(ticks[0])
    out.append(f'<line class="axis" x1="{left}" x2="{left}" y1="{top:.1f}" y2="{bottom:.1f}"/>')
    out.append(f'<text transform="translate(14 {(top + bottom) / 2:.1f}) rotate(-90)" text-anchor="middle">'
               f"{_e(label)}</text>")
    return out


def _marker(index: int, x: float, y: float, colour: str, tip: str) -> str:
    """A hollow marker whose shape follows the series, so that coinciding series stay visible."""
    shape = index % 4
    paint = f'fill="#fff" fill-opacity="0.6" stroke="{colour}" stroke-width="1.5"><title>{_e(tip)}</title>'
    if shape == 0:
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" {paint}</circle>'
    if shape == 1:
        return f'<rect x="{x - 4.5:.1f}" y="{y - 4.5:.1f}" width="9" height="9" {paint}</rect>'
    if shape == 2:
        return f'<path d="M{x:.1f} {y - 6:.1f}L{x + 5.5:.1f} {y + 4:.1f}L{x - 5.5:.1f} {y + 4:.1f}Z" {paint}</path>'
    return (f'<path d="M{x:.1f} {y - 6.5:.1f}L{x + 6.5:.1f} {y:.1f}L{x:.1f} {y + 6.5:.1f}L{x - 6.5:.1f} {y:.1f}Z" '
            f"{paint}</path>")



def _line_path(line: Line, x: Callable[[float], float], y: Callable[[float], float]) -> str:
    commands, pen_down = [], False
    for px, py in line.points:
        if py is None:
            pen_down = False
            continue
        commands.append(f"{'L' if pen_down else 'M'}{x(px):.1f} {y(py):.1f}")
        pen_down = True
    return "".join(commands)


def _line_chart(lines: Sequence[Line], *, x_label: str, y_label: str, hline: tuple[float, str] | None = None,
                from_zero: bool = True, width: float = 760, plot_height: float = 250) -> str:
    """Lines over a shared x axis, a legend on the right and an optional horizontal reference (a budget)."""
    xs = [px for line in lines for px, _ in line.points]
    ys = [py for line in lines for _, py in line.points if py is not None] + ([hline[0]] if hline else [])
    x_ticks = _ticks(min(xs), max(xs), 6, integer=all(float(v).is_integer() for v in xs))
    y_ticks = _ticks(min([*ys, 0.0]) if from_zero else min(ys), max(ys))
    left, right, top = 64.0, width - 190, 14.0
    height = max(top + plot_height + 46, top + 22 * (len(lines) + 2))
    bottom = top + plot_height
    x = _scale(x_ticks[0], x_ticks[-1], left, right)
    y = _scale(y_ticks[0], y_ticks[-1], bottom, top)
    out = _y_axis(y_ticks, y, left, right, y_label)
    for t in x_ticks:
        out.append(f'<text x="{x(t):.1f}" y="{bottom + 16:.1f}" text-anchor="middle">{_tick_label(t, x_ticks)}</text>')
    out.append(f'<line class="axis" x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}"/>'
               f'<text x="{(left + right) / 2:.1f}" y="{bottom + 36:.1f}" text-anchor="middle">{_e(x_label)}</text>')
    if hline:
        out.append(f'<line class="mark budget" x1="{left}" x2="{right}" y1="{y(hline[0]):.1f}" y2="{y(hline[0]):.1f}"/>'
                   f'<text class="warn" x="{left + 6}" y="{y(hline[0]) - 6:.1f}">{_e(hline[1])}</text>')
    # Drawn last to first, so that the first series (the consortium's, say) stays on top where lines meet.
    for i in reversed(range(len(lines))):
        out.extend(_series(i, lines[i], x, y, x_label))
    for i, line in enumerate(lines):
        out.append(_legend_entry(i, line, right + 20, top + 8 + 22 * i))
    return _svg(width, height, out)


def _stroke(i: int, line: Line) -> tuple[str, str]:
    """The series' colour and its stroke attributes (width, dash pattern)."""
    colour = line.colour or _PALETTE[i % len(_PALETTE)]
    dash = _DASHES[i % len(_DASHES)]
    return colour, f'stroke="{colour}" stroke-width="{line.width}"' + (f' stroke-dasharray="{dash}"' if dash else "")


def _series(i: int, line: Line, x: Callable[[float], float], y: Callable[[float], float], x_label: str) -> list[str]:
    colour, stroke = _stroke(i, line)
    out = [f'<path class="mark" d="{_line_path(line, x, y)}" fill="none" {stroke}>'
           f"<title>{_e(line.name)}</title></path>"]
    if len(line.points) <= 40:  # beyond that the markers would hide the line
        out.extend(_marker(i, x(px), y(py), colour, f"{line.name}, {x_label} {px:g}: {py:.4g}")
                   for px, py in line.points if py is not None)
    return out


def _legend_entry(i: int, line: Line, lx: float, ly: float) -> str:
    colour, stroke = _stroke(i, line)
    return (f'<line x1="{lx}" x2="{lx + 30}" y1="{ly}" y2="{ly}" {stroke}/>{_marker(i, lx + 15, ly, colour, line.name)}'
            f'<text x="{lx + 38}" y="{ly + 4}">{_e(_short(line.name, 20))}<title>{_e(line.name)}</title></text>')


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _bar_extent(groups: Sequence[Bars], count: int) -> tuple[float, float]:
    lo, hi = 0.0, 0.0
    for group in groups:
        for i, v in enumerate(group.values[:count]):
            if v is None:
                continue
            s = (group.stds[i] if i < len(group.stds) else None) or 0.0
            lo, hi = min(lo, v - s), max(hi, v + s)
    return lo, hi


def _bar_chart(categories: Sequence[str], groups: Sequence[Bars], *, y_label: str, percent: bool = False,
               y_range: tuple[float, float] | None = None, ref: tuple[float, str] | None = None,
               width: float = 400, legend: bool = True) -> str:
    """Grouped bars per category with ±std error bars; a null value is written "n/a" at its place."""
    n, k = len(categories), len(groups)
    width = max(width, 70 + 10 * n * k)
    left, right, top = 56.0, width - 10, 30.0 if legend else 10.0
    bottom = top + 160
    slot = (right - left) / n
    bar = slot * 0.8 / k
    labels, label_height = _x_labels(categories, left, slot, bottom)
    y_ticks = _ticks(*(y_range or _bar_extent(groups, n)))
    y = _scale(y_ticks[0], y_ticks[-1], bottom, top)
    out = _y_axis(y_ticks, y, left, right, y_label, percent)
    if ref:
        out.append(f'<line class="ref" x1="{left}" x2="{right}" y1="{y(ref[0]):.1f}" y2="{y(ref[0]):.1f}"/>'
                   f'<text x="{right - 4}" y="{y(ref[0]) - 4:.1f}" text-anchor="end">{_e(ref[1])}</text>')
    for j, group in enumerate(groups):
        for i in range(n):  # a group with fewer values than categories shows "n/a" for the rest
            value = group.values[i] if i < len(group.values) else None
            bx = left + slot * i + slot * 0.1 + bar * j
            out.append(_bar(group, i, value, bx, bar, y, categories[i], percent))
    zero = y(max(y_ticks[0], min(0.0, y_ticks[-1])))
    out.append(f'<line class="axis" x1="{left}" x2="{right}" y1="{zero:.1f}" y2="{zero:.1f}"/>')
    out.extend(labels)
    if legend:
        out.extend(_bar_legend(groups, left))
    return _svg(width, bottom + label_height, out)


def _x_labels(categories: Sequence[str], left: float, slot: float, bottom: float) -> tuple[list[str], float]:
    """Category labels under their slots, turned 45 degrees when they do not fit; and the height they take."""
    rotate = max(len(c) for c in categories) * 6.5 > slot - 4
    limit = 18 if rotate else len(max(categories, key=len))
    out = []
    for i, category in enumerate(categories):
        cx = left + slot * (i + 0.5)
        label = f"{_e(_short(category, limit))}<title>{_e(category)}</title>"
        if rotate:
            out.append(f'<text transform="translate({cx:.1f} {bottom + 10:.1f}) rotate(-45)" text-anchor="end">'
                       f"{label}</text>")
        else:
            out.append(f'<text x="{cx:.1f}" y="{bottom + 16:.1f}" text-anchor="middle">{label}</text>')
    longest = max(len(_short(c, limit)) for c in categories)
    return out, (14 + 4.8 * longest if rotate else 30)


def _bar(group: Bars, i: int, value: float | None, bx: float, bar: float, y: Callable[[float], float],
         category: str, percent: bool) -> str:
    if value is None:
        return (f'<text class="na" x="{bx + bar / 2:.1f}" y="{y(0) - 4:.1f}" text-anchor="middle" '
                f'font-size="9">n/a</text>')
    std = group.stds[i] if i < len(group.stds) else None
    shown = _plain(value, std) if not percent else html.unescape(_strip_tags(_fmt(value, 1, std=std, percent=True)))
    y0, y1 = sorted((y(0), y(value)))
    out = (f'<rect class="mark" x="{bx:.1f}" y="{y0:.1f}" width="{bar:.1f}" height="{max(y1 - y0, 0.5):.1f}" '
           f'fill="{_BAR_FILL.get(group.style, "#0072B2")}" stroke="#333" stroke-width="0.5">'
           f"<title>{_e(category)}, {_e(group.name)}: {_e(shown)}</title></rect>")
    if std:
        cx, hi, lo = bx + bar / 2, y(value + std), y(value - std)
        cap = min(bar / 3, 4)
        out += (f'<path class="err" d="M{cx:.1f} {hi:.1f}V{lo:.1f}M{cx - cap:.1f} {hi:.1f}H{cx + cap:.1f}'
                f'M{cx - cap:.1f} {lo:.1f}H{cx + cap:.1f}"/>')
    return out


def _bar_legend(groups: Sequence[Bars], left: float) -> list[str]:
    out, x = [], left
    for group in groups:
        out.append(f'<rect x="{x:.0f}" y="6" width="14" height="12" fill="{_BAR_FILL.get(group.style, "#0072B2")}" '
                   f'stroke="#333" stroke-width="0.5"/><text x="{x + 19:.0f}" y="16">{_e(group.name)}</text>')
        x += 30 + 6.3 * len(group.name)
    if any(s for g in groups for s in g.stds):
        out.append(f'<path class="err" d="M{x + 4:.0f} 6V18M{x + 1:.0f} 6H{x + 7:.0f}M{x + 1:.0f} 18H{x + 7:.0f}"/>'
                   f'<text x="{x + 13:.0f}" y="16">± 1 std</text>')
    return out


def _diverging(t: float) -> str:
    """Blue (-1) through near-white (0) to red (+1), ColorBrewer RdBu ends."""
    t = max(-1.0, min(1.0, t))
    end = (33, 102, 172) if t < 0 else (178, 24, 43)
    mid = (247, 247, 247)
    r, g, b = (round(m + abs(t) * (e - m)) for m, e in zip(mid, end))
    return f"#{r:02x}{g:02x}{b:02x}"


def _heatmap(columns: Sequence[str], values: Sequence[Sequence[Any]], stds: Sequence[Sequence[Any]], *,
             signed: bool) -> str:
    """A columns × columns grid coloured by value (on a symmetric scale if ``signed``); cells whose std exceeds
    NOISY_STD are hatched."""
    n = len(columns)
    cell = max(12.0, min(44.0, 640.0 / n))
    label = 8 + 6.3 * max(len(_short(c, 22)) for c in columns)
    left, top = label + 8, label * 0.72 + 12
    cells = [[_num(row[j]) if j < len(row) else None for j in range(n)] for row in values]
    extent = max([abs(v) for row in cells for v in row if v is not None] or [0.05])
    limit = _ticks(0.0, extent, 2)[-1]
    out = []
    for i, name in enumerate(columns):
        cy, cx = top + cell * (i + 0.5), left + cell * (i + 0.5)
        out.append(f'<text x="{left - 6:.1f}" y="{cy + 4:.1f}" text-anchor="end">{_e(_short(name, 22))}'
                   f"<title>{_e(name)}</title></text>"
                   f'<text transform="translate({cx + 3:.1f} {top - 6:.1f}) rotate(-45)">{_e(_short(name, 22))}'
                   f"<title>{_e(name)}</title></text>")
        for j in range(n):
            std = _num(stds[i][j]) if i < len(stds) and j < len(stds[i]) else None
            out.append(_cell(left + cell * j, top + cell * i, cell, cells[i][j], std, limit,
                             f"{columns[i]} × {columns[j]}", signed))
    bottom = top + cell * n
    out.extend(_heat_legend(left, bottom + 24, limit, signed))
    width = left + cell * n + label * 0.72 + 10
    return _svg(max(width, left + 520), bottom + 80, out)


def _cell(x: float, y: float, size: float, value: float | None, std: float | None, limit: float, pair: str,
          signed: bool) -> str:
    if value is None:
        return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{size:.1f}" height="{size:.1f}" fill="#e8e8e8" '
                f'stroke="#fff"><title>{_e(pair)}: n/a</title></rect>')
    noisy = std is not None and std > NOISY_STD
    spread = f" ± {std:.2f}" if std is not None else ""
    text = _signed(value) if signed else _fixed(value, 2)
    tip = f"{pair}: {text}{spread}" + (" (noisy)" if noisy else "")
    out = (f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{size:.1f}" height="{size:.1f}" '
           f'fill="{_diverging(value / limit)}" stroke="#fff"><title>{_e(tip)}</title></rect>')
    if noisy:
        out += (f'<rect x="{x:.1f}" y="{y:.1f}" width="{size:.1f}" height="{size:.1f}" fill="url(#pat-noisy)">'
                f"<title>{_e(tip)}</title></rect>")
    if size >= 30:
        ink = "#fff" if abs(value / limit) > 0.55 else "#222"
        out += (f'<text x="{x + size / 2:.1f}" y="{y + size / 2 + 4:.1f}" text-anchor="middle" font-size="10" '
                f'fill="{ink}">{text}</text>')
    return out


def _signed(value: float) -> str:
    text = _fixed(value, 2)
    return text if text.startswith("\u2212") or text == "0.00" else "+" + text


def _heat_legend(x: float, y: float, limit: float, signed: bool) -> list[str]:
    steps, width = 40, 260.0
    low = -1.0 if signed else 0.0
    out = [f'<text x="{x:.1f}" y="{y - 6:.1f}">{"synthetic − real" if signed else "|synthetic − real|"}</text>']
    for k in range(steps):
        t = low + (1 - low) * (k + 0.5) / steps
        out.append(f'<rect x="{x + width * k / steps:.1f}" y="{y:.1f}" width="{width / steps + 0.4:.1f}" height="12" '
                   f'fill="{_diverging(t)}"/>')
    ticks = (((0.0, f"−{limit:g} weaker", "start"), (0.5, "0", "middle"), (1.0, f"+{limit:g} stronger", "end"))
             if signed else ((0.0, "0 same", "start"), (1.0, f"{limit:g} further apart", "end")))
    for at, text, anchor in ticks:
        out.append(f'<text x="{x + width * at:.1f}" y="{y + 26:.1f}" text-anchor="{anchor}">{text}</text>')
    nx = x + width + 24
    out.append(f'<rect x="{nx:.1f}" y="{y:.1f}" width="14" height="12" fill="#f7f7f7" stroke="#999"/>'
               f'<rect x="{nx:.1f}" y="{y:.1f}" width="14" height="12" fill="url(#pat-noisy)"/>'
               f'<text x="{nx + 20:.1f}" y="{y + 10:.1f}">noisy (std &gt; {NOISY_STD:g})</text>'
               f'<rect x="{nx + 130:.1f}" y="{y:.1f}" width="14" height="12" fill="#e8e8e8" stroke="#999"/>'
               f'<text x="{nx + 150:.1f}" y="{y + 10:.1f}">n/a</text>')
    return out
