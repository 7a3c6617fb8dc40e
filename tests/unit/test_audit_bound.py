"""The one-run audit statistics: known values of the Steinke-Nasr-Jagielski bound, its validity, and AUC."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from shared.audit_bound import (
    GUESS_FRACTIONS,
    audit_scores,
    auc,
    bonferroni_alpha,
    count_correct,
    epsilon_lower_bound,
    p_value,
    perfect_attacker_bound,
)


def _logit(q: float) -> float:
    return math.log(q / (1 - q))


def test_p_value_of_all_correct_guesses_is_q_to_the_r_without_delta() -> None:
    # Prepare: r correct out of r under eps-DP randomized response has probability q**r.
    q = 1 / (1 + math.exp(-1.5))
    # Execute
    p = p_value(m=100, r=20, v=20, epsilon=1.5, delta=0.0)
    # Assert
    assert p == pytest.approx(q**20, rel=1e-12)


def test_bound_of_a_perfect_attacker_matches_the_closed_form() -> None:
    # With delta = 0 and v = r, the bound solves q**r = alpha: eps = logit(alpha ** (1 / r)).
    bound = epsilon_lower_bound(m=500, r=50, v=50, delta=0.0, alpha=0.05)
    assert bound == pytest.approx(_logit(0.05 ** (1 / 50)), abs=1e-9)
    assert bound == pytest.approx(2.7847274, abs=1e-6)


def test_pinned_values_with_delta() -> None:
    # Values of the authors' reference code (p_value_DP_audit / get_eps_audit), recomputed independently.
    assert epsilon_lower_bound(m=500, r=50, v=50, delta=1e-5, alpha=0.05) == pytest.approx(2.7705071, abs=1e-6)
    assert epsilon_lower_bound(m=500, r=100, v=90, delta=1e-5, alpha=0.05) == pytest.approx(1.6284911, abs=1e-6)
    assert epsilon_lower_bound(m=500, r=250, v=200, delta=1e-3, alpha=0.05) == pytest.approx(1.0308765, abs=1e-6)


def test_a_perfect_attacker_with_many_guesses_gets_a_large_bound() -> None:
    bound = epsilon_lower_bound(m=1000, r=500, v=500, delta=1e-5, alpha=0.05)
    assert bound > 5.0


def test_delta_weakens_the_bound() -> None:
    tight = epsilon_lower_bound(m=500, r=100, v=95, delta=0.0, alpha=0.05)
    loose = epsilon_lower_bound(m=500, r=100, v=95, delta=1e-3, alpha=0.05)
    assert 0 < loose < tight


def test_bound_is_monotone_in_correct_guesses_and_never_negative() -> None:
    bounds = [epsilon_lower_bound(m=200, r=60, v=v, delta=1e-5, alpha=0.01) for v in range(61)]
    assert all(b >= 0 for b in bounds)
    assert all(a <= b for a, b in zip(bounds, bounds[1:]))
    assert bounds[30] == 0.0 and bounds[-1] > 2.0


def test_random_guessing_gives_about_zero() -> None:
    rng = np.random.default_rng(7)
    m = 1000
    included = rng.integers(0, 2, size=m).astype(bool)
    result = audit_scores(rng.normal(size=m), included, delta=1e-5, alpha=bonferroni_alpha(0.95, 3))
    assert result.epsilon_lower_bound < 0.2
    assert abs(result.auc - 0.5) < 0.06


def test_bound_rarely_exceeds_the_epsilon_of_randomized_response() -> None:
    # Prepare: the canonical eps-DP mechanism; each bit is reported truthfully with probability e^eps/(1+e^eps).
    rng = np.random.default_rng(11)
    eps, m, trials = 1.0, 400, 100
    exceeded = 0
    for _ in range(trials):
        included = rng.integers(0, 2, size=m).astype(bool)
        truthful = rng.random(m) < 1 / (1 + math.exp(-eps))
        scores = np.where(truthful, included, ~included).astype(float) + 1e-3 * rng.random(m)
        # Execute
        result = audit_scores(scores, included, delta=0.0, alpha=bonferroni_alpha(0.95, len(GUESS_FRACTIONS)))
        exceeded += result.epsilon_lower_bound > eps
    # Assert: valid at 95% means at most ~5% of trials may overshoot (here far fewer: Bonferroni is conservative).
    assert exceeded <= 5


def test_audit_keeps_the_best_rule_and_reports_all() -> None:
    included = np.array([True] * 50 + [False] * 50)
    scores = np.arange(100, 0, -1, dtype=float)  # members score highest: a perfect attacker
    result = audit_scores(scores, included, delta=1e-5, alpha=0.05 / 3)
    assert result.auc == 1.0
    assert [(r.k_plus, r.k_minus) for r in result.rules] == [(10, 0), (10, 10), (25, 25)]
    assert all(r.correct == r.guesses for r in result.rules)
    assert (result.guesses, result.correct) == (50, 50)
    assert result.epsilon_lower_bound == max(r.epsilon_lower_bound for r in result.rules)
    assert result.to_dict()["rules"][0]["k_plus"] == 10


def test_count_correct_guesses_in_at_the_top_and_out_at_the_bottom() -> None:
    scores = [0.9, 0.1, 0.5, 0.8, 0.2]
    included = [True, False, True, False, True]
    # in: 0.9 (right), 0.8 (wrong); out: 0.1 (right)
    assert count_correct(scores, included, k_plus=2, k_minus=1) == (3, 2)
    assert count_correct(scores, included, k_plus=0, k_minus=0) == (0, 0)
    with pytest.raises(ValueError):
        count_correct(scores, included, k_plus=4, k_minus=2)


def test_auc_agrees_with_scikit_learn_and_handles_ties() -> None:
    rng = np.random.default_rng(3)
    included = rng.integers(0, 2, size=300).astype(bool)
    scores = np.round(rng.normal(size=300) + 0.5 * included, 1)  # rounded: many ties
    assert auc(scores, included) == pytest.approx(roc_auc_score(included, scores), abs=1e-12)
    assert auc([1.0, 1.0, 1.0], [True, False, True]) == 0.5
    assert auc([3.0, 1.0, 2.0], [True, False, True]) == 1.0
    assert math.isnan(auc([1.0, 2.0], [True, True]))


def test_inputs_that_would_break_the_guarantee_are_refused() -> None:
    with pytest.raises(ValueError, match="correct <= guesses"):
        p_value(m=10, r=5, v=6, epsilon=1.0, delta=0.0)
    with pytest.raises(ValueError, match="finite"):
        auc([1.0, float("nan")], [True, False])
    with pytest.raises(ValueError, match="alpha"):
        epsilon_lower_bound(m=10, r=5, v=5, delta=0.0, alpha=0.0)
    assert bonferroni_alpha(0.95, 6) == pytest.approx(0.05 / 6)
    with pytest.raises(ValueError):
        bonferroni_alpha(1.0, 2)


def test_the_perfect_attacker_bound_is_the_ceiling_of_every_rule() -> None:
    alpha = bonferroni_alpha(0.95, 2 * len(GUESS_FRACTIONS))
    ceiling = perfect_attacker_bound(500, delta=1e-5, alpha=alpha)
    # (k+, k-) = (125, 125) is the largest rule: 250 guesses, all right.
    assert ceiling == epsilon_lower_bound(m=500, r=250, v=250, delta=1e-5, alpha=alpha)
    assert 3.5 < ceiling < 4.5
