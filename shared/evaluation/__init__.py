"""Local scoring of a synthetic table against real rows: fidelity, utility (TSTR), privacy and bias.

Runs at a site, on its own rows; what it returns is a report of aggregate scores that names no row and no
value from one, so it may be shared. ``evaluate`` takes validated frames, ``evaluate_files`` CSV files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.evaluation.report import EvaluationReport, evaluate, evaluate_files

__all__ = ["EvaluationReport", "evaluate", "evaluate_files"]


def __getattr__(name: str) -> Any:
    # Loaded on first use (PEP 562): the report needs scikit-learn (~2 s to import), and a site that only
    # trains imports this package for ``frames`` alone, in a fresh process for every message.
    if name in __all__:
        from shared.evaluation import report

        return getattr(report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
