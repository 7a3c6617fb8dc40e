"""The public table schema: column types, public bounds, category lists and public bin edges.

A schema holds only public information (domain-knowledge bounds, published category lists), so it may be
shared freely between the server and the sites; everything that shapes the synthesizer (the encoder's bins,
its layout) is derived from it and never from data. ``Schema.hash`` identifies the semantic content, so two
parties can check that they use the same schema without comparing files.

The JSON format is the one of ``shared/data/*/schema.json``; unknown keys (``title``, ``note``, ...) are
informational and ignored. Category lists may be written as integers (``[1, 2]``); they are read as their
decimal text, because a CSV cell is text.

``privacy_unit`` (optional) names the identifier column that says whose row it is (a patient id). With it,
every guarantee is per unit, not per row: see ``client.units``. Without it, each row is its own unit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn, cast

from shared.errors import SchemaError

__all__ = ["Column", "ColumnType", "Dtype", "Schema", "load_schema"]

ColumnType = Literal["continuous", "categorical", "identifier"]
Dtype = Literal["integer", "float"]
_TYPES = ("continuous", "categorical", "identifier")
_DTYPES = ("integer", "float")


class _ColumnProblem(SchemaError):
    """A column is inconsistent; carries the bare problem so a loader can say where it is in its file."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"column {name!r}: {problem}")
        self.problem = problem


@dataclass(frozen=True)
class Column:
    """One column of a table, as the public schema describes it."""

    name: str
    type: ColumnType
    dtype: Dtype | None = None
    bounds: tuple[float, float] | None = None
    categories: tuple[str, ...] | None = None
    nullable: bool = False
    bins: tuple[float, ...] | None = None
    derived_from: str | None = None
    # A dict cannot be hashed; equality still compares it.
    mapping: dict[str, float] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SchemaError(f"column name must be a non-empty string, got {self.name!r}")
        if self.type not in _TYPES:
            self._fail(f'"type" must be one of {", ".join(_TYPES)}, got {self.type!r}')
        if self.type == "continuous":
            self._check_continuous()
        else:
            for key in ("dtype", "bounds", "bins", "derived_from", "mapping"):
                if getattr(self, key) is not None:
                    self._fail(f'"{key}" applies to continuous columns only; remove it')
        if self.type == "categorical":
            self._check_categories()
        elif self.categories is not None:
            self._fail('"categories" applies to categorical columns only; remove it')

    @property
    def is_integer(self) -> bool:
        """True for a continuous column whose values are whole numbers."""
        return self.type == "continuous" and self.dtype == "integer"

    def _fail(self, problem: str) -> NoReturn:
        raise _ColumnProblem(self.name, problem)

    def _check_continuous(self) -> None:
        if self.dtype not in _DTYPES:
            self._fail(f'"dtype" must be "integer" or "float", got {self.dtype!r}')
        if self.bounds is None:
            self._fail('continuous column needs "bounds" [lo, hi] (public, from domain knowledge)')
        lo, hi = self.bounds
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            self._fail(f'"bounds" must be finite with lo < hi, got [{lo}, {hi}]')
        if self.is_integer and not (float(lo).is_integer() and float(hi).is_integer()):
            self._fail('"bounds" of an integer column must be whole numbers')
        if self.bins is not None:
            self._check_bins(lo, hi, self.bins)
        if (self.derived_from is None) != (self.mapping is None):
            self._fail('"derived_from" and "mapping" go together; give both or neither')
        for category, value in (self.mapping or {}).items():
            if not (math.isfinite(value) and lo <= value <= hi):
                self._fail(f'"mapping" value for {category!r} must lie within "bounds"')
            if self.is_integer and not float(value).is_integer():
                self._fail(f'"mapping" value for {category!r} must be a whole number (integer column)')

    def _check_bins(self, lo: float, hi: float, bins: tuple[float, ...]) -> None:
        if len(bins) < 2 or bins[0] != lo or bins[-1] != hi:
            self._fail(f'"bins" must list at least two edges, the first == {lo:g} and the last == {hi:g}')
        if any(not math.isfinite(b) or b >= c for b, c in zip(bins, bins[1:])):
            self._fail('"bins" edges must be finite and strictly ascending')
        if self.is_integer and any(not float(b).is_integer() for b in bins):
            self._fail('"bins" edges of an integer column must be whole numbers')

    def _check_categories(self) -> None:
        if not self.categories:
            self._fail('categorical column needs a non-empty "categories" list')
        if any(not isinstance(c, str) for c in self.categories):
            self._fail('"categories" must be strings')
        if len(set(self.categories)) != len(self.categories):
            self._fail('"categories" must be unique; remove the repeated entries')

    def to_dict(self) -> dict[str, Any]:
        """The semantic content as JSON-ready data (numbers normalised so the hash is stable)."""
        out: dict[str, Any] = {"name": self.name, "type": self.type, "nullable": self.nullable}
        if self.type == "continuous":
            out["dtype"] = self.dtype
            out["bounds"] = [_num(b) for b in self.bounds or ()]
        if self.categories is not None:
            out["categories"] = list(self.categories)
        if self.bins is not None:
            out["bins"] = [_num(b) for b in self.bins]
        if self.derived_from is not None:
            out["derived_from"] = self.derived_from
            out["mapping"] = {k: _num(v) for k, v in (self.mapping or {}).items()}
        return out


