"""Tests for shared.schema: loading, validation messages, the canonical hash and the dict round trip."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import SchemaError
from shared.schema import Column, Schema, load_schema

ADULT = Path(__file__).resolve().parents[2] / "data" / "adult" / "schema.json"


def _minimal() -> dict[str, Any]:
    return {
        "dataset": "toy",
        "title": "informational, ignored",
        "target": "label",
        "sensitive_attributes": ["sex"],
        "columns": [
            {"name": "id", "type": "identifier"},
            {"name": "age", "type": "continuous", "dtype": "integer", "bounds": [0, 99], "note": "ignored"},
            {"name": "sex", "type": "categorical", "categories": ["F", "M"], "nullable": True},
            {"name": "label", "type": "categorical", "categories": [0, 1]},
        ],
    }


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_adult_schema_loads_with_split_derived_column_and_bins() -> None:
    # Execute
    schema = load_schema(ADULT)

    # Assert
    assert schema.name == "adult"
    assert schema.target == "income"
    assert schema.split_by == "relationship"
    assert schema.sensitive == ("sex", "race", "age")
    education_num = schema.column("education_num")
    assert education_num.derived_from == "education"
    assert education_num.mapping is not None
    assert education_num.mapping["Preschool"] == 1 and education_num.mapping["Doctorate"] == 16
    assert set(education_num.mapping) == set(schema.column("education").categories or ())
    hours = schema.column("hours_per_week")
    assert hours.bins is not None and 40 in hours.bins and 41 in hours.bins
    assert len(schema.synthesized_columns) == 15


def test_defaults_and_integer_categories_read_as_text(tmp_path: Path) -> None:
    # Prepare
    path = _write(tmp_path, _minimal())

    # Execute
    schema = load_schema(path)

    # Assert
    assert schema.column("label").categories == ("0", "1")
    assert schema.column("age").nullable is False
    assert [c.name for c in schema.synthesized_columns] == ["age", "sex", "label"]
    plain = {"dataset": "toy", "columns": [{"name": "x", "type": "continuous", "bounds": [0, 1]}]}
    assert Schema.from_dict(plain).column("x").dtype == "float"


def test_round_trip_and_hash_is_canonical_json_of_to_dict() -> None:
    # Prepare
    schema = load_schema(ADULT)

    # Execute
    again = Schema.from_dict(schema.to_dict())
    canonical = json.dumps(schema.to_dict(), sort_keys=True, separators=(",", ":"))

    # Assert
    assert again == schema
    assert again.hash == schema.hash
    assert schema.hash == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert "title" not in canonical and "note" not in canonical


def test_hash_ignores_notes_and_number_spelling_but_not_content() -> None:
    # Prepare
    base = _minimal()
    noted = copy.deepcopy(base)
    noted["notes"] = "something else"
    noted["columns"][1]["bounds"] = [0.0, 99.0]
    changed = copy.deepcopy(base)
    changed["columns"][2]["categories"] = ["F", "M", "X"]

    # Execute
    hashes = [Schema.from_dict(d).hash for d in (base, noted, changed)]

    # Assert
    assert hashes[0] == hashes[1]
    assert hashes[0] != hashes[2]


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["columns"][1].pop("bounds"), "columns[1] ('age'): continuous column needs \"bounds\""),
        (lambda d: d["columns"][1].update(bounds=[5, 5]), "columns[1] ('age'): \"bounds\" must be finite"),
        (lambda d: d["columns"][1].update(bounds=[0.5, 9]), "columns[1] ('age'): \"bounds\" of an integer"),
        (lambda d: d["columns"][1].update(bins=[1, 50, 99]), "columns[1] ('age'): \"bins\" must list"),
        (lambda d: d["columns"][1].update(bins=[0, 50, 50, 99]), "columns[1] ('age'): \"bins\" edges"),
        (lambda d: d["columns"][1].update(dtype="int"), "columns[1] ('age'): \"dtype\" must be"),
        (lambda d: d["columns"][2].update(categories=["F", "F"]), "columns[2] ('sex'): \"categories\" must be unique"),
        (lambda d: d["columns"][2].update(categories=[1.5]), "columns[2] ('sex'): \"categories\" must be strings"),
        (lambda d: d["columns"][2].pop("categories"), "columns[2] ('sex'): categorical column needs"),
        (lambda d: d["columns"][2].update(bounds=[0, 1]), "columns[2] ('sex'): \"bounds\" applies to continuous"),
        (lambda d: d["columns"][2].update(nullable="yes"), "columns[2] ('sex'): \"nullable\" must be true or false"),
        (lambda d: d["columns"][3].update(type="text"), "columns[3] ('label'): \"type\" must be one of"),
        (lambda d: d["columns"].append({"name": "age", "type": "identifier"}), "columns[4] ('age'): the name is used"),
        (lambda d: d.update(target="nope"), '"target" names \'nope\', which is not a column'),
        (lambda d: d.update(target="id"), '"target" names the identifier column'),
        (lambda d: d.update(split_by="age"), '"split_by" must name a categorical column'),
        (lambda d: d.update(sensitive_attributes=["race"]), '"sensitive_attributes[0]" names \'race\''),
        (lambda d: d.pop("dataset"), '"dataset" must be a non-empty string'),
    ],
)
def test_schema_errors_name_the_file_and_the_place(tmp_path: Path, edit: Any, expected: str) -> None:
    # Prepare
    data = _minimal()
    edit(data)
    path = _write(tmp_path, data)

    # Execute
    with pytest.raises(SchemaError) as caught:
        load_schema(path)

    # Assert
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message


@pytest.mark.parametrize(
    ("mapping", "derived_nullable", "expected"),
    [
        ({"F": 1}, True, '"mapping" must map exactly the categories of \'sex\'; missing [\'M\']'),
        ({"F": 1, "M": 2, "X": 3}, True, "unknown ['X']"),
        ({"F": 1, "M": 200}, True, "\"mapping\" value for 'M' must lie within \"bounds\""),
        ({"F": 1, "M": 2.5}, True, "must be a whole number"),
        ({"F": 1, "M": 2}, False, 'must be "nullable": true because \'sex\' is nullable'),
    ],
)
def test_derived_column_errors(
    tmp_path: Path, mapping: dict[str, float], derived_nullable: bool, expected: str
) -> None:
    # Prepare
    data = _minimal()
    data["columns"].append(
        {"name": "sex_code", "type": "continuous", "dtype": "integer", "bounds": [1, 9],
         "nullable": derived_nullable, "derived_from": "sex", "mapping": mapping}
    )
    path = _write(tmp_path, data)

    # Execute
    with pytest.raises(SchemaError) as caught:
        load_schema(path)

    # Assert
    assert str(caught.value).startswith(f"{path}: columns[4] ('sex_code'): ")
    assert expected in str(caught.value)


def test_derived_from_must_name_a_categorical_column() -> None:
    # Prepare
    data = _minimal()
    data["columns"].append(
        {"name": "d", "type": "continuous", "bounds": [0, 1], "derived_from": "age", "mapping": {}}
    )

    # Execute
    with pytest.raises(SchemaError) as caught:
        Schema.from_dict(data, source="s.json")

    # Assert
    assert "s.json: columns[4] ('d'): \"derived_from\" must name a categorical column" in str(caught.value)


def test_unreadable_files_name_the_file(tmp_path: Path) -> None:
    # Prepare
    broken = tmp_path / "broken.json"
    broken.write_text('{"dataset": "x",\n "columns": [', encoding="utf-8")
    missing = tmp_path / "absent.json"

    # Execute
    with pytest.raises(SchemaError) as bad_json:
        load_schema(broken)
    with pytest.raises(SchemaError) as not_found:
        load_schema(missing)

    # Assert
    assert str(bad_json.value).startswith(f"{broken}: line 2")
    assert str(not_found.value) == f"{missing}: schema file not found; check the path"


def test_column_built_in_code_validates_itself() -> None:
    # Execute
    with pytest.raises(SchemaError) as caught:
        Column(name="x", type="continuous", dtype="float", bounds=None)

    # Assert
    assert "column 'x': continuous column needs \"bounds\"" in str(caught.value)


@settings(max_examples=30, deadline=None)
@given(
    categories=st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=6, unique=True),
    lo=st.integers(-1000, 1000),
    span=st.integers(1, 10**6),
    nullable=st.booleans(),
)
def test_dict_round_trip_property(categories: list[str], lo: int, span: int, nullable: bool) -> None:
    # Prepare
    data = {
        "dataset": "p",
        "columns": [
            {"name": "c", "type": "categorical", "categories": categories, "nullable": nullable},
            {"name": "n", "type": "continuous", "dtype": "integer", "bounds": [lo, lo + span], "bins": [lo, lo + span]},
        ],
    }

    # Execute
    schema = Schema.from_dict(data)
    again = Schema.from_dict(json.loads(json.dumps(schema.to_dict())))

    # Assert
    assert again == schema and again.hash == schema.hash
