"""A site's own budget rule: refuse a round that would take its record-level epsilon past its cap."""

from __future__ import annotations

from client.site import SiteConfig
from shared.accounting import History, epsilon
from shared.errors import BudgetExceededError
from shared.ledger import Ledger
from shared.plan import TrainingPlan


def check_budget(ledger: Ledger, site: SiteConfig, plan: TrainingPlan, releases: History | None = None) -> float:
    """Return the epsilon the site would have after this round, or raise if that crosses its cap.

    The projection composes the site's whole history (all runs) with the round's releases, using the plan's
    accountant and delta, so it is the very number the ledger will record if the round goes ahead.
    """
    spent = ledger.spent(site.site, "record")
    next_releases = plan.round_releases() if releases is None else releases
    projected = epsilon(ledger.history(site.site, "record") + next_releases, delta=plan.delta, accountant=plan.accountant)
    if projected > site.epsilon_cap:
        raise BudgetExceededError(
            f"site {site.site} refuses: this release would raise its record-level epsilon from "
            f"{spent:.4f} to {projected:.4f} (delta={plan.delta:g}, {plan.accountant}), above its cap of "
            f"{site.epsilon_cap:.4f} (node config max-epsilon). The site's ledger is {site.ledger_path}."
        )
    return projected
