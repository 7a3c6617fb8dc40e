"""Privacy accounting: epsilon from a release history, and the noise that reaches a budget.

A thin, validating layer over Opacus's accountants (``opacus.accountants``); no accountant is
re-implemented here. A *history* is Opacus's own format: a list of ``(noise_multiplier, sample_rate,
num_steps)`` entries, one per run of identical Poisson-subsampled Gaussian releases. Everything a site
releases with DP (DP-SGD steps, a noisy metric, a noisy count) is such an entry, so one history composes
them all.

Only the RDP accountant (Mironov 2017; conversion of Balle et al. 2020, Thm. 21) and the PRV accountant
(Gopi et al. 2021) are offered: both give an upper bound on epsilon. Opacus's GDP accountant uses a
central-limit approximation that may *under*-state epsilon, so it is refused.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from shared.errors import BudgetExceededError, ConfigError

__all__ = [
    "ACCOUNTANTS",
    "DEFAULT_ACCOUNTANT",
    "History",
    "HistoryEntry",
    "check_accountant",
    "check_delta",
    "check_history",
    "epsilon",
    "projected_epsilon",
    "question_key",
    "remember",
    "solve_noise_multiplier",
]

logger = logging.getLogger(__name__)

HistoryEntry = tuple[float, float, int]
History = list[HistoryEntry]

ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv")
# PRV is the tighter of the two honest bounds (~9% below RDP on the default plan); it is the run default.
DEFAULT_ACCOUNTANT = "prv"

# Same ceiling as opacus.accountants.utils.MAX_SIGMA: beyond it the model learns nothing anyway.
_MAX_SIGMA = 1e6
# Bisection halves the interval each time; 200 halvings of [0, 1e6] is far below float resolution.
_MAX_BISECTIONS = 200


def check_accountant(accountant: str) -> str:
    """Return ``accountant`` if it gives an upper bound on epsilon, else raise ConfigError."""
    if accountant == "gdp":
        raise ConfigError(
            "accountant 'gdp' is refused: Opacus's GDP accountant is a central-limit approximation, "
            "not an upper bound on epsilon, so it cannot certify a budget. Use 'rdp' or 'prv'."
        )
    if accountant not in ACCOUNTANTS:
        raise ConfigError(f"accountant must be one of {ACCOUNTANTS}, got {accountant!r}")
    return accountant


def check_delta(delta: float) -> float:
    """Return ``delta`` as a float if it lies in (0, 1), else raise ConfigError."""
    if not isinstance(delta, (int, float)) or not 0.0 < float(delta) < 1.0:
        raise ConfigError(f"delta must be a number in (0, 1), got {delta!r}")
    return float(delta)


def _check_entry(entry: Sequence[float | int], where: str) -> HistoryEntry:
    """Validate one history entry; ``where`` names it in the error (e.g. 'history[3]')."""
    if len(entry) != 3:
        raise ConfigError(
            f"{where} must be (noise_multiplier, sample_rate, steps), got {len(entry)} values"
        )
    noise, rate, steps = entry
    if not _is_number(noise) or not math.isfinite(noise) or noise <= 0:
        raise ConfigError(f"{where}: noise_multiplier must be a finite number > 0, got {noise!r}")
    if not _is_number(rate) or not 0.0 < rate <= 1.0:
        raise ConfigError(f"{where}: sample_rate must be a number in (0, 1], got {rate!r}")
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ConfigError(f"{where}: steps must be an integer >= 0, got {steps!r}")
    return (float(noise), float(rate), steps)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_history(history: Iterable[Sequence[float | int]], name: str = "history") -> History:
    """Validate every entry of ``history`` and return it as a clean list of tuples."""
    return [_check_entry(entry, f"{name}[{i}]") for i, entry in enumerate(history)]


def _compact(history: History) -> History:
    """Merge entries with the same (noise, sample rate) and drop zero-step ones.

    Composition of independent mechanisms does not depend on their order, so this is exact for both
    accountants; it keeps PRV's FFT composition proportional to the number of *distinct* mechanisms
    instead of the number of rounds.
    """
    steps_of: dict[tuple[float, float], int] = {}
    for noise, rate, steps in history:
        if steps > 0:
            steps_of[(noise, rate)] = steps_of.get((noise, rate), 0) + steps
    return [(noise, rate, steps) for (noise, rate), steps in steps_of.items()]


def _raw_epsilon(history: History, delta: float, accountant: str) -> float:
    """Epsilon of an already validated history (no checks: used inside the solver's loop)."""
    compact = _compact(history)
    if not compact:
        return 0.0
    # Sorted, so that the same releases in another order (the same composition) hit the same cache entry.
    canonical = tuple(sorted(compact))
    if _REMEMBERED:
        remembered = _REMEMBERED.get(_question_key(canonical, delta, accountant))
        if remembered is not None:
            return remembered
    return _cached_epsilon(canonical, delta, accountant)


# Answers this same code computed in another process of the same site (client.epsilon_foresight), by key.
_REMEMBERED: dict[str, float] = {}


def question_key(history: Iterable[Sequence[float | int]], *, delta: float, accountant: str) -> str:
    """A name for the question "epsilon of ``history`` at ``delta`` by ``accountant``" that is the same in every
    process running this module with this Opacus, and differs for any other question or code."""
    canonical = tuple(sorted(_compact(check_history(history))))
    return _question_key(canonical, check_delta(delta), check_accountant(accountant))


def remember(key: str, value: float) -> None:
    """Take ``value`` as the answer to the question ``key`` names (see :func:`question_key`).

    Only for an answer :func:`epsilon` gave, under that key, in another process of the same site: the key
    covers the history, delta, accountant, this module's source and Opacus's version, so a remembered value
    is exactly what this process would compute.
    """
    if not isinstance(value, float) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"a remembered epsilon must be a finite float >= 0, got {value!r}")
    _REMEMBERED[key] = value


