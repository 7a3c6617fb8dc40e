"""Resuming a run whose server stopped mid-way (a crash, a killed process, a lost machine).

What was spent stays spent: the consortium ledger on disk is the record, and every round number that may have
been charged anywhere is never used again. The resumed run reads back the plan (never re-planned: the noise was
calibrated for it), the last checkpoint (generator, FedAdam's moments, which node is which site, the paid
preprocessing results) and ``rounds.json``, then trains the rounds left, numbered on from the last round that
was sent. A round that was sent but never recorded is "lost": its update is gone, and each site it went to is
asked, through what it reports next, whether it trained it (``ConsortiumLedger._settle_lost_round``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from server.checkpoint import CHECKPOINT_NAME, Checkpoint, read_checkpoint
from server.config import RunConfig
from server.consortium import ROUNDS_FILE
from server.plan import make_plan
from shared.errors import ConfigError
from shared.ledger import Ledger
from shared.manifest import MANIFEST_NAME
from shared.plan import TrainingPlan
from shared.schema import Schema

logger = logging.getLogger(__name__)

PLAN_FILE = "plan.json"
LEDGER_FILE = "ledger.json"


@dataclass(frozen=True)
class ResumePoint:
    """Where an interrupted run picks up."""

    plan: TrainingPlan
    checkpoint: Checkpoint
    rounds: list[dict[str, Any]]  # rounds.json as it was
    next_round: int  # the first round number the resumed run sends
    # site -> (round, node id): sent before the stop, never recorded; settled by the site's next report.
    unconfirmed: dict[str, tuple[int, int]]

    @property
    def rounds_left(self) -> int:
        return max(self.plan.rounds - self.next_round + 1, 0)

    def describe(self) -> str:
        lost = sorted({r for r, _ in self.unconfirmed.values()})
        gap = self.next_round - 1 - self.checkpoint.round - (1 if lost else 0)
        parts = [f"resuming run {self.plan.run_id} after round {self.next_round - 1} of {self.plan.rounds}",
                 f"generator of round {self.checkpoint.round}"]
        if gap > 0:
            parts.append(f"{gap} round(s) recorded after it (charged; their updates were lost)")
        if lost:
            parts.append(f"round {lost[0]} was in flight: {len(self.unconfirmed)} site(s) to confirm")
        return "; ".join(parts)


def prepare_out_dir(config: RunConfig, schema: Schema) -> ResumePoint | None:
    """The resume point if ``config.resume`` and out_dir holds an unfinished run; None to start afresh.

    Without ``resume``, an out_dir that already holds a run's ledger is refused: appending a new run to it would
    mix two runs' budgets, and silently starting over would hide what the first one spent.
    """
    out = config.out_dir
    ledger_path, plan_path = out / LEDGER_FILE, out / PLAN_FILE
    if not config.resume:
        if ledger_path.is_file() and Ledger.load(ledger_path).entries:
            raise ConfigError(
                f"{out} already holds a run's ledger; set run config resume=true to continue that run from its "
                "last checkpoint, or choose a new out-dir"
            )
        return None
    if (out / MANIFEST_NAME).is_file():
        raise ConfigError(f"{out}: that run already finished and published its outputs; there is nothing to resume")
    if not plan_path.is_file():
        if ledger_path.is_file() and Ledger.load(ledger_path).entries:
            raise ConfigError(f"{out} has a ledger but no plan.json; it cannot be resumed, choose a new out-dir")
        logger.info("resume=true but %s holds no run yet: starting a new one", out)
        return None
    plan = TrainingPlan.from_json(plan_path.read_text())
    checkpoint_path = out / "checkpoint" / CHECKPOINT_NAME
    if not checkpoint_path.is_file():
        raise ConfigError(
            f"{out}: the run stopped before its first checkpoint (during planning or preprocessing), so there is "
            "nothing to resume from; start a new run in a new out-dir (the sites' ledgers keep what they spent)"
        )
    checkpoint = read_checkpoint(checkpoint_path)
    if checkpoint.run_id != plan.run_id:
        raise ConfigError(f"{checkpoint_path} belongs to run {checkpoint.run_id}, {plan_path} to run {plan.run_id}")
    _check_same_plan(plan, make_plan(config, schema, run_id=plan.run_id))
    rounds, in_flight = _read_rounds(out / ROUNDS_FILE)
    ledger = Ledger.load(ledger_path)
    charged = [e.round for e in ledger.entries if e.level == "record" and 0 < e.round <= plan.rounds]
    recorded = [int(r["round"]) for r in rounds]
    last = max([checkpoint.round, *charged, *recorded], default=0)
    unconfirmed: dict[str, tuple[int, int]] = {}
    if in_flight is not None and int(in_flight["round"]) > last:
        lost = int(in_flight["round"])
        unconfirmed = {str(site): (lost, int(node)) for site, node in dict(in_flight["sites"]).items()}
        last = lost
    return ResumePoint(plan=plan, checkpoint=checkpoint, rounds=rounds, next_round=last + 1, unconfirmed=unconfirmed)


def _check_same_plan(saved: TrainingPlan, fresh: TrainingPlan) -> None:
    """The run config must still describe the saved plan: its noise was calibrated to it."""
    if saved.preprocess_noise_multiplier > 0:  # paid preprocessing rewrote the schema the plan carries
        fresh = replace(fresh, schema_json=saved.schema_json)
    changed = [f.name for f in fields(TrainingPlan) if getattr(saved, f.name) != getattr(fresh, f.name)]
    if changed:
        raise ConfigError(
            f"the run config no longer matches the interrupted run's plan (differs in: {', '.join(changed)}); "
            "resume with the run config it started with, or start a new run in a new out-dir"
        )


def _read_rounds(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    if not path.is_file():
        return [], None
    try:
        data = json.loads(path.read_text())
        rounds, in_flight = list(data["rounds"]), data.get("in_flight")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is unreadable ({type(exc).__name__}); the run cannot be resumed safely") from None
    return rounds, in_flight
