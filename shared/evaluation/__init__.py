"""Local scoring of a synthetic table against real rows: fidelity, utility (TSTR), privacy and bias.

Runs at a site, on its own rows; what it returns is a report of aggregate scores that names no row and no
value from one, so it may be shared. ``evaluate`` takes validated frames, ``evaluate_files`` CSV files.
"""

from shared.evaluation.report import EvaluationReport, evaluate, evaluate_files

__all__ = ["EvaluationReport", "evaluate", "evaluate_files"]
