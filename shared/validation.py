"""Validation of a site's table against the public schema.

A CSV is read with every field as text (nothing guessed, an empty field is missing), each cell is checked
against its column, and rows with a failing cell are quarantined: kept out of the clean frame and written,
on request, to a site-local side file. Issues name the file, the row and the column, never the value: they
go to logs and terminals, and a site may forward them. Values outside the public bounds are not failures;
they are counted and later clipped by the encoder.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from shared.atomic import atomic_write_text
from shared.errors import DataValidationError, FedsynthError
from shared.schema import Column, Schema, load_schema

__all__ = ["Issue", "ValidationResult", "check_table", "read_site_table", "validate_table", "write_quarantine"]

logger = logging.getLogger(__name__)

ROW_COLUMN = "_row"
MAX_PRINTED_ISSUES = 50
EMPTY = "value is empty but the column is not nullable; fill it in or mark the column nullable"
NOT_A_CATEGORY = "value is not in the schema's category list; fix the spelling or extend the list"
NOT_A_NUMBER = "value is not a finite number; write a plain decimal number"
NOT_AN_INTEGER = "value is not a whole number (integer column); write an integer"
NOT_MAPPED = "value does not match the schema's mapping from {source!r}; fix either column"


@dataclass(frozen=True)
class Issue:
    """One failing cell: where it is and what is wrong (never its value)."""

    source: str
    row: int
    column: str
    problem: str


@dataclass(frozen=True, eq=False)
class ValidationResult:
    """The outcome of validating one table."""

    source: str
    rows_read: int
    clean: pd.DataFrame
    quarantined: pd.DataFrame
    issues: tuple[Issue, ...]
    out_of_bounds: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no row failed."""
        return not self.issues

    def summary(self) -> str:
        """Counts only: rows read, clean, quarantined, issues and out-of-bounds values per column."""
        lines = [
            f"{self.source}: {self.rows_read} rows read, {len(self.clean)} clean, "
            f"{len(self.quarantined)} quarantined"
        ]
        by_column = Counter(issue.column for issue in self.issues)
        if by_column:
            lines.append("issues by column: " + ", ".join(f"{c} {n}" for c, n in by_column.items()))
        outside = {c: n for c, n in self.out_of_bounds.items() if n}
        if outside:
            lines.append(
                "outside the public bounds (kept; clipped when encoded): "
                + ", ".join(f"{c} {n}" for c, n in outside.items())
            )
        return "\n".join(lines)


def validate_table(df: pd.DataFrame, schema: Schema, *, source: str) -> ValidationResult:
    """Validate an in-memory frame of strings (empty string or NA = missing); rows are numbered from 1."""
    return _validate(df.reset_index(drop=True), schema, source, np.arange(1, len(df) + 1))


def read_site_table(path: str | os.PathLike[str], schema: Schema) -> ValidationResult:
    """Read a CSV (or .csv.gz) file as text and validate it against ``schema``."""
    frame, rows = _read_csv_text(Path(path))
    return _validate(frame, schema, str(path), rows)


def write_quarantine(result: ValidationResult, path: str | os.PathLike[str]) -> None:
    """Write the failing rows, as read, plus their row number to ``path`` (site-local: it holds values)."""
    atomic_write_text(path, result.quarantined.to_csv(index=False))


