"""The fedsynth error hierarchy.

Every message says what is wrong, where (file, row, column, config key) and what to do about it. None may
carry the value of a field from a site's table: errors travel to logs, terminals and, for a site, possibly
to the server.
"""

from __future__ import annotations


class FedsynthError(Exception):
    """Base class of every error fedsynth raises on purpose."""


class ConfigError(FedsynthError):
    """A run, node or command-line setting is missing or out of range."""


class SchemaError(FedsynthError):
    """A schema file is malformed or inconsistent."""


class DataValidationError(FedsynthError):
    """A table does not follow its schema (names file, row and column, never the value)."""


class BudgetExceededError(FedsynthError):
    """Training would spend more privacy budget than a site or the consortium allows."""


class LedgerError(FedsynthError):
    """A privacy ledger is unreadable, inconsistent or disagrees with its accountant."""


class VerificationError(FedsynthError):
    """A signed output failed verification (bad signature, altered or missing file)."""


class SecureAggregationError(FedsynthError):
    """A secure-aggregation round cannot continue safely (too few sites, a refused or malformed message)."""
