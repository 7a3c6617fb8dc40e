"""A run driven by hand for console tests: the real consortium ledger writes rounds.json, a real RunMonitor
announces it. Round 2 refuses one site's update; a third node never replies in any round.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from server.consortium import ConsortiumLedger
from server.console.monitor import RunMonitor
from server.round_outcome import DROPPED, REFUSED, UPDATED, RoundOutcome, SiteOutcome, SiteReport
from shared.accounting import epsilon
from shared.console.v1 import console_pb2 as pb
from shared.plan import TrainingPlan
from tests.conftest import SMALL_SCHEMA

ROUNDS = 5


def _plan() -> TrainingPlan:
    return TrainingPlan(
        run_id="run-console", rounds=ROUNDS, local_steps=2, sample_rate=0.05, noise_multiplier=1.2,
        max_grad_norm=1.0, lr=1.0, delta=1e-5, accountant="rdp", target_epsilon=3.0, metric_noise_multiplier=100.0,
        hidden=8, latent=2, kl_weight=0.3, seed=0, schema_json=json.dumps(SMALL_SCHEMA),
    )


class Federation:
    """A run driven by hand: the real ledger writes rounds.json, the monitor announces it."""

    def __init__(self, run_dir: Path) -> None:
        self.plan = _plan()
        self.monitor = RunMonitor(run_dir)
        self.ledger = ConsortiumLedger(run_dir / "ledger.json", self.plan, on_progress=self.monitor.round_finished)
        self.monitor.spent_from(lambda: {"record": self.ledger.spent()})
        self.monitor.started(self.plan, {"num-rounds": ROUNDS}, min_sites=2)
        self.monitor.phase(pb.RUN_STATUS_TRAINING)

    def round(self, number: int) -> None:
        sites = ["site-a", "site-b", "node-7"]
        self.monitor.round_started(number, sites)
        start = time.time()
        reports = [SiteReport(node_id=n, site=s, noisy_loss=10.0 - number, epsilon_run=self._epsilon(s),
                              epsilon_total=self._epsilon(s), steps=2) for n, s in ((1, "site-a"), (2, "site-b"))]
        outcomes = [SiteOutcome(1, "site-a", UPDATED, 0.5), SiteOutcome(2, "site-b", UPDATED, 0.7),
                    SiteOutcome(7, "node-7", DROPPED, None, "no reply before the round closed")]
        if number == 2:
            outcomes[1] = SiteOutcome(2, "site-b", REFUSED, 0.6, "parameter 'w' holds non-finite values")
            reports = reports[:1]
        self.ledger.record_round(RoundOutcome(number, start, start + 1.5, reports, outcomes))

    def _epsilon(self, site: str) -> float:
        """What the site itself would report (its own accountant over its history plus this round)."""
        history = self.ledger.ledger.history(site, "record") + list(self.plan.round_releases())
        return epsilon(history, delta=self.plan.delta, accountant="rdp")
