"""Tests for shared.validation: typed clean frames, quarantine, issues that never carry values, the CLI check."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import DataValidationError
from shared.schema import Schema
from shared.validation import (
    EMPTY,
    NOT_A_CATEGORY,
    NOT_A_NUMBER,
    NOT_AN_INTEGER,
    NOT_MAPPED,
    Issue,
    check_table,
    read_site_table,
    validate_table,
    write_quarantine,
)

CANARY = "CANARY-9f8e7d"
HEADER = "id,age,weight,sex,sex_code,label"


def _schema() -> Schema:
    return Schema.from_dict(
        {
            "dataset": "toy",
            "columns": [
                {"name": "id", "type": "identifier"},
                {"name": "age", "type": "continuous", "dtype": "integer", "bounds": [0, 99]},
                {"name": "weight", "type": "continuous", "dtype": "float", "bounds": [0, 300], "nullable": True},
                {"name": "sex", "type": "categorical", "categories": ["F", "M"], "nullable": True},
                {"name": "sex_code", "type": "continuous", "dtype": "integer", "bounds": [1, 2], "nullable": True,
                 "derived_from": "sex", "mapping": {"F": 1, "M": 2}},
                {"name": "label", "type": "categorical", "categories": [0, 1]},
            ],
        }
    )


def _csv(tmp_path: Path, *rows: str, name: str = "site.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def test_clean_table_is_typed_per_schema(tmp_path: Path) -> None:
    # Prepare
    path = _csv(tmp_path, "a,30,70.5,F,1,0", "b,41,,,,1", "c,40.0,0,M,2,1")

    # Execute
    result = read_site_table(path, _schema())

    # Assert
    assert result.ok and result.rows_read == 3 and len(result.quarantined) == 0
    clean = result.clean
    assert list(clean.columns) == ["id", "age", "weight", "sex", "sex_code", "label"]
    assert [str(t) for t in clean.dtypes] == ["string", "Int64", "Float64", "string", "Int64", "string"]
    assert clean["age"].tolist() == [30, 41, 40]
    assert clean["weight"].isna().tolist() == [False, True, False]
    assert clean["sex"].isna().tolist() == [False, True, False]
    assert clean["sex_code"].isna().tolist() == [False, True, False]


@pytest.mark.parametrize(
    ("row", "column", "problem"),
    [
        ("a,30,70,X,1,0", "sex", NOT_A_CATEGORY),
        ("a,thirty,70,F,1,0", "age", NOT_A_NUMBER),
        ("a,30,inf,F,1,0", "weight", NOT_A_NUMBER),
        ("a,30.5,70,F,1,0", "age", NOT_AN_INTEGER),
        ("a,,70,F,1,0", "age", EMPTY),
        (",30,70,F,1,0", "id", EMPTY),
        ("a,30,70,F,2,0", "sex_code", NOT_MAPPED.format(source="sex")),
        ("a,30,70,,1,0", "sex_code", NOT_MAPPED.format(source="sex")),
    ],
)
def test_failing_cell_is_reported_and_row_quarantined(tmp_path: Path, row: str, column: str, problem: str) -> None:
    # Prepare
    path = _csv(tmp_path, "ok,20,60,M,2,1", row, "ok2,21,61,F,1,0")

    # Execute
    result = read_site_table(path, _schema())

    # Assert
    assert result.issues == (Issue(str(path), 2, column, problem),)
    assert result.quarantined["_row"].tolist() == [2]
    assert result.clean["id"].tolist() == ["ok", "ok2"]


def test_one_issue_per_failing_cell_in_row_then_column_order(tmp_path: Path) -> None:
    # Prepare
    path = _csv(tmp_path, "a,x,70,Z,1,7", "b,20,60,M,2,1", ",1,y,F,1,0")

    # Execute
    result = read_site_table(path, _schema())

    # Assert
    assert [(i.row, i.column) for i in result.issues] == [
        (1, "age"), (1, "sex"), (1, "label"), (3, "id"), (3, "weight")
    ]
    assert len(result.clean) == 1 and result.quarantined["_row"].tolist() == [1, 3]


def test_out_of_bounds_values_are_kept_and_counted(tmp_path: Path) -> None:
    # Prepare
    path = _csv(tmp_path, "a,120,70,F,1,0", "b,-3,301.5,M,2,1", "c,50,1,M,2,1")

    # Execute
    result = read_site_table(path, _schema())

    # Assert
    assert result.ok
    assert result.clean["age"].tolist() == [120, -3, 50]
    assert result.out_of_bounds == {"age": 2, "weight": 1, "sex_code": 0}
    assert "outside the public bounds (kept; clipped when encoded): age 2, weight 1" in result.summary()


def test_blank_lines_are_skipped_but_keep_row_numbers(tmp_path: Path) -> None:
    # Prepare
    path = _csv(tmp_path, "a,30,70,F,1,0", "", "b,30,70,Q,1,0")

    # Execute
    result = read_site_table(path, _schema())

    # Assert
    assert result.rows_read == 2
    assert [(i.row, i.column) for i in result.issues] == [(3, "sex")]


def test_gzip_files_are_read(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "site.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(HEADER + "\na,30,70,F,1,0\n")

    # Execute
    result = read_site_table(path, _schema())

    # Assert
    assert result.ok and len(result.clean) == 1


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "site.csv"
    path.write_text("id,age,weight,sex,label\na,30,70,F,0\n", encoding="utf-8")

    # Execute
    with pytest.raises(DataValidationError) as caught:
        read_site_table(path, _schema())

    # Assert
    assert str(caught.value).startswith(f"{path}: the header has no column 'sex_code'")


def test_extra_columns_are_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Prepare
    path = tmp_path / "site.csv"
    path.write_text(HEADER + ",zip\na,30,70,F,1,0,12345\n", encoding="utf-8")

    # Execute
    with caplog.at_level(logging.WARNING, logger="shared.validation"):
        result = read_site_table(path, _schema())

    # Assert
    assert "zip" not in result.clean.columns
    assert any("ignoring columns not in the schema: zip" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (HEADER + "\na,30,70,F,1,0\nb,30,70,F,1,0,extra\n", "row 2: has 7 fields but the header has 6"),
        (HEADER + "\na,30,70\n", "row 1: has 3 fields but the header has 6"),
        ("", "the file is empty"),
        ("\n", "the file is empty"),
        (HEADER.replace("label", "age") + "\n", "the header names column 'age' more than once"),
    ],
)
def test_malformed_files_name_the_file_and_row(tmp_path: Path, content: str, expected: str) -> None:
    # Prepare
    path = tmp_path / "site.csv"
    path.write_text(content, encoding="utf-8")

    # Execute
    with pytest.raises(DataValidationError) as caught:
        read_site_table(path, _schema())

    # Assert
    assert str(caught.value).startswith(f"{path}: {expected}")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    # Execute
    with pytest.raises(DataValidationError) as caught:
        read_site_table(tmp_path / "nope.csv", _schema())

    # Assert
    assert "nope.csv: file not found" in str(caught.value)


def test_planted_value_never_leaves_the_quarantine_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    rows = [f"{CANARY},30,70,F,1,0", f"a,{CANARY},70,F,1,0", f"a,30,{CANARY},F,1,0", f"a,30,70,{CANARY},1,0",
            f"a,30,70,F,{CANARY},0", f"a,30,70,F,1,{CANARY}"]
    path = _csv(tmp_path, *rows)
    ragged = _csv(tmp_path, f"a,30,70,F,1,0,{CANARY}", name="ragged.csv")
    quoted = tmp_path / "quoted.csv"
    quoted.write_text(HEADER + f'\na,"{CANARY}"x,70,F,1,0\n', encoding="utf-8")
    schema_path = tmp_path / "schema.json"
    schema_path.write_text(_schema_json(), encoding="utf-8")
    texts: list[str] = []

    # Execute
    with caplog.at_level(logging.DEBUG):
        result = read_site_table(path, _schema())
        codes = [check_table(schema_path, p) for p in (path, ragged, quoted)]
        for bad in (ragged, quoted):
            with pytest.raises(DataValidationError) as caught:
                read_site_table(bad, _schema())
            texts += [str(caught.value), repr(caught.value)]
    texts += [repr(result.issues), str(result.issues), result.summary(), caplog.text]
    texts += list(capsys.readouterr())

    # Assert
    assert codes == [1, 2, 2]
    # The id cell is only checked for presence, so its row is clean; the other five rows fail.
    assert len(result.issues) == 5 and len(result.quarantined) == 5
    assert all(CANARY not in text for text in texts)
    assert CANARY in (tmp_path / "site.quarantine.csv").read_text(encoding="utf-8")


def _schema_json() -> str:
    return json.dumps(_schema().to_dict())


def test_check_table_prints_issues_and_writes_quarantine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    schema_path = tmp_path / "schema.json"
    schema_path.write_text(_schema_json(), encoding="utf-8")
    good = _csv(tmp_path, "a,30,70,F,1,0", name="good.csv")
    bad = _csv(tmp_path, *(["a,30,70,F,1,0"] + [f"r{i},30,70,Q,1,0" for i in range(60)]), name="bad.csv")

    # Execute
    code_good = check_table(schema_path, good)
    code_bad = check_table(schema_path, bad)
    out = capsys.readouterr().out

    # Assert
    assert (code_good, code_bad) == (0, 1)
    assert f"{bad}:2: column 'sex': {NOT_A_CATEGORY}" in out
    assert "... and 10 more" in out
    assert "61 rows read, 1 clean, 60 quarantined" in out
    assert not (tmp_path / "good.quarantine.csv").exists()
    quarantine = pd.read_csv(tmp_path / "bad.quarantine.csv", dtype=str, keep_default_na=False)
    assert list(quarantine.columns) == ["_row", *HEADER.split(",")]
    assert quarantine["_row"].tolist() == [str(i) for i in range(2, 62)]


def test_check_table_returns_2_on_a_bad_schema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    data = _csv(tmp_path, "a,30,70,F,1,0")

    # Execute
    code = check_table(tmp_path / "missing.json", data)

    # Assert
    assert code == 2
    assert "missing.json: schema file not found" in capsys.readouterr().err


def test_validate_table_in_memory_and_write_quarantine(tmp_path: Path) -> None:
    # Prepare
    df = pd.DataFrame({"id": ["a", "b"], "age": ["1", "x"], "weight": [None, "2"], "sex": ["F", "M"],
                       "sex_code": ["1", "2"], "label": ["0", "1"]})

    # Execute
    result = validate_table(df, _schema(), source="memory")
    write_quarantine(result, tmp_path / "q.csv")

    # Assert
    assert result.issues == (Issue("memory", 2, "age", NOT_A_NUMBER),)
    assert result.clean["weight"].isna().tolist() == [True]
    assert (tmp_path / "q.csv").read_text(encoding="utf-8").splitlines()[1] == "2,b,x,2,M,2,1"


_CELLS = st.sampled_from(["", "F", "M", "0", "1", "2", "30", "-4", "1e2", "3.5", "nan", "x", " 7", "1000"])


@settings(max_examples=40, deadline=None)
@given(cells=st.lists(st.lists(_CELLS, min_size=6, max_size=6), max_size=12))
def test_every_row_is_either_clean_or_quarantined_property(cells: list[list[str]]) -> None:
    # Prepare
    df = pd.DataFrame(cells, columns=HEADER.split(","), dtype=object)

    # Execute
    result = validate_table(df, _schema(), source="p")

    # Assert
    failing_rows = sorted({i.row for i in result.issues})
    assert result.quarantined["_row"].tolist() == failing_rows
    assert len(result.clean) + len(result.quarantined) == len(cells)
    assert not result.clean["age"].isna().any()
    ages = result.clean["age"].to_numpy(dtype=np.float64)
    assert np.all(np.floor(ages) == ages)