@dataclass(frozen=True)
class Schema:
    """A table's public schema; validates that its columns are consistent with each other."""

    name: str
    columns: tuple[Column, ...]
    target: str | None = None
    sensitive: tuple[str, ...] = ()
    split_by: str | None = None
    # The identifier column naming who a row belongs to (a patient, a customer): the privacy unit. None: each
    # row is its own unit (record-level DP). Sites then bound and account per unit (client.units).
    privacy_unit: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SchemaError('"dataset" must be a non-empty string naming the dataset')
        if not self.columns:
            raise SchemaError('"columns" must list at least one column')
        names = [c.name for c in self.columns]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise SchemaError(f"columns[{i}] ({name!r}): the name is used twice; rename one of them")
        for i, col in enumerate(self.columns):
            if col.derived_from is not None:
                self._check_derived(i, col)
        self._check_reference("target", self.target)
        for i, name in enumerate(self.sensitive):
            self._check_reference(f"sensitive_attributes[{i}]", name)
        self._check_reference("split_by", self.split_by)
        if self.split_by is not None and self.column(self.split_by).type != "categorical":
            raise SchemaError(f'"split_by" must name a categorical column, {self.split_by!r} is not one')
        if self.privacy_unit is not None:
            self._check_unit(self.privacy_unit)

    def _check_unit(self, name: str) -> None:
        found = next((c for c in self.columns if c.name == name), None)
        if found is None or found.type != "identifier":
            raise SchemaError(
                f'"privacy_unit" names {name!r}, which is not an identifier column; name the column that says '
                "whose row it is (e.g. a patient id, declared with \"type\": \"identifier\")"
            )
        if found.nullable:
            raise SchemaError(
                f'"privacy_unit" column {name!r} must not be nullable: a row without an owner cannot be bounded '
                "per unit; remove \"nullable\": true (rows missing it are then quarantined)"
            )

    def _check_derived(self, i: int, col: Column) -> None:
        where = f"columns[{i}] ({col.name!r})"
        source = next((c for c in self.columns if c.name == col.derived_from), None)
        if source is None or source.type != "categorical":
            raise SchemaError(f'{where}: "derived_from" must name a categorical column, got {col.derived_from!r}')
        unmapped = [c for c in source.categories or () if c not in (col.mapping or {})]
        unknown = [k for k in col.mapping or {} if k not in (source.categories or ())]
        if unmapped or unknown:
            raise SchemaError(
                f'{where}: "mapping" must map exactly the categories of {source.name!r}; '
                f"missing {unmapped}, unknown {unknown}"
            )
        if source.nullable and not col.nullable:
            raise SchemaError(f'{where}: must be "nullable": true because {source.name!r} is nullable')

    def _check_reference(self, key: str, name: str | None) -> None:
        if name is None:
            return
        found = next((c for c in self.columns if c.name == name), None)
        if found is None:
            raise SchemaError(f'"{key}" names {name!r}, which is not a column; fix the name')
        if found.type == "identifier":
            raise SchemaError(f'"{key}" names the identifier column {name!r}; identifiers are never synthesized')

    def column(self, name: str) -> Column:
        """The column called ``name``; raises ``SchemaError`` if there is none."""
        for col in self.columns:
            if col.name == name:
                return col
        raise SchemaError(f"schema {self.name!r} has no column {name!r}")

    @property
    def synthesized_columns(self) -> tuple[Column, ...]:
        """Every column except identifiers (derived columns included)."""
        return tuple(c for c in self.columns if c.type != "identifier")

    @property
    def hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON of :meth:`to_dict`."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The semantic content in the schema.json format (no notes)."""
        out: dict[str, Any] = {
            "dataset": self.name,
            "sensitive_attributes": list(self.sensitive),
            "columns": [c.to_dict() for c in self.columns],
        }
        if self.target is not None:
            out["target"] = self.target
        if self.split_by is not None:
            out["split_by"] = self.split_by
        if self.privacy_unit is not None:  # absent for record-level schemas, so their hash is unchanged
            out["privacy_unit"] = self.privacy_unit
        return out

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "schema") -> Schema:
        """Build and validate a schema from parsed JSON; errors name ``source`` and the JSON path."""
        if not isinstance(data, dict):
            raise SchemaError(f"{source}: the top level must be a JSON object")
        raw_columns = data.get("columns")
        if not isinstance(raw_columns, list):
            raise SchemaError(f'{source}: "columns" must be a list of column objects')
        columns = tuple(_column_from_raw(raw, f"{source}: columns[{i}]") for i, raw in enumerate(raw_columns))
        sensitive = data.get("sensitive_attributes", [])
        if not isinstance(sensitive, list) or any(not isinstance(s, str) for s in sensitive):
            raise SchemaError(f'{source}: "sensitive_attributes" must be a list of column names')
        for key in ("dataset", "target", "split_by", "privacy_unit"):
            if key in data and data[key] is not None and not isinstance(data[key], str):
                raise SchemaError(f'{source}: "{key}" must be a string')
        try:
            return cls(
                name=data.get("dataset", ""),
                columns=columns,
                target=data.get("target"),
                sensitive=tuple(sensitive),
                split_by=data.get("split_by"),
                privacy_unit=data.get("privacy_unit"),
            )
        except SchemaError as exc:
            raise SchemaError(f"{source}: {exc}") from None


