"""The statistics of a one-run privacy audit: attack AUC and an empirical lower bound on epsilon.

Steinke, Nasr & Jagielski, "Privacy Auditing with One (1) Training Run", NeurIPS 2023 (arXiv:2305.08846).
``m`` canaries are each included in the training data with probability 1/2, independently. An auditor who
sees only the output makes ``r`` guesses (in for the ``k+`` highest scores, out for the ``k-`` lowest, no
guess on the rest) and gets ``v`` right. If the algorithm is (eps, delta)-DP, the number of correct guesses
is stochastically dominated by Binomial(r, e^eps / (1 + e^eps)) up to a delta term, so
``P[v or more correct] <= p_value(m, r, v, eps, delta)``; the largest eps whose p-value stays below
``1 - confidence`` is a lower bound on the true epsilon that holds with that confidence. ``p_value`` and
``epsilon_lower_bound`` follow the p-value and bisection code the authors publish with the paper (the
(eps, delta) version, with its ``2 m delta`` term) line by line; only the loop over ``i`` is vectorised.

The bound is valid only if the guessing rule is fixed before the scores are seen: the ``(k+, k-)`` choices
are the constants in ``GUESS_FRACTIONS``, and trying several of them (and several attacks) is paid for with
a Bonferroni correction of the confidence level (``bonferroni_alpha``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "CITATION",
    "GUESS_FRACTIONS",
    "AttackAudit",
    "GuessOutcome",
    "audit_scores",
    "auc",
    "bonferroni_alpha",
    "count_correct",
    "epsilon_lower_bound",
    "p_value",
    "perfect_attacker_bound",
]

CITATION = (
    'Thomas Steinke, Milad Nasr, Matthew Jagielski. "Privacy Auditing with One (1) Training Run". '
    "Advances in Neural Information Processing Systems 36 (NeurIPS 2023). arXiv:2305.08846"
)

# (k+, k-) as fractions of the number of canaries, fixed before any score is seen: a few positive-only
# guesses (membership signals are often one-sided), then balanced guesses at two depths.
GUESS_FRACTIONS: tuple[tuple[float, float], ...] = ((0.1, 0.0), (0.1, 0.1), (0.25, 0.25))

# p_value is increasing in eps and reaches 1 long before this (q rounds to 1.0 near eps = 37).
_EPS_CEILING = 64.0
_BISECTIONS = 60


def p_value(*, m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """Probability of ``v`` or more correct guesses out of ``r`` under (epsilon, delta)-DP, ``m`` canaries."""
    _check_counts(m, r, v)
    if not (epsilon >= 0 and 0 <= delta <= 1):
        raise ValueError(f"need epsilon >= 0 and delta in [0, 1], got epsilon={epsilon}, delta={delta}")
    q = 1.0 / (1.0 + math.exp(-epsilon))  # the accuracy of eps-DP randomized response
    beta = float(stats.binom.sf(v - 1, r, q))  # P[Binomial(r, q) >= v]
    alpha = 0.0
    if v > 0:
        # alpha = max over i in 1..v of P[v > Binomial(r, q) >= v - i] / i
        below = np.cumsum(stats.binom.pmf(np.arange(v - 1, -1, -1), r, q))
        alpha = float(np.max(below / np.arange(1, v + 1)))
    return min(beta + alpha * delta * 2 * m, 1.0)


def epsilon_lower_bound(*, m: int, r: int, v: int, delta: float, alpha: float) -> float:
    """The largest epsilon rejected at level ``alpha`` (= 1 - confidence); 0.0 when none is.

    Bisection as in the paper's code: it keeps ``p_value(lo) < alpha <= p_value(hi)`` and returns ``lo``,
    so rounding errs on the side of a smaller bound.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha (1 - confidence) must be in (0, 1), got {alpha}")
    lo, hi = 0.0, 1.0
    if p_value(m=m, r=r, v=v, epsilon=lo, delta=delta) >= alpha:
        return 0.0
    while p_value(m=m, r=r, v=v, epsilon=hi, delta=delta) < alpha:
        lo, hi = hi, hi + 1.0
        if hi > _EPS_CEILING:
            return lo
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        if p_value(m=m, r=r, v=v, epsilon=mid, delta=delta) < alpha:
            lo = mid
        else:
            hi = mid
    return lo