def _question_key(canonical: tuple[HistoryEntry, ...], delta: float, accountant: str) -> str:
    return hashlib.sha256(repr((canonical, delta, accountant)).encode() + _code_fingerprint()).hexdigest()


@functools.cache
def _code_fingerprint() -> bytes:
    return hashlib.sha256(Path(__file__).read_bytes() + importlib.metadata.version("opacus").encode()).digest()


@functools.lru_cache(maxsize=1024)
def _cached_epsilon(compact: tuple[HistoryEntry, ...], delta: float, accountant: str) -> float:
    """PRV costs ~0.1-0.5 s a call, and a round asks the same question several times (the site's cap check,
    its ledger entry, the server's mirror of every site): a pure function of its arguments, so cache it."""
    # Imported here: Opacus pulls in torch and scipy (~3 s), and a deployed site starts a fresh process for
    # every message, most of which never compute an epsilon (secure-aggregation stages, delivery).
    from opacus.accountants import create_accountant

    engine = create_accountant(mechanism=accountant)
    engine.history = list(compact)
    # One BLAS thread: inside Flower's simulation (a process forked from one that had already started
    # OpenBLAS's thread pool) PRV's np.dot span forever in OpenBLAS's exec_blas; it is a 1-D dot anyway.
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings(), np.errstate(divide="ignore"):
        # PRV takes log(1 - q), which is -inf for unsampled releases (q = 1, e.g. a noisy metric or a
        # site-level round); its own np.where then discards that branch, so the result is exact.
        warnings.filterwarnings("ignore", message="Optimal order is the")
        return float(engine.get_epsilon(delta=delta))


def epsilon(
    history: Iterable[Sequence[float | int]], *, delta: float, accountant: str = DEFAULT_ACCOUNTANT
) -> float:
    """Epsilon spent by ``history`` at ``delta``, from a fresh Opacus accountant.

    Parameters
    ----------
    history
        Opacus accountant history: ``(noise_multiplier, sample_rate, num_steps)`` entries.
    delta
        Target delta, in (0, 1).
    accountant
        ``"prv"`` (default) or ``"rdp"``.

    Returns
    -------
    float
        The cumulative epsilon; 0.0 for an empty history.
    """
    checked = check_history(history)
    return _raw_epsilon(checked, check_delta(delta), check_accountant(accountant))


def projected_epsilon(
    history: Iterable[Sequence[float | int]],
    next_releases: Iterable[Sequence[float | int]],
    *,
    delta: float,
    accountant: str = DEFAULT_ACCOUNTANT,
) -> float:
    """Epsilon after ``next_releases`` are added to ``history`` (to check a cap before spending)."""
    combined = check_history(history) + check_history(next_releases, "next_releases")
    return _raw_epsilon(combined, check_delta(delta), check_accountant(accountant))