def check_table(
    schema_path: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    quarantine_path: str | os.PathLike[str] | None = None,
) -> int:
    """``fedsynth schema check``: print issues and a summary; 0 if every row passed, 1 if not, 2 on error."""
    try:
        result = read_site_table(data_path, load_schema(schema_path))
        for issue in result.issues[:MAX_PRINTED_ISSUES]:
            print(f"{issue.source}:{issue.row}: column {issue.column!r}: {issue.problem}")
        if len(result.issues) > MAX_PRINTED_ISSUES:
            print(f"... and {len(result.issues) - MAX_PRINTED_ISSUES} more")
        print(result.summary())
        if result.ok:
            return 0
        data = Path(data_path)
        target = Path(quarantine_path) if quarantine_path else data.with_name(_stem(data) + ".quarantine.csv")
        write_quarantine(result, target)
        print(f"quarantined rows written to {target} (holds raw values: keep it at the site)")
        return 1
    except FedsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the quarantine file could not be written
        print(f"error: {exc.filename}: cannot write ({exc.strerror}); choose another quarantine path", file=sys.stderr)
        return 2


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".csv.gz", ".csv", ".gz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _read_csv_text(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Read every field as text; return the frame and each record's 1-based data row number."""
    if not path.is_file():
        raise DataValidationError(f"{path}: file not found (or not a regular file); check the path")
    try:
        with _open_text(path) as handle:
            return _parse_records(path, handle)
    except UnicodeDecodeError:
        raise DataValidationError(f"{path}: the file is not UTF-8 text; re-save it as UTF-8 CSV") from None
    except OSError as exc:
        raise DataValidationError(f"{path}: cannot read the file ({exc.strerror or type(exc).__name__})") from None


def _open_text(path: Path) -> IO[str]:
    # utf-8-sig drops the byte-order mark spreadsheet programs put in front of the header.
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _parse_records(path: Path, handle: IO[str]) -> tuple[pd.DataFrame, np.ndarray]:
    reader = csv.reader(handle, strict=True)
    try:
        header = next(reader, [])
        if not header:
            raise DataValidationError(f"{path}: the file is empty; it needs a header row naming the columns")
        records: list[list[str]] = []
        rows: list[int] = []
        start = reader.line_num + 1
        for record in reader:
            if record:  # blank lines are skipped, as pandas does, but still counted in row numbers
                if len(record) != len(header):
                    raise DataValidationError(
                        f"{path}: row {start - 1}: has {len(record)} fields but the header has {len(header)}; "
                        "fix the separators or quoting in that row"
                    )
                records.append(record)
                rows.append(start - 1)
            start = reader.line_num + 1
    except csv.Error:
        # csv's messages are generic, but they are not ours to vouch for: name the place only.
        raise DataValidationError(
            f"{path}: row {reader.line_num - 1}: malformed CSV (bad quoting or a NUL byte); fix that row"
        ) from None
    frame = pd.DataFrame(records, columns=pd.Index(header, dtype=object), dtype=object)
    return frame, np.asarray(rows, dtype=np.int64)