def load_schema(path: str | os.PathLike[str]) -> Schema:
    """Read and validate a ``schema.json`` file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SchemaError(f"{source}: schema file not found; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaError(f"{source}: cannot read the schema file ({type(exc).__name__})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"{source}: line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg})") from None
    return Schema.from_dict(data, source=source)


def _column_from_raw(raw: Any, where: str) -> Column:
    """Check the JSON shape of one column object and build the ``Column``."""
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise SchemaError(f'{where}: needs a "name" (a non-empty string)')
    where = f"{where} ({name!r})"
    ctype = raw.get("type")
    nullable = raw.get("nullable", False)
    if not isinstance(nullable, bool):
        raise SchemaError(f'{where}: "nullable" must be true or false')
    dtype = raw.get("dtype", "float" if ctype == "continuous" else None)
    mapping = raw.get("mapping")
    if mapping is not None and not isinstance(mapping, dict):
        raise SchemaError(f'{where}: "mapping" must be an object {{category: number}}')
    try:
        return Column(
            name=name,
            type=cast(ColumnType, ctype),
            dtype=cast("Dtype | None", dtype),
            bounds=_bounds(raw.get("bounds"), where),
            categories=_categories(raw.get("categories"), where),
            nullable=nullable,
            bins=_numbers(raw.get("bins"), where, "bins"),
            derived_from=_optional_str(raw.get("derived_from"), where, "derived_from"),
            mapping=None if mapping is None else {k: _number(v, where, f"mapping.{k}") for k, v in mapping.items()},
        )
    except _ColumnProblem as exc:
        raise SchemaError(f"{where}: {exc.problem}") from None


def _bounds(raw: Any, where: str) -> tuple[float, float] | None:
    values = _numbers(raw, where, "bounds")
    if values is not None and len(values) != 2:
        raise SchemaError(f'{where}: "bounds" must be a list of two numbers [lo, hi]')
    return None if values is None else (values[0], values[1])


def _numbers(raw: Any, where: str, key: str) -> tuple[float, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise SchemaError(f'{where}: "{key}" must be a list of numbers')
    return tuple(_number(v, where, key) for v in raw)


def _number(raw: Any, where: str, key: str) -> float:
    # bool is an int subclass in Python; `true` is never a number in a schema.
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise SchemaError(f'{where}: "{key}" must hold numbers, found {type(raw).__name__}')
    return float(raw)


def _categories(raw: Any, where: str) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise SchemaError(f'{where}: "categories" must be a list of strings')
    out = []
    for item in raw:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            out.append(str(item))  # integer codes (e.g. SEX 1/2) appear in CSV cells as their text
        else:
            raise SchemaError(f'{where}: "categories" must be strings (or integer codes), found {type(item).__name__}')
    return tuple(out)


def _optional_str(raw: Any, where: str, key: str) -> str | None:
    if raw is not None and not isinstance(raw, str):
        raise SchemaError(f'{where}: "{key}" must be a column name (a string)')
    return raw


def _num(value: float) -> int | float:
    """Normalise a number for canonical JSON: whole numbers as int, so 17 and 17.0 hash alike."""
    return int(value) if float(value).is_integer() else float(value)
