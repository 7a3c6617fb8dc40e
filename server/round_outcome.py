"""What one training round looked like from the server: who was asked, who answered, when, and how.

Everything here is what any Flower server observes (which nodes it sampled, when their replies were made,
whether it accepted them) plus the sites' DP reports; no row count or exact metric of a site is in it. The
consortium ledger writes it to ``rounds.json`` each round, and the console turns it into events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DROPPED", "FAILED", "REFUSED", "RoundOutcome", "SiteOutcome", "SiteReport", "UPDATED", "node_name"]

UPDATED = "updated"
REFUSED = "refused"
FAILED = "failed"
DROPPED = "dropped"
# A reason travels to logs and to every console viewer: keep it short (it never holds array contents).
_MAX_REASON = 300


def node_name(node_id: int) -> str:
    """How a node that has not yet said its site name is shown."""
    return f"node-{node_id}"


@dataclass(frozen=True)
class SiteReport:
    """What a site said about its round: all of it either public plan arithmetic or DP-noised."""

    node_id: int
    site: str
    noisy_loss: float
    epsilon_run: float
    epsilon_total: float
    steps: int
    trust: str = "local"


@dataclass(frozen=True)
class SiteOutcome:
    """One sampled node's part in a round."""

    node_id: int
    site: str
    status: str
    # Seconds from the round's start to the reply's creation, clamped to the round; None without a reply.
    reply_seconds: float | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if len(self.reason) > _MAX_REASON:
            object.__setattr__(self, "reason", self.reason[: _MAX_REASON - 1] + "…")


@dataclass(frozen=True)
class RoundOutcome:
    """A finished round: the accepted reports (what the ledger charges) and every sampled node's outcome."""

    round: int
    started_at: float
    finished_at: float
    reports: list[SiteReport] = field(default_factory=list)
    sites: list[SiteOutcome] = field(default_factory=list)

    @property
    def duration_seconds(self) -> float:
        return max(0.0, self.finished_at - self.started_at)
