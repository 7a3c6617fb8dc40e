"""Requested class shares of the synthetic table: rebalancing the target, e.g. oversampling fraud to 50%.

A fraud analyst wants a training table in which the rare class is common. Drawing the pooled synthetic table
with chosen shares of the target's classes is post-processing of the DP generator: each class's rows come from
the generator conditioned on that class (``TabularGenerator.sample_conditional``), so no real row is copied and
no privacy budget is spent. The shares are the coordinator's choice, not a fact about the data, and the
manifest records them so that no reader mistakes the synthetic class balance for the real one.

Written ``CATEGORY=SHARE[,CATEGORY=SHARE...]`` (run config ``sample.class-shares``, ``fedsynth demo
--oversample``), e.g. ``1=0.5``. Categories left out share what remains in proportion to a base: the DP class
frequencies when the run paid for them, else the generator's own shares.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from shared.errors import ConfigError
from shared.schema import Schema

__all__ = ["ClassShares", "resolve_shares"]

_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ClassShares:
    """Shares of some of the target's classes, each in [0, 1], adding up to at most 1."""

    shares: tuple[tuple[str, float], ...]
    key: str = "sample.class-shares"  # where the value was typed, for the error messages

    def __post_init__(self) -> None:
        if not self.shares:
            raise ConfigError(f"{self.key} must name at least one class, e.g. '1=0.5'")
        names = [name for name, _ in self.shares]
        for name, share in self.shares:
            if not name:
                raise ConfigError(f"{self.key}: a class name is empty; write CATEGORY=SHARE, e.g. '1=0.5'")
            if names.count(name) > 1:
                raise ConfigError(f"{self.key}: class {name!r} is given twice; give each class once")
            if not (math.isfinite(share) and 0.0 <= share <= 1.0):
                raise ConfigError(f"{self.key}: the share of class {name!r} must be in [0, 1], got {share!r}")
        if self.total > 1.0 + _TOLERANCE:
            raise ConfigError(f"{self.key}: the shares add up to {self.total:g}, more than 1; lower them")

    @property
    def total(self) -> float:
        return math.fsum(share for _, share in self.shares)

    def as_dict(self) -> dict[str, float]:
        return dict(self.shares)

    def to_text(self) -> str:
        """The ``CATEGORY=SHARE,...`` form that :meth:`parse` reads back."""
        return ",".join(f"{name}={share:g}" for name, share in self.shares)

    @classmethod
    def parse(cls, text: object, *, key: str = "sample.class-shares") -> ClassShares | None:
        """Read ``CATEGORY=SHARE[,CATEGORY=SHARE...]``; empty text means no rebalancing (None)."""
        if not isinstance(text, str):
            raise ConfigError(f"{key} must be text like '1=0.5', got {text!r}")
        if not text.strip():
            return None
        pairs: list[tuple[str, float]] = []
        for part in text.split(","):
            name, sep, value = part.partition("=")
            if not sep:
                raise ConfigError(f"{key}: {part.strip()!r} is not CATEGORY=SHARE; write e.g. '1=0.5'")
            try:
                share = float(value)
            except ValueError:
                raise ConfigError(f"{key}: the share of class {name.strip()!r} must be a number, got {value.strip()!r}") from None
            pairs.append((name.strip(), share))
        return cls(tuple(pairs), key=key)

    def check(self, schema: Schema) -> None:
        """Refuse shares the schema cannot honour: no categorical target, or a class it does not list."""
        if schema.target is None:
            raise ConfigError(f"{self.key}: schema {schema.name!r} names no target column whose classes to rebalance")
        target = schema.column(schema.target)
        if target.type != "categorical":
            raise ConfigError(f"{self.key}: the target {target.name!r} is {target.type}, not categorical; drop the key")
        categories = list(target.categories or ())
        unknown = [name for name, _ in self.shares if name not in categories]
        if unknown:
            raise ConfigError(
                f"{self.key}: {unknown} are not classes of the target {target.name!r}; its classes are {categories}"
            )
        if len(self.shares) == len(categories) and abs(self.total - 1.0) > 1e-6:
            raise ConfigError(
                f"{self.key}: every class of {target.name!r} is given, so the shares must add up to 1, got {self.total:g}"
            )


def resolve_shares(
    categories: Sequence[str], requested: ClassShares | None, base: Mapping[str, float]
) -> dict[str, float]:
    """A share for every category: the requested ones as given, the rest splitting the remainder like ``base``.

    ``base`` (the DP class frequencies, or the generator's own shares) need not add up to 1. Without a request
    the result is ``base`` normalised; where ``base`` gives the unlisted classes nothing, they split evenly.
    """
    given = requested.as_dict() if requested is not None else {}
    rest = [c for c in categories if c not in given]
    remainder = max(0.0, 1.0 - math.fsum(given.values()))
    weights = {c: max(0.0, float(base.get(c, 0.0))) for c in rest}
    total = math.fsum(weights.values())
    out = {c: given.get(c, 0.0) for c in categories}
    for c in rest:
        out[c] = remainder * (weights[c] / total if total > 0 else 1.0 / len(rest))
    return out
