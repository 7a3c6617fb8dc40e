"""The next round's epsilon, worked out while the site waits for that round.

Before it trains, a site must know what the round will cost (its cap check, then its ledger entry): one PRV
computation of its whole history, 0.2-0.3 s of CPU on the critical path of every round. The answer depends
only on the history after this round and the plan, both known once this round's reply has left. So a task
of the warm runtime (``client.task_memory``) computes it after its reply, while the site is otherwise idle,
and keeps it; the next round's task hands it to ``shared.accounting`` under the question's key before it
asks. If anything differs (another plan, an entry the site wrote in between, other code), the key differs
and the epsilon is computed as always: this only ever changes when the number is computed, never what it is.
"""

from __future__ import annotations

import logging

from client.task_memory import TaskMemory
from shared.accounting import History, epsilon, question_key, remember
from shared.plan import TrainingPlan

__all__ = ["MEMORY_NAME", "foresee", "recall"]

MEMORY_NAME = "next-round-epsilon"
logger = logging.getLogger(__name__)


def _question(history: History, plan: TrainingPlan) -> tuple[History, str]:
    question = history + plan.round_releases()
    return question, question_key(question, delta=plan.delta, accountant=plan.accountant)


def foresee(memory: TaskMemory, history: History, plan: TrainingPlan) -> None:
    """Compute the epsilon of ``history`` plus one more round of ``plan`` and keep it for the next task."""
    question, key = _question(history, plan)
    memory.keep(MEMORY_NAME, key, {"epsilon": epsilon(question, delta=plan.delta, accountant=plan.accountant)}, [])


def recall(memory: TaskMemory, history: History, plan: TrainingPlan) -> bool:
    """Hand the epsilon an earlier task foresaw for this round, if any, to ``shared.accounting``."""
    _, key = _question(history, plan)
    kept = memory.recall(MEMORY_NAME, key)
    if kept is None:
        return False
    remember(key, float(kept.facts["epsilon"]))  # type: ignore[arg-type]
    logger.info("this round's epsilon was worked out after the previous round's reply")
    return True
