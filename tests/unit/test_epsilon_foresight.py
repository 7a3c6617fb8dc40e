"""The next round's epsilon, foreseen after a reply (client/epsilon_foresight.py): the next task is handed the
very number Opacus gives for its question, and nothing for any other question."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from opacus.accountants import PRVAccountant

from client import epsilon_foresight
from client.task_memory import TaskMemory
from server.config import RunConfig
from server.plan import make_plan
from shared import accounting
from shared.errors import ConfigError
from shared.plan import TrainingPlan
from shared.schema import load_schema
from tests.unit.test_task_memory import task


@pytest.fixture()
def plan(small_schema: Path) -> TrainingPlan:
    config = RunConfig.from_run_config({"schema-path": str(small_schema), "num-rounds": 4, "train.local-steps": 3,
                                        "train.hidden": 16, "dp.target-epsilon": 2.0})
    return make_plan(config, load_schema(small_schema))


@pytest.fixture(autouse=True)
def forget() -> None:
    accounting._REMEMBERED.clear()
    accounting._cached_epsilon.cache_clear()


def test_the_next_task_gets_opacus_answer_without_computing_it(plan: TrainingPlan) -> None:
    memory = TaskMemory()
    after_round_2 = plan.round_releases() * 2
    with task(memory):  # round 2's task, after its reply
        memory.after_reply(lambda: epsilon_foresight.foresee(memory, after_round_2, plan))
        memory.run_after_reply()
    accounting._cached_epsilon.cache_clear()  # round 3's task is another process: nothing computed in it yet

    assert epsilon_foresight.recall(memory, after_round_2, plan)
    answer = accounting.epsilon(after_round_2 + plan.round_releases(), delta=plan.delta, accountant=plan.accountant)

    assert accounting._cached_epsilon.cache_info().misses == 0  # served from the foresight
    reference = PRVAccountant()
    reference.history = plan.round_releases() * 3
    assert answer == pytest.approx(reference.get_epsilon(delta=plan.delta), rel=1e-9)


def test_any_other_question_is_computed_as_always(plan: TrainingPlan) -> None:
    memory = TaskMemory()
    after_round_2 = plan.round_releases() * 2
    with task(memory):
        epsilon_foresight.foresee(memory, after_round_2, plan)

    evaluated = after_round_2 + [(10.0, 1.0, 1)]  # the site released something else in between
    assert not epsilon_foresight.recall(memory, evaluated, plan)
    assert not epsilon_foresight.recall(memory, plan.round_releases(), plan)
    assert not accounting._REMEMBERED


def test_question_keys_name_the_composition_not_the_order() -> None:
    history = [(1.2, 0.01, 10), (100.0, 1.0, 1), (1.2, 0.01, 5)]
    same = [(100.0, 1.0, 1), (1.2, 0.01, 15)]

    key = accounting.question_key(history, delta=1e-5, accountant="prv")

    assert key == accounting.question_key(same, delta=1e-5, accountant="prv")
    assert key != accounting.question_key(history, delta=1e-6, accountant="prv")
    assert key != accounting.question_key(history, delta=1e-5, accountant="rdp")
    assert key != accounting.question_key([*history, (1.2, 0.01, 1)], delta=1e-5, accountant="prv")


@pytest.mark.parametrize("value", [float("nan"), -1.0, float("inf"), 1])
def test_only_a_computed_epsilon_can_be_remembered(value: float) -> None:
    with pytest.raises(ConfigError, match="remembered epsilon"):
        accounting.remember("key", value)


def test_work_left_for_after_the_reply_runs_once_and_a_failure_is_only_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    memory = TaskMemory()
    ran: list[str] = []
    memory.after_reply(lambda: ran.append("first"))
    memory.after_reply(lambda: 1 / 0)  # type: ignore[func-returns-value]
    memory.after_reply(lambda: ran.append("third"))

    with caplog.at_level(logging.WARNING):
        memory.run_after_reply()
        memory.run_after_reply()

    assert ran == ["first", "third"]
    assert "after its reply failed" in caplog.text
