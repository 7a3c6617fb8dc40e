"""Run planning: the solved noise spends the target at the last round, never more."""

from __future__ import annotations

from pathlib import Path

import pytest
from opacus.accountants import PRVAccountant, RDPAccountant

from server.config import RunConfig
from server.plan import describe_plan, make_plan, planned_epsilon
from shared.errors import ConfigError
from shared.plan import TrainingPlan
from shared.schema import load_schema


def _config(schema: Path, **overrides: object) -> RunConfig:
    return RunConfig.from_run_config({"schema-path": str(schema), **overrides})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("rounds", "steps", "target", "mechanism"),
    [(3, 10, 1.0, "rdp"), (6, 40, 3.0, "prv"), (20, 5, 8.0, "rdp"), (20, 5, 8.0, "prv")],
)
def test_solved_noise_reaches_the_target_at_the_last_round(
    small_schema: Path, rounds: int, steps: int, target: float, mechanism: str
) -> None:
    config = _config(
        small_schema,
        **{"num-rounds": rounds, "train.local-steps": steps, "dp.target-epsilon": target, "dp.accountant": mechanism},
    )
    plan = make_plan(config, load_schema(small_schema))
    # Recomputed with Opacus's accountant class directly, not through shared.accounting.
    accountant = RDPAccountant() if mechanism == "rdp" else PRVAccountant()
    accountant.history = [(plan.noise_multiplier, plan.sample_rate, rounds * steps), (plan.metric_noise_multiplier, 1.0, rounds)]
    training = accountant.get_epsilon(delta=plan.delta)
    # The evaluation release after the last round is part of the same budget.
    assert plan.evaluation_releases() == [(10.0, 1.0, 1)]
    accountant.history.append((plan.evaluate_noise_multiplier, 1.0, 1))
    spent = accountant.get_epsilon(delta=plan.delta)
    assert target - 0.01 <= spent <= target
    assert planned_epsilon(plan) == pytest.approx(training, rel=1e-9)
    assert planned_epsilon(plan, rounds - 1) < training < spent


def test_plan_survives_the_wire_and_is_described(small_schema: Path) -> None:
    plan = make_plan(_config(small_schema), load_schema(small_schema))
    assert TrainingPlan.from_config(plan.to_config()) == plan
    text = describe_plan(plan)
    assert "noise multiplier" in text and plan.run_id in text


def test_bad_settings_name_their_key(small_schema: Path) -> None:
    with pytest.raises(ConfigError, match="dp.target-epsilon"):
        _config(small_schema, **{"dp.target-epsilon": -1.0})
    with pytest.raises(ConfigError, match="dp.accountant"):
        _config(small_schema, **{"dp.accountant": "gdp"})
    with pytest.raises(ConfigError, match="schema-path"):
        RunConfig.from_run_config({"schema-path": str(small_schema.parent / "missing.json")})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"site-dp.mode": "distributed"}, "secure-agg=true"),
        ({"dp.record-noise": "shared", "secure-agg": True}, "local-steps=1"),
        ({"site-dp.mode": "central", "secure-agg": True}, "use site-dp.mode='distributed'"),
        ({"site-dp.mode": "distributed", "secure-agg": True, "dp.record-noise": "shared", "train.local-steps": 1},
         "cannot be combined"),
    ],
)
def test_privacy_modes_that_would_void_a_guarantee_are_refused(
    small_schema: Path, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(small_schema, **overrides)


def test_site_level_noise_is_solved_for_its_own_target(small_schema: Path) -> None:
    config = _config(small_schema, **{"num-rounds": 10, "site-dp.mode": "central", "site-dp.target-epsilon": 5.0})
    plan = make_plan(config, load_schema(small_schema))
    accountant = PRVAccountant()
    accountant.history = [(plan.site_noise_multiplier, 1.0, 10)]
    assert 5.0 - 0.011 <= accountant.get_epsilon(delta=plan.delta) <= 5.0
    assert "site-level DP (central)" in describe_plan(plan)
