"""The report's figures as inline SVG: line charts, grouped bar charts with error bars, and a heatmap.

The charts know nothing of the report: they take plain series (:class:`Line`, :class:`Bars`) and return an
``<svg>`` element as a string, with every label escaped. No chart is read by colour alone: series differ in
colour, dash pattern and marker, synthetic bars and noisy cells are hatched with the patterns in
:data:`SVG_DEFS` (which the page must include once), and each mark has a ``<title>`` with its value. The
elements that draw data carry ``class="mark"``: the page's self-check script looks for them to tell that a
figure was drawn.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from server.report_format import esc, finite, fixed, fmt, plain, strip_tags

__all__ = ["NOISY_STD", "SVG_DEFS", "Bars", "Line", "bar_chart", "heatmap", "line_chart"]

# A dependence estimate whose noise std exceeds this is hatched and called noisy.
NOISY_STD = 0.1

# Okabe & Ito's palette (distinguishable with the common colour-vision deficiencies); every series also has
# its own dash pattern and marker, and a legend, so no chart is read by colour alone.
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7F7F7F", "#000000")
_DASHES = ("", "7 3", "2 3", "9 3 2 3", "4 4", "12 4")
_BAR_FILL = {"real": "#0072B2", "synthetic": "url(#pat-synthetic)"}

# Shared SVG patterns: hatching tells synthetic bars and noisy cells apart without colour.
SVG_DEFS = (
    '<svg class="defs" width="0" height="0" aria-hidden="true" focusable="false">'
    '<pattern id="pat-synthetic" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f6c89f"/>'
    '<line x1="0" y1="0" x2="0" y2="6" stroke="#D55E00" stroke-width="3"/></pattern>'
    '<pattern id="pat-noisy" width="6" height="6" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#333" stroke-width="1.3" '
    'stroke-opacity="0.7"/></pattern></svg>'
)


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
    return fixed(scaled, decimals) + ("%" if percent else "")


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
               f"{esc(label)}</text>")
    return out


def _marker(index: int, x: float, y: float, colour: str, tip: str) -> str:
    """A hollow marker whose shape follows the series, so that coinciding series stay visible."""
    shape = index % 4
    paint = f'fill="#fff" fill-opacity="0.6" stroke="{colour}" stroke-width="1.5"><title>{esc(tip)}</title>'
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


def line_chart(lines: Sequence[Line], *, x_label: str, y_label: str, hline: tuple[float, str] | None = None,
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
               f'<text x="{(left + right) / 2:.1f}" y="{bottom + 36:.1f}" text-anchor="middle">{esc(x_label)}</text>')
    if hline:
        out.append(f'<line class="mark budget" x1="{left}" x2="{right}" y1="{y(hline[0]):.1f}" y2="{y(hline[0]):.1f}"/>'
                   f'<text class="warn" x="{left + 6}" y="{y(hline[0]) - 6:.1f}">{esc(hline[1])}</text>')
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
           f"<title>{esc(line.name)}</title></path>"]
    if len(line.points) <= 40:  # beyond that the markers would hide the line
        out.extend(_marker(i, x(px), y(py), colour, f"{line.name}, {x_label} {px:g}: {py:.4g}")
                   for px, py in line.points if py is not None)
    return out


def _legend_entry(i: int, line: Line, lx: float, ly: float) -> str:
    colour, stroke = _stroke(i, line)
    return (f'<line x1="{lx}" x2="{lx + 30}" y1="{ly}" y2="{ly}" {stroke}/>{_marker(i, lx + 15, ly, colour, line.name)}'
            f'<text x="{lx + 38}" y="{ly + 4}">{esc(_short(line.name, 20))}<title>{esc(line.name)}</title></text>')


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


def bar_chart(categories: Sequence[str], groups: Sequence[Bars], *, y_label: str, percent: bool = False,
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
                   f'<text x="{right - 4}" y="{y(ref[0]) - 4:.1f}" text-anchor="end">{esc(ref[1])}</text>')
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
        label = f"{esc(_short(category, limit))}<title>{esc(category)}</title>"
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
    shown = plain(value, std) if not percent else html.unescape(strip_tags(fmt(value, 1, std=std, percent=True)))
    y0, y1 = sorted((y(0), y(value)))
    out = (f'<rect class="mark" x="{bx:.1f}" y="{y0:.1f}" width="{bar:.1f}" height="{max(y1 - y0, 0.5):.1f}" '
           f'fill="{_BAR_FILL.get(group.style, "#0072B2")}" stroke="#333" stroke-width="0.5">'
           f"<title>{esc(category)}, {esc(group.name)}: {esc(shown)}</title></rect>")
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
                   f'stroke="#333" stroke-width="0.5"/><text x="{x + 19:.0f}" y="16">{esc(group.name)}</text>')
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


def heatmap(columns: Sequence[str], values: Sequence[Sequence[Any]], stds: Sequence[Sequence[Any]], *,
             signed: bool) -> str:
    """A columns × columns grid coloured by value (on a symmetric scale if ``signed``); cells whose std exceeds
    NOISY_STD are hatched."""
    n = len(columns)
    cell = max(12.0, min(44.0, 640.0 / n))
    label = 8 + 6.3 * max(len(_short(c, 22)) for c in columns)
    left, top = label + 8, label * 0.72 + 12
    cells = [[finite(row[j]) if j < len(row) else None for j in range(n)] for row in values]
    extent = max([abs(v) for row in cells for v in row if v is not None] or [0.05])
    limit = _ticks(0.0, extent, 2)[-1]
    out = []
    for i, name in enumerate(columns):
        cy, cx = top + cell * (i + 0.5), left + cell * (i + 0.5)
        out.append(f'<text x="{left - 6:.1f}" y="{cy + 4:.1f}" text-anchor="end">{esc(_short(name, 22))}'
                   f"<title>{esc(name)}</title></text>"
                   f'<text transform="translate({cx + 3:.1f} {top - 6:.1f}) rotate(-45)">{esc(_short(name, 22))}'
                   f"<title>{esc(name)}</title></text>")
        for j in range(n):
            std = finite(stds[i][j]) if i < len(stds) and j < len(stds[i]) else None
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
                f'stroke="#fff"><title>{esc(pair)}: n/a</title></rect>')
    noisy = std is not None and std > NOISY_STD
    spread = f" ± {std:.2f}" if std is not None else ""
    text = _signed(value) if signed else fixed(value, 2)
    tip = f"{pair}: {text}{spread}" + (" (noisy)" if noisy else "")
    out = (f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{size:.1f}" height="{size:.1f}" '
           f'fill="{_diverging(value / limit)}" stroke="#fff"><title>{esc(tip)}</title></rect>')
    if noisy:
        out += (f'<rect x="{x:.1f}" y="{y:.1f}" width="{size:.1f}" height="{size:.1f}" fill="url(#pat-noisy)">'
                f"<title>{esc(tip)}</title></rect>")
    if size >= 30:
        ink = "#fff" if abs(value / limit) > 0.55 else "#222"
        out += (f'<text x="{x + size / 2:.1f}" y="{y + size / 2 + 4:.1f}" text-anchor="middle" font-size="10" '
                f'fill="{ink}">{text}</text>')
    return out


def _signed(value: float) -> str:
    text = fixed(value, 2)
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