def bonferroni_alpha(confidence: float, tests: int) -> float:
    """The per-test level that keeps every one of ``tests`` bounds valid together at ``confidence``."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if tests < 1:
        raise ValueError(f"the number of tests must be >= 1, got {tests}")
    return (1.0 - confidence) / tests


def auc(scores: Sequence[float] | np.ndarray, included: Sequence[bool] | np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (higher = member) against ``included``; ties count one half.

    NaN when every canary is on the same side (the AUC is undefined).
    """
    s, y = _as_arrays(scores, included)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = stats.rankdata(s)  # average ranks: the Mann-Whitney U statistic with ties
    u = float(ranks[y].sum()) - positives * (positives + 1) / 2
    return u / (positives * negatives)


def count_correct(
    scores: Sequence[float] | np.ndarray, included: Sequence[bool] | np.ndarray, *, k_plus: int, k_minus: int
) -> tuple[int, int]:
    """Guess in for the ``k_plus`` highest scores and out for the ``k_minus`` lowest; return (guesses, correct).

    Ties are broken by canary index, which was fixed before the inclusion bits were drawn.
    """
    s, y = _as_arrays(scores, included)
    if k_plus < 0 or k_minus < 0 or k_plus + k_minus > len(s):
        raise ValueError(f"need 0 <= k+ and k-, k+ + k- <= {len(s)}, got k+={k_plus}, k-={k_minus}")
    order = np.argsort(s, kind="stable")
    guessed_in = order[len(s) - k_plus :] if k_plus else order[:0]
    guessed_out = order[:k_minus]
    return k_plus + k_minus, int(y[guessed_in].sum()) + int((~y[guessed_out]).sum())


@dataclass(frozen=True)
class GuessOutcome:
    """One pre-registered guessing rule and what it achieved."""

    k_plus: int
    k_minus: int
    guesses: int
    correct: int
    epsilon_lower_bound: float


@dataclass(frozen=True)
class AttackAudit:
    """An attack's AUC and the best bound over the guessing rules (each already Bonferroni-corrected)."""

    auc: float
    guesses: int
    correct: int
    epsilon_lower_bound: float
    rules: tuple[GuessOutcome, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (an undefined AUC becomes null)."""
        data = asdict(self)
        data["auc"] = None if math.isnan(self.auc) else self.auc
        data["rules"] = [asdict(rule) for rule in self.rules]
        return data


def audit_scores(
    scores: Sequence[float] | np.ndarray,
    included: Sequence[bool] | np.ndarray,
    *,
    delta: float,
    alpha: float,
    fractions: tuple[tuple[float, float], ...] = GUESS_FRACTIONS,
) -> AttackAudit:
    """Apply every rule in ``fractions`` at level ``alpha`` and keep the largest bound.

    The caller must count every rule of every attack in the Bonferroni correction that gave ``alpha``.
    """
    s, y = _as_arrays(scores, included)
    m = len(s)
    rules = []
    for plus, minus in fractions:
        k_plus, k_minus = _rule_size(plus, m), _rule_size(minus, m)
        r, v = count_correct(s, y, k_plus=k_plus, k_minus=k_minus)
        bound = epsilon_lower_bound(m=m, r=r, v=v, delta=delta, alpha=alpha)
        rules.append(GuessOutcome(k_plus, k_minus, r, v, bound))
    best = max(rules, key=lambda rule: rule.epsilon_lower_bound)
    return AttackAudit(auc(s, y), best.guesses, best.correct, best.epsilon_lower_bound, tuple(rules))


def perfect_attacker_bound(
    m: int, *, delta: float, alpha: float, fractions: tuple[tuple[float, float], ...] = GUESS_FRACTIONS
) -> float:
    """The bound an attacker who is always right would get: the most this audit can ever show.

    An accounted epsilon above it cannot be contradicted by this audit, however weak the privacy is.
    """
    sizes = [_rule_size(plus, m) + _rule_size(minus, m) for plus, minus in fractions]
    return max(epsilon_lower_bound(m=m, r=r, v=r, delta=delta, alpha=alpha) for r in sizes)


def _rule_size(fraction: float, m: int) -> int:
    if not 0 <= fraction <= 0.5:
        raise ValueError(f"a guess fraction must be in [0, 0.5], got {fraction}")
    return 0 if fraction == 0 else max(1, round(fraction * m))


def _as_arrays(
    scores: Sequence[float] | np.ndarray, included: Sequence[bool] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(included, dtype=bool)
    if s.ndim != 1 or s.shape != y.shape or len(s) == 0:
        raise ValueError(f"scores and inclusion bits must be non-empty and of one length, got {s.shape}, {y.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite numbers; an attack produced NaN or infinity")
    return s, y


def _check_counts(m: int, r: int, v: int) -> None:
    if not 0 <= v <= r <= m:
        raise ValueError(f"need 0 <= correct <= guesses <= canaries, got v={v}, r={r}, m={m}")
