"""The consortium's privacy ledger: the server's mirror of what every site spent in this run.

The site's own ledger is the authority (it is written before an update leaves the site). The server
recomputes each site's cumulative epsilon from the plan's parameters and the rounds the site actually took
part in, records that, and warns when a site reports a different figure.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

from server.round_outcome import RoundOutcome, SiteReport
from shared.accounting import HistoryEntry, epsilon
from shared.atomic import atomic_write_text
from shared.errors import FedsynthError
from shared.ledger import Ledger, LedgerEntry, Release
from shared.plan import TRUST_LOCAL, TRUST_SECAGG, TrainingPlan

logger = logging.getLogger(__name__)

ROUNDS_FILE = "rounds.json"


class NoSiteTrained(FedsynthError):
    """A round in which no site returned a usable update: the run cannot go on."""


class ConsortiumLedger:
    """Appends one entry per site and round to ``ledger.json`` (atomic, before the round's model is used)."""

    def __init__(
        self, path: Path, plan: TrainingPlan, on_progress: Callable[[dict[str, object]], None] | None = None,
        *, rounds: list[dict[str, object]] | None = None, unconfirmed: dict[str, tuple[int, int]] | None = None,
    ) -> None:
        self.path, self.plan = path, plan
        self.ledger = Ledger.load(path)
        # Per round: who took part and their noisy losses (rounds.json); a resumed run starts with the old ones.
        self.rounds: list[dict[str, object]] = list(rounds or [])
        # Told each round's rounds.json record once it is on disk (the console's round-finished event).
        self.on_progress = on_progress
        # Resumed run: site -> (round, node id) of a round it was sent before the server stopped and that never
        # came back. Whether it trained (and charged its ledger) is settled by what it reports next.
        self.unconfirmed = dict(unconfirmed or {})

    def round_sent(self, server_round: int, sites: dict[str, int]) -> None:
        """Write-ahead, before the round's messages leave: these sites may train (and charge) this round."""
        self._write_rounds(in_flight={"round": server_round, "sites": dict(sorted(sites.items()))})

    def record_round(self, outcome: RoundOutcome) -> None:
        plan, server_round, reports = self.plan, outcome.round, outcome.reports
        main, metric = plan.round_releases()
        extra = tuple(Release(*named) for named in plan.named_round_releases()[1:])
        for report in sorted(reports, key=lambda r: r.site):
            if report.steps != plan.local_steps:
                logger.warning("%s reported %d steps, the plan says %d", report.site, report.steps, plan.local_steps)
            self._record_level(server_round, report, main, metric, extra)
            if plan.site_dp != "off":
                self._site_level(server_round, report.site)
        self._progress(outcome)
        if not reports:
            raise NoSiteTrained(
                f"round {server_round}: no site returned a usable update (see the warnings above); stopping"
            )

    def record_preprocess(self, site: str) -> None:
        """Round 0: the site released its noisy histograms (it charged its own ledger before sending them)."""
        (release,) = self.plan.preprocess_releases()
        self._one_release(site, 0, release)

    def record_evaluation(self, site: str) -> None:
        """After the last round: the site released its noisy evaluation histograms (already charged at the site)."""
        (release,) = self.plan.evaluation_releases()
        self._one_release(site, self.plan.evaluation_round, release)

    def _one_release(self, site: str, server_round: int, release: HistoryEntry) -> None:
        plan = self.plan
        history = self.ledger.history(site, "record") + [release]
        entry = LedgerEntry(
            site=site, round=server_round, level="record", accountant=plan.accountant, noise_multiplier=release[0],
            sample_rate=release[1], steps=release[2], delta=plan.delta,
            epsilon=epsilon(history, delta=plan.delta, accountant=plan.accountant), run_id=plan.run_id,
            **plan.ledger_unit(),
        )
        self.ledger = self.ledger.append(entry)

    def _record_level(
        self, server_round: int, report: SiteReport, main: HistoryEntry, metric: HistoryEntry,
        extra: tuple[Release, ...],
    ) -> None:
        """The mirror of the site's own entry; with shared noise the site alone added sigma/sqrt(t)."""
        self._settle_lost_round(report, main, metric, extra)
        eps = self._append_record(report.site, server_round, report.trust, main, extra)
        if not math.isclose(eps, report.epsilon_run, rel_tol=1e-6, abs_tol=1e-9):
            logger.warning(
                "%s reports epsilon %.6f for this run, the server computes %.6f; the site's ledger is the "
                "authority, check it with 'fedsynth ledger verify'", report.site, report.epsilon_run, eps,
            )

    def _append_record(
        self, site: str, server_round: int, trust: str, main: HistoryEntry, extra: tuple[Release, ...]
    ) -> float:
        plan = self.plan
        fallback = plan.record_noise_share(True) if trust == TRUST_SECAGG else None
        history = self.ledger.history(site, "record") + [main, *(r.as_history_entry() for r in extra)]
        eps = epsilon(history, delta=plan.delta, accountant=plan.accountant)
        entry = LedgerEntry(
            site=site, round=server_round, level="record", accountant=plan.accountant,
            noise_multiplier=main[0], sample_rate=main[1], steps=main[2], delta=plan.delta, epsilon=eps,
            run_id=plan.run_id, extra_releases=extra, trust=trust, fallback_noise_multiplier=fallback,
            **plan.ledger_unit(),
        )
        self.ledger = self.ledger.append(entry)
        return eps

    def _settle_lost_round(
        self, report: SiteReport, main: HistoryEntry, metric: HistoryEntry, extra: tuple[Release, ...]
    ) -> None:
        """A site sent a round before the server stopped reports again: did it train that round?

        Its reported epsilon for the run is the sum of its own ledger, written before an update leaves the
        site. If that sum includes the lost round, the server records it (before this round, in order).
        """
        name = report.site if report.site in self.unconfirmed else next(
            (site for site, (_, node) in self.unconfirmed.items() if node == report.node_id), None)
        if name is None:
            return
        lost_round, _ = self.unconfirmed.pop(name)
        plan = self.plan
        base = self.ledger.history(report.site, "record")
        with_lost = epsilon(base + [main, metric, main, metric], delta=plan.delta, accountant=plan.accountant)
        if math.isclose(with_lost, report.epsilon_run, rel_tol=1e-6, abs_tol=1e-9):
            logger.warning("%s trained round %d before the server stopped (its ledger says so): recorded",
                           report.site, lost_round)
            self._append_lost(report.site, lost_round, report.trust, main, extra)
        else:
            logger.info("%s did not train round %d before the server stopped", report.site, lost_round)

    def settle_unconfirmed(self) -> None:
        """Training is over: a site sent a lost round that never reported again is counted as having spent it.

        Only the site's ledger knows; the consortium's figure is then an upper bound, the safe side of a claim.
        """
        main, _ = self.plan.round_releases()
        extra = tuple(Release(*named) for named in self.plan.named_round_releases()[1:])
        trust = TRUST_SECAGG if self.plan.record_noise == "shared" else TRUST_LOCAL
        for site, (lost_round, _) in sorted(self.unconfirmed.items()):
            logger.warning("%s was sent round %d before the server stopped and never reported again: counted as "
                           "spent (an upper bound; its own ledger is exact)", site, lost_round)
            self._append_lost(site, lost_round, trust, main, extra)
        self.unconfirmed = {}

    def _append_lost(self, site: str, lost_round: int, trust: str, main: HistoryEntry, extra: tuple[Release, ...]) -> None:
        self._append_record(site, lost_round, trust, main, extra)
        if self.plan.site_dp != "off":  # the site charged its site level write-ahead too
            self._site_level(lost_round, site)

    def _site_level(self, server_round: int, site: str) -> None:
        """DP-FedAvg: one unsampled Gaussian release of the clipped sum per round, for every site in it."""
        plan = self.plan
        release = plan.site_round_release()
        history = self.ledger.history(site, "site") + [release]
        entry = LedgerEntry(
            site=site, round=server_round, level="site", accountant=plan.accountant,
            noise_multiplier=release[0], sample_rate=release[1], steps=release[2], delta=plan.delta,
            epsilon=epsilon(history, delta=plan.delta, accountant=plan.accountant), run_id=plan.run_id,
            trust=plan.site_trust, fallback_noise_multiplier=plan.site_fallback_noise_multiplier(),
        )
        self.ledger = self.ledger.append(entry)

    def site_level_spent(self) -> dict[str, float]:
        return {site: self.ledger.spent(site, "site") for site in self.ledger.sites() if self.ledger.entries_for(site, "site")}

    def spent(self) -> dict[str, float]:
        return {site: self.ledger.spent(site, "record") for site in self.ledger.sites()}

    def _progress(self, outcome: RoundOutcome) -> None:
        server_round, reports = outcome.round, outcome.reports
        spent = self.spent()
        sites = ", ".join(sorted(r.site for r in reports)) or "none"
        loss = sum(r.noisy_loss for r in reports) / len(reports) if reports else float("nan")
        top = max(spent.values(), default=0.0)
        record: dict[str, object] = {
            "round": server_round,
            "noisy_loss": {r.site: r.noisy_loss for r in sorted(reports, key=lambda r: r.site)},
            "epsilon": spent,
            "started_at": round(outcome.started_at, 3),
            "duration_s": round(outcome.duration_seconds, 3),
            # What the server saw of each sampled node: the same for any Flower server, no site's data.
            "sites": {
                o.site: {"node_id": o.node_id, "status": o.status, "reply_s": _rounded(o.reply_seconds), "reason": o.reason}
                for o in sorted(outcome.sites, key=lambda o: o.site)
            },
            "trust": {r.site: r.trust for r in reports},
        }
        if self.plan.site_dp != "off":
            record["site_epsilon"] = self.site_level_spent()
        self.rounds.append(record)
        self._write_rounds()
        if self.on_progress is not None:
            self.on_progress(record)
        logger.info(
            "round %d/%d | sites: %s | noisy loss %.3f | epsilon spent %.3f of %.3f (max over sites)",
            server_round, self.plan.rounds, sites, loss, top, self.plan.target_epsilon,
        )


    def _write_rounds(self, in_flight: dict[str, object] | None = None) -> None:
        # Written each round, so a coordinator (and a crash) keeps the curve so far; the losses are DP releases.
        data: dict[str, object] = {"rounds": self.rounds}
        if in_flight is not None:
            data["in_flight"] = in_flight
        atomic_write_text(self.path.with_name(ROUNDS_FILE), json.dumps(data, indent=1) + "\n")


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
