"""How the consortium report writes its values: numbers, epsilons, counts, dates and escaped text.

A number that is null, NaN or infinite is written "n/a", followed by the reason when there is one. A DP
estimate with a noise std is written ``value ± std``, both rounded to the decimals that show the std to one or
two significant digits. Negative numbers use the minus sign (U+2212), and a zero is never written "-0". Every
string from the report goes through :func:`esc` before it reaches the page.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

__all__ = ["as_list", "as_mapping", "esc", "finite", "fixed", "fmt", "fmt_count", "fmt_date", "fmt_eps", "fmt_g",
           "fmt_generic", "na", "plain", "strip_tags"]


def esc(value: Any) -> str:
    """``value`` as text, escaped for HTML text and quoted attribute values."""
    return html.escape(str(value), quote=True)


def as_mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one (a section or field that is missing or malformed)."""
    return value if isinstance(value, Mapping) else {}


def as_list(value: Any) -> list[Any]:
    """``value`` as a list if it is a list or tuple, else an empty list."""
    return list(value) if isinstance(value, (list, tuple)) else []


def finite(value: Any) -> float | None:
    """A finite number, or None for null, NaN, infinities and anything that is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def na(reason: Any = None) -> str:
    """HTML for a missing value: "n/a", followed by the reason when there is one."""
    text = '<span class="na">n/a</span>'
    return f'{text} <span class="reason">({esc(reason)})</span>' if reason else text


def _decimals(std: float | None, default: int) -> int:
    """Decimals that show the noise std to 2 significant digits if they start 10-34, else to 1 (the Particle
    Data Group's rounding rule), never more than one beyond ``default``."""
    if std is None or std <= 0:
        return default
    exponent = math.floor(math.log10(std))
    leading = std / 10 ** (exponent - 1)  # in [10, 100)
    digits = 2 if leading < 35 else 1
    return int(max(0, min(default + 1, digits - 1 - exponent)))


def fixed(value: float, decimals: int, percent: bool = False) -> str:
    """``value`` to ``decimals`` places (times 100 with "%" if ``percent``), with a true minus sign and no "-0"."""
    scaled = value * 100 if percent else value
    text = f"{scaled:,.{decimals}f}"
    if text.lstrip("-").strip("0.,") == "":  # no "-0.000"
        text = text.lstrip("-")
    return text.replace("-", "\u2212") + ("%" if percent else "")


def fmt(value: Any, decimals: int = 3, *, std: Any = None, percent: bool = False, reason: Any = None,
        signed: bool = False) -> str:
    """HTML for a number: ``0.742 ± 0.011`` with a std, "n/a (reason)" for null; ``signed`` writes a "+"."""
    number, noise = finite(value), finite(std)
    if number is None:
        return na(reason)
    digits = _decimals(noise * 100 if percent and noise else noise, decimals)
    text = fixed(number, digits, percent)
    if signed and number > 0 and text.strip("0.%,") != "":
        text = "+" + text
    if noise is None:
        return text
    return f'<span class="v">{text}<span class="pm">&nbsp;± {fixed(noise, digits, percent)}</span></span>'


def fmt_eps(value: Any, reason: Any = None) -> str:
    """An epsilon: 2 decimals, or 2 significant digits below 0.1; "n/a (reason)" for null."""
    number = finite(value)
    if number is None:
        return na(reason)
    return f"{number:.2f}" if abs(number) >= 0.1 else f"{number:.2g}"


def fmt_generic(value: Any, std: Any = None, reason: Any = None) -> str:
    """A score whose scale the renderer does not know (a share, an AUC, a row count): 3 decimals below 10, 1 below
    100, none above; a std narrows or widens that as usual."""
    number = finite(value)
    decimals = 3 if number is None or abs(number) < 10 else 1 if abs(number) < 100 else 0
    return fmt(value, decimals, std=std, reason=reason)


def fmt_count(value: Any) -> str:
    """A count with thousands separators; "n/a" for null."""
    number = finite(value)
    return na() if number is None else f"{int(number):,}"


def fmt_g(value: Any) -> str:
    """Plain text of a number in ``%g`` form (a delta, a noise multiplier); "n/a" for null."""
    number = finite(value)
    return "n/a" if number is None else f"{number:g}"


def fmt_date(value: Any) -> str:
    """HTML for an ISO timestamp, to the minute and with its zone; other text escaped as it is, "n/a" for none."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return esc(value) if value else na()
    zone = moment.strftime(" %Z") if moment.tzinfo else ""
    return esc(moment.strftime("%Y-%m-%d %H:%M") + zone)


def plain(value: Any, std: Any = None) -> str:
    """Plain text (for SVG titles) of a score with its std."""
    return html.unescape(strip_tags(fmt(value, 3, std=std)))


def strip_tags(text: str) -> str:
    """``text`` without its HTML tags (for the HTML this module writes, whose text holds no ``<`` or ``>``)."""
    out, depth = [], 0
    for ch in text:
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)
