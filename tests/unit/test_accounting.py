"""Known-value and behaviour tests for shared.accounting."""

from __future__ import annotations

import math

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from shared.accounting import (
    ACCOUNTANTS,
    epsilon,
    projected_epsilon,
    solve_noise_multiplier,
)
from shared.errors import BudgetExceededError, ConfigError

DELTA = 1e-5


def closed_form_gaussian_epsilon(sigma: float, steps: int, delta: float) -> float:
    """Epsilon of ``steps`` unsampled Gaussian releases, computed without Opacus's code.

    The Gaussian mechanism with noise multiplier sigma is (alpha, alpha / (2 sigma^2))-RDP and RDP adds
    up under composition. The conversion to (epsilon, delta) is Balle et al. 2020, Thm. 21, minimised
    over the same order grid Opacus uses.
    """
    alphas = np.array(RDPAccountant.DEFAULT_ALPHAS, dtype=float)
    rdp = steps * alphas / (2 * sigma**2)
    eps = rdp + np.log((alphas - 1) / alphas) - (np.log(delta) + np.log(alphas)) / (alphas - 1)
    return float(np.min(eps))


@pytest.mark.parametrize(("sigma", "steps"), [(1.0, 1), (2.0, 10), (5.0, 3)])
def test_rdp_gaussian_matches_closed_form(sigma: float, steps: int) -> None:
    # Prepare
    expected = closed_form_gaussian_epsilon(sigma, steps, DELTA)
    # Execute
    got = epsilon([(sigma, 1.0, steps)], delta=DELTA, accountant="rdp")
    # Assert
    assert got == pytest.approx(expected, rel=1e-9)


def test_single_gaussian_known_value() -> None:
    # sigma=1, one unsampled release, delta=1e-5: the optimum order is near alpha=5.
    assert epsilon([(1.0, 1.0, 1)], delta=DELTA, accountant="rdp") == pytest.approx(4.7285070672, rel=1e-8)


def test_subsampled_values_pinned_against_opacus() -> None:
    # Values produced by Opacus 1.6; a change means the accountant changed under us.
    assert epsilon([(1.0, 0.01, 1000)], delta=DELTA, accountant="rdp") == pytest.approx(2.1013652716, rel=1e-6)
    assert epsilon([(1.0, 0.01, 1000)], delta=DELTA, accountant="prv") == pytest.approx(
        1.8383716370, rel=1e-4
    )


def test_history_composes_like_opacus() -> None:
    history = [(1.0, 0.01, 300), (3.0, 1.0, 4), (1.2, 0.02, 100)]
    reference = RDPAccountant()
    reference.history = list(history)
    assert epsilon(history, delta=DELTA, accountant="rdp") == pytest.approx(reference.get_epsilon(delta=DELTA, accountant="rdp"))


def test_empty_and_zero_step_histories_cost_nothing() -> None:
    assert epsilon([], delta=DELTA, accountant="rdp") == 0.0
    assert epsilon([(1.0, 0.5, 0)], delta=DELTA, accountant="prv") == 0.0


def test_prv_is_tighter_than_rdp_for_dp_sgd() -> None:
    history = [(1.0, 0.01, 1000)]
    assert epsilon(history, delta=DELTA, accountant="prv") < epsilon(history, delta=DELTA, accountant="rdp")


@pytest.mark.parametrize("accountant", ACCOUNTANTS)
def test_solver_lands_within_tolerance_below_target(accountant: str) -> None:
    # Prepare
    target, tol = 2.0, 0.01
    # Execute
    sigma = solve_noise_multiplier(
        target_epsilon=target, delta=DELTA, sample_rate=0.01, steps=500, accountant=accountant
    )
    # Assert
    spent = epsilon([(sigma, 0.01, 500)], delta=DELTA, accountant=accountant)
    assert target - tol <= spent <= target


@pytest.mark.filterwarnings("ignore:Optimal order is the")  # Opacus's own bracket search warns
def test_solver_matches_opacus_without_extra_history() -> None:
    from opacus.accountants.utils import get_noise_multiplier

    ours = solve_noise_multiplier(target_epsilon=3.0, delta=DELTA, sample_rate=0.02, steps=400, accountant="rdp")
    theirs = get_noise_multiplier(
        target_epsilon=3.0, target_delta=DELTA, sample_rate=0.02, steps=400
    )
    assert ours == pytest.approx(theirs)


def test_extra_history_costs_more_noise() -> None:
    # Prepare: a noisy metric released each of 10 rounds shares the budget with DP-SGD.
    extra = [(20.0, 1.0, 10)]
    # Execute
    alone = solve_noise_multiplier(target_epsilon=2.0, delta=DELTA, sample_rate=0.01, steps=1000, accountant="rdp")
    shared = solve_noise_multiplier(
        target_epsilon=2.0, delta=DELTA, sample_rate=0.01, steps=1000, extra_history=extra, accountant="rdp"
    )
    # Assert
    assert shared > alone
    spent = epsilon([(shared, 0.01, 1000), *extra], delta=DELTA, accountant="rdp")
    assert 2.0 - 0.01 <= spent <= 2.0
    assert projected_epsilon([(shared, 0.01, 1000)], extra, delta=DELTA, accountant="rdp") == pytest.approx(spent)