def _check_header(df: pd.DataFrame, schema: Schema, source: str) -> None:
    names = [str(c) for c in df.columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataValidationError(f"{source}: the header names column {repeated[0]!r} more than once; rename one")
    # Identifiers are never used nor synthesized, so a table (a synthetic one, say) may leave them out.
    missing = [c.name for c in schema.columns if c.name not in names and c.type != "identifier"]
    if missing:
        raise DataValidationError(
            f"{source}: the header has no column {missing[0]!r}"
            + (f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else "")
            + f"; schema {schema.name!r} needs it: add the column or fix its name"
        )
    extra = [n for n in names if n not in {c.name for c in schema.columns}]
    if extra:
        logger.warning("%s: ignoring columns not in the schema: %s", source, ", ".join(extra))


def _validate(df: pd.DataFrame, schema: Schema, source: str, rows: np.ndarray) -> ValidationResult:
    _check_header(df, schema, source)
    n = len(df)
    typed: dict[str, pd.api.extensions.ExtensionArray] = {}
    failed: dict[str, np.ndarray] = {}
    failures: list[tuple[int, str, np.ndarray]] = []  # (column index, problem, failing rows)
    for j, col in enumerate(schema.columns):
        if col.name not in df.columns:  # an identifier the table leaves out (see _check_header)
            continue
        raw = df[col.name].astype(object)
        missing = (raw.isna() | (raw == "")).to_numpy(dtype=bool)
        typed[col.name], problems = _check_column(col, raw, missing)
        failed[col.name] = np.logical_or.reduce([mask for _, mask in problems])
        failures.extend((j, problem, mask) for problem, mask in problems if mask.any())
    for j, col in enumerate(schema.columns):
        if col.derived_from is not None:
            # A cell that already failed on its own is reported once, not again as a mismatch.
            mask = _mapping_mismatch(col, typed[col.name], typed[col.derived_from]) & ~failed[col.name]
            if mask.any():
                failures.append((j, NOT_MAPPED.format(source=col.derived_from), mask))
    bad = np.zeros(n, dtype=bool)
    cells: list[tuple[int, int, Issue]] = []
    for j, problem, mask in failures:
        bad |= mask
        column = schema.columns[j].name
        cells.extend((int(p), j, Issue(source, int(rows[p]), column, problem)) for p in np.flatnonzero(mask))
    cells.sort(key=lambda cell: (cell[0], cell[1]))
    clean = pd.DataFrame({name: array[~bad] for name, array in typed.items()})
    quarantined = df.loc[bad].copy()
    quarantined.insert(0, ROW_COLUMN, rows[bad], allow_duplicates=True)  # a site file may have its own _row
    result = ValidationResult(
        source=source,
        rows_read=n,
        clean=clean,
        quarantined=quarantined.reset_index(drop=True),
        issues=tuple(issue for _, _, issue in cells),
        out_of_bounds=_out_of_bounds(schema, clean),
    )
    logger.info("%s: %d rows read, %d clean, %d quarantined", source, n, len(clean), int(bad.sum()))
    return result


def _check_column(
    col: Column, raw: pd.Series, missing: np.ndarray
) -> tuple[pd.api.extensions.ExtensionArray, list[tuple[str, np.ndarray]]]:
    """Typed values (NA where missing or failing) and (problem, mask) pairs for one column."""
    problems = [(EMPTY, missing & (not col.nullable))]
    if col.type != "continuous":
        labels = raw.where(~missing, None)
        if col.type == "categorical":
            unknown = ~missing & ~raw.isin(list(col.categories or ())).to_numpy(dtype=bool)
            problems.append((NOT_A_CATEGORY, unknown))
        return pd.array(labels.to_numpy(dtype=object), dtype="string"), problems
    values = pd.to_numeric(raw.where(~missing, None), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    not_number = ~missing & ~np.isfinite(values)
    problems.append((NOT_A_NUMBER, not_number))
    invalid = missing | not_number
    if col.is_integer:
        # Whole numbers written as "40.0" are accepted; 2**53 is where float parsing stops being exact.
        safe = np.where(invalid, 0.0, values)
        not_integer = ~invalid & ((np.floor(safe) != safe) | (np.abs(safe) > 2.0**53))
        problems.append((NOT_AN_INTEGER, not_integer))
        invalid = invalid | not_integer
        ints = np.where(invalid, 0.0, values).astype(np.int64)
        return pd.arrays.IntegerArray(ints, invalid), problems
    return pd.arrays.FloatingArray(np.where(invalid, 0.0, values), invalid), problems


def _mapping_mismatch(
    col: Column, values: pd.api.extensions.ExtensionArray, source: pd.api.extensions.ExtensionArray
) -> np.ndarray:
    """Rows where a derived column disagrees with its public mapping (only where both cells parsed)."""
    mapping = col.mapping or {}
    labels = source.to_numpy(dtype=object, na_value=None)
    expected = np.array([np.nan if s is None else mapping.get(s, np.nan) for s in labels], dtype=np.float64)
    source_known = np.array([s is None or s in mapping for s in labels], dtype=bool)
    actual = np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan))
    both_missing = np.isnan(expected) & np.isnan(actual)
    return np.asarray(source_known & ~both_missing & (expected != actual), dtype=bool)


def _out_of_bounds(schema: Schema, clean: pd.DataFrame) -> dict[str, int]:
    counts: dict[str, int] = {}
    for col in schema.columns:
        if col.type == "continuous" and col.bounds is not None:
            values = clean[col.name].to_numpy(dtype=np.float64, na_value=np.nan)
            counts[col.name] = int(np.sum((values < col.bounds[0]) | (values > col.bounds[1])))
    return counts
