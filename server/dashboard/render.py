"""One frame of the dashboard: a pure function of the folded state, the time and the connection.

Every string that came from the server (run id, site names, reasons, details) is put in as ``rich.text.Text``,
never as markup: a site named ``[bold red]x[/]`` shows exactly that.
"""

from __future__ import annotations

from datetime import datetime

from rich.console import Group, JustifyMethod, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from server.dashboard.state import DashboardState, SiteRow

__all__ = ["format_ago", "format_duration", "render", "sparkline"]

_SPARKS = "▁▂▃▄▅▆▇█"
# The trend shows this many latest rounds: a wider line would wrap on an ordinary terminal.
_SPARK_POINTS = 60
_EPSILON_BAR = 8
_STATUS_STYLES = {
    "training": "bold cyan", "updated": "green", "idle": "dim", "refused": "yellow", "failed": "bold red",
    "dropped": "red", "finished": "bold green", "stopped": "yellow", "planning": "cyan",
    "preprocessing": "cyan", "sampling": "cyan", "evaluating": "cyan", "publishing": "cyan",
}
_NONE = "—"
# (header, justify, wrap): figures never wrap (a wrapped bar reads as two); names and reasons may.
_COLUMNS: tuple[tuple[str, JustifyMethod, bool], ...] = (
    ("site", "left", True), ("status", "left", False), ("ε spent / cap", "left", False),
    ("last seen", "right", False), ("round time", "right", False), ("rounds", "right", False),
    ("reason", "left", True),
)


def sparkline(values: list[float]) -> str:
    """One block character per value, scaled between the smallest and the largest."""
    points = values[-_SPARK_POINTS:]
    if not points:
        return ""
    low, high = min(points), max(points)
    if high == low:
        return _SPARKS[len(_SPARKS) // 2] * len(points)
    top = len(_SPARKS) - 1
    return "".join(_SPARKS[round((v - low) / (high - low) * top)] for v in points)


def format_duration(seconds: float | None) -> str:
    """``4.2s``, ``1m 05s``, ``2h 03m``, ``3d 04h``; a dash when unknown."""
    if seconds is None:
        return _NONE
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600:02d}h"


def format_ago(moment: datetime | None, now: datetime) -> str:
    """``3s ago``, ``2m 05s ago``; ``just now`` for a moment ahead of ``now`` (clocks differ a little)."""
    if moment is None:
        return "never"
    seconds = (now - moment).total_seconds()
    if seconds < 1:
        return "just now"
    return f"{int(seconds)}s ago" if seconds < 60 else f"{format_duration(seconds)} ago"


def render(state: DashboardState, now: datetime, connection: str) -> RenderableType:
    """The whole frame: header, connection line, sites, loss trend and budgets.

    The connection line comes right under the header: a frame taller than the terminal is cut at the bottom,
    and whether the figures are live matters more than the last lines of the table.
    """
    return Group(_header(state, now), Text(connection, style="dim"), Text(), _sites(state, now), Text(),
                 _loss(state), _budgets(state))


def _styled(words: str) -> Text:
    return Text(words, style=_STATUS_STYLES.get(words, ""))


def _header(state: DashboardState, now: datetime) -> RenderableType:
    title = Text()
    title.append("fedsynth run ", style="bold")
    title.append(state.run_id or "(not started)")
    title.append("  ·  ")
    title.append_text(_styled(state.status))
    if state.detail:
        title.append("  ·  ")
        title.append(state.detail, style="italic")
    planned, done = state.planned_rounds, state.completed_rounds
    progress = Table.grid(padding=(0, 1))
    progress.add_row(
        Text(f"round {done}/{planned or '?'}"),
        ProgressBar(total=float(planned or 1), completed=float(min(done, planned)), width=30),
        Text(f"{100 * done / planned:3.0f}%" if planned else "  ?%"),
        Text(f"training round {state.current_round}" if state.current_round else ""),
    )
    eta = state.eta_seconds
    timing = Text(f"ETA {format_duration(eta) if eta is not None else _NONE}   "
                  f"elapsed {format_duration(state.elapsed_seconds(now))}")
    if state.ended:
        timing.append("   run ended", style="bold")
    if state.manifest_sha256:
        timing.append(f"   manifest sha256 {state.manifest_sha256[:16]}…")
    return Group(title, progress, timing)


def _epsilon_cell(row: SiteRow) -> Text:
    cell = Text()
    for i, (level, fig) in enumerate(row.epsilon_levels()):
        if i:
            cell.append("\n")
        share = min(max(fig.spent / fig.budget, 0.0), 1.0) if fig.budget > 0 else 0.0
        filled = round(share * _EPSILON_BAR)
        over = fig.budget > 0 and fig.spent > fig.budget
        cell.append(f"{level} {fig.spent:.2f}/{fig.budget:.2f} ")
        cell.append("█" * filled, style="red" if over else "green")
        cell.append("░" * (_EPSILON_BAR - filled), style="dim")
    return cell if cell.plain else Text(_NONE)


def _sites(state: DashboardState, now: datetime) -> RenderableType:
    if not state.site_rows:
        return Text("sites: none heard from yet", style="dim")
    table = Table(title=None, expand=False, header_style="bold")
    for name, justify, wrap in _COLUMNS:
        table.add_column(name, justify=justify, no_wrap=not wrap, overflow="fold" if wrap else "ellipsis")
    for row in state.sites:
        table.add_row(Text(row.name), _styled(row.status), _epsilon_cell(row), Text(format_ago(row.last_seen, now)),
                      Text(format_duration(row.reply_seconds)), Text(str(row.rounds_participated)),
                      Text(row.reason))
    return table


def _loss(state: DashboardState) -> Text:
    trend = state.loss_trend
    line = Text()
    line.append("loss (mean noisy, per round) ", style="bold")
    if not trend:
        line.append("no round has accepted an update yet", style="dim")
        return line
    line.append(sparkline(trend), style="cyan")
    line.append(f"  {trend[0]:.4g} → {trend[-1]:.4g}  ({len(trend)} rounds)")
    return line


def _budgets(state: DashboardState) -> Text:
    line = Text()
    line.append("budgets ", style="bold")
    if not state.budgets:
        line.append("not known yet", style="dim")
        return line
    parts = [f"{b.level} ε {b.target_epsilon:g} δ {b.delta:g} ({b.accountant or '?'}, σ {b.noise_multiplier:.3g})"
             for b in state.budgets]
    line.append("  ·  ".join(parts))
    return line