def test_solver_refuses_when_extra_history_alone_exceeds_target() -> None:
    with pytest.raises(BudgetExceededError, match="extra_history.*Raise the target epsilon"):
        solve_noise_multiplier(
            target_epsilon=1.0,
            delta=DELTA,
            sample_rate=0.01,
            steps=100,
            extra_history=[(1.0, 1.0, 5)],
        )


def test_gdp_is_refused_as_an_approximation() -> None:
    with pytest.raises(ConfigError, match="approximation, not an upper bound"):
        epsilon([(1.0, 0.01, 10)], delta=DELTA, accountant="gdp")
    with pytest.raises(ConfigError, match="approximation"):
        solve_noise_multiplier(
            target_epsilon=1.0, delta=DELTA, sample_rate=0.01, steps=10, accountant="gdp"
        )


@pytest.mark.parametrize(
    ("history", "delta", "accountant", "fragment"),
    [
        ([(1.0, 0.1, 1)], 0.0, "rdp", "delta"),
        ([(1.0, 0.1, 1)], 1.0, "rdp", "delta"),
        ([(0.0, 0.1, 1)], DELTA, "rdp", r"history\[0\]: noise_multiplier"),
        ([(1.0, 0.1, 1), (-1.0, 0.1, 1)], DELTA, "rdp", r"history\[1\]: noise_multiplier"),
        ([(math.nan, 0.1, 1)], DELTA, "rdp", "noise_multiplier"),
        ([(1.0, 0.0, 1)], DELTA, "rdp", "sample_rate"),
        ([(1.0, 1.5, 1)], DELTA, "rdp", "sample_rate"),
        ([(1.0, 0.1, -1)], DELTA, "rdp", "steps"),
        ([(1.0, 0.1, 1.5)], DELTA, "rdp", "steps"),
        ([(1.0, 0.1)], DELTA, "rdp", "noise_multiplier, sample_rate, steps"),
        ([(1.0, 0.1, 1)], DELTA, "moments", "accountant"),
    ],
)
def test_bad_inputs_raise_config_error(
    history: list[tuple[float, ...]], delta: float, accountant: str, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        epsilon(history, delta=delta, accountant=accountant)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"target_epsilon": 0.0}, "target_epsilon"),
        ({"sample_rate": 0.0}, "sample_rate"),
        ({"steps": 0}, "steps"),
        ({"tolerance": 0.0}, "tolerance"),
        ({"delta": 2.0}, "delta"),
        ({"extra_history": [(1.0, 2.0, 1)]}, r"extra_history\[0\]: sample_rate"),
    ],
)
def test_solver_bad_inputs_raise_config_error(kwargs: dict[str, object], fragment: str) -> None:
    args: dict[str, object] = {
        "target_epsilon": 1.0,
        "delta": DELTA,
        "sample_rate": 0.01,
        "steps": 10,
    }
    args.update(kwargs)
    with pytest.raises(ConfigError, match=fragment):
        solve_noise_multiplier(**args)  # type: ignore[arg-type]


def analytic_gaussian_epsilon(mu: float, delta: float) -> float:
    """Exact epsilon of a mu-GDP mechanism (the Gaussian mechanism composed), Balle & Wang 2018, Thm. 8.

    delta(eps) = Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2); solved for eps without Opacus's code.
    """
    from scipy.optimize import brentq
    from scipy.stats import norm

    return float(brentq(lambda e: norm.cdf(-e / mu + mu / 2) - math.exp(e) * norm.cdf(-e / mu - mu / 2) - delta, 0, 200))


@pytest.mark.parametrize(("sigma", "steps"), [(2.0, 30), (1.0, 1), (5.0, 100)])
def test_prv_is_a_tight_upper_bound_on_the_exact_gaussian(sigma: float, steps: int) -> None:
    # Unsampled Gaussian releases (site-level rounds, noisy metrics) have an exact epsilon: k releases at
    # noise multiplier sigma are sqrt(k)/sigma-GDP. PRV must never be below it, and be close to it.
    exact = analytic_gaussian_epsilon(math.sqrt(steps) / sigma, DELTA)
    got = epsilon([(sigma, 1.0, steps)], delta=DELTA, accountant="prv")
    assert exact <= got <= exact * 1.01


def test_default_accountant_is_the_tighter_honest_one() -> None:
    history = [(1.5, 0.05, 300), (100.0, 1.0, 30)]
    assert epsilon(history, delta=DELTA) == epsilon(history, delta=DELTA, accountant="prv")
    assert epsilon(history, delta=DELTA) < epsilon(history, delta=DELTA, accountant="rdp")