def solve_noise_multiplier(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    extra_history: Iterable[Sequence[float | int]] = (),
    accountant: str = DEFAULT_ACCOUNTANT,
    tolerance: float = 0.01,
) -> float:
    """The smallest noise multiplier whose DP-SGD run, composed with ``extra_history``, fits the target.

    Returns ``sigma`` with ``target_epsilon - tolerance <= epsilon([(sigma, sample_rate, steps),
    *extra_history]) <= target_epsilon``. This is the bisection of
    ``opacus.accountants.utils.get_noise_multiplier``, extended with ``extra_history`` (other releases
    charged to the same budget, e.g. noisy metrics), which Opacus's helper cannot take.

    Raises
    ------
    BudgetExceededError
        If ``extra_history`` alone already spends the target, or no noise up to 1e6 reaches it.
    ConfigError
        If an argument is out of range.
    """
    target, tol = _check_solver_args(target_epsilon, tolerance)
    d = check_delta(delta)
    mech = check_accountant(accountant)
    (_, rate, n_steps) = _check_entry((1.0, sample_rate, steps), "DP-SGD run")
    if n_steps < 1:
        raise ConfigError(f"steps must be an integer >= 1 to solve for noise, got {steps!r}")
    extra = check_history(extra_history, "extra_history")
    with warnings.catch_warnings():
        # Opacus warns when the best RDP order is at the edge of its grid; in the bracket search that
        # is expected (very large or small sigma) and says nothing about the final answer.
        warnings.filterwarnings("ignore", message="Optimal order is the")
        _refuse_if_extra_alone_exceeds(extra, target, d, mech)

        def cost(sigma: float) -> float:
            return _raw_epsilon([(sigma, rate, n_steps), *extra], d, mech)

        return _bisect(cost, target, tol)


def _check_solver_args(target_epsilon: float, tolerance: float) -> tuple[float, float]:
    if not _is_number(target_epsilon) or not math.isfinite(target_epsilon) or target_epsilon <= 0:
        raise ConfigError(f"target_epsilon must be a finite number > 0, got {target_epsilon!r}")
    if not _is_number(tolerance) or not 0 < tolerance < target_epsilon:
        raise ConfigError(
            f"tolerance must be a number in (0, target_epsilon={target_epsilon}), got {tolerance!r}"
        )
    return float(target_epsilon), float(tolerance)


def _refuse_if_extra_alone_exceeds(
    extra: History, target: float, delta: float, accountant: str
) -> None:
    """Infinite DP-SGD noise costs nothing, so ``extra`` alone is the floor of what we can reach."""
    floor = _raw_epsilon(extra, delta, accountant)
    if floor >= target:
        raise BudgetExceededError(
            f"the other releases charged to this budget (extra_history, e.g. noisy metrics) already "
            f"cost epsilon={floor:.4g} >= target_epsilon={target:.4g}, leaving nothing for training. "
            "Raise the target epsilon, run fewer rounds, or raise the noise on those metrics."
        )


def _bisect(cost: Callable[[float], float], target: float, tolerance: float) -> float:
    """Bisection on sigma, as in Opacus's get_noise_multiplier: returns a sigma whose cost <= target."""
    sigma_low, sigma_high = 0.0, 10.0
    eps_high = math.inf
    while eps_high > target:
        sigma_high *= 2
        if sigma_high > _MAX_SIGMA:
            raise BudgetExceededError(
                f"no noise multiplier up to {_MAX_SIGMA:g} reaches target_epsilon={target:.4g}; the "
                "other releases leave almost no budget. Raise the target epsilon, run fewer rounds, "
                "or raise the noise on the metrics."
            )
        eps_high = cost(sigma_high)
    for _ in range(_MAX_BISECTIONS):
        if target - eps_high <= tolerance:
            return sigma_high
        sigma = (sigma_low + sigma_high) / 2
        eps = cost(sigma)
        if eps <= target:
            sigma_high, eps_high = sigma, eps
        else:
            sigma_low = sigma
    # Still safe (cost <= target), only noisier than necessary; say so rather than loop forever.
    logger.warning("noise solver stopped before reaching tolerance %s; result is conservative", tolerance)
    return sigma_high
