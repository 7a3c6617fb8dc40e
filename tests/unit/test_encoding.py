"""Tests for shared.encoding: a schema-only layout, exact round trips, clipping, decoding generator output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.encoding import TableEncoder, column_bins
from shared.errors import DataValidationError
from shared.schema import Column, Schema, load_schema
from shared.validation import validate_table

ADULT = Path(__file__).resolve().parents[2] / "data" / "adult" / "schema.json"


def _toy() -> Schema:
    return Schema.from_dict(
        {
            "dataset": "toy",
            "columns": [
                {"name": "id", "type": "identifier"},
                {"name": "n", "type": "continuous", "dtype": "integer", "bounds": [0, 9]},
                {"name": "c", "type": "categorical", "categories": ["a", "b", "c"], "nullable": True},
                {"name": "code", "type": "continuous", "dtype": "integer", "bounds": [1, 3], "nullable": True,
                 "derived_from": "c", "mapping": {"a": 1, "b": 2, "c": 3}},
                {"name": "f", "type": "continuous", "bounds": [-1.0, 1.0], "nullable": True},
            ],
        }
    )


def _validated(schema: Schema, columns: dict[str, list[str]]) -> pd.DataFrame:
    result = validate_table(pd.DataFrame(columns, dtype=object), schema, source="t")
    assert result.ok, result.issues
    return result.clean


def test_layout_comes_from_the_schema_only() -> None:
    # Prepare
    schema = _toy()

    # Execute
    encoder = TableEncoder.from_schema(schema)

    # Assert
    layout = [(b.column, b.kind, b.start, b.width) for b in encoder.blocks]
    assert layout == [
        ("n", "categorical", 0, 10), ("n", "offset", 10, 1),
        ("c", "categorical", 11, 4),
        ("f", "categorical", 12 + 3, 25), ("f", "offset", 40, 1),
    ]
    assert encoder.dim == 41
    assert encoder.columns == ("n", "c", "code", "f")
    assert encoder.describe() == TableEncoder.from_schema(schema).describe()
    assert encoder.describe()["columns"]["code"] == {"kind": "derived", "from": "c"}


def test_adult_bins_follow_the_rules() -> None:
    # Prepare
    schema = load_schema(ADULT)

    # Execute
    encoder = TableEncoder.from_schema(schema)
    hours = column_bins(schema.column("hours_per_week"))
    gain = column_bins(schema.column("capital_gain"))
    loss = column_bins(schema.column("capital_loss"))
    age = column_bins(schema.column("age"))

    # Assert
    assert (40.0, 40.0) in hours and hours[0] == (1.0, 19.0) and hours[-1] == (80.0, 99.0)
    assert gain[0] == (0.0, 0.0) and gain[-1][1] == 99999 and 18 <= len(gain) <= 22
    assert loss[0] == (0.0, 0.0) and loss[-1][1] == 5000  # 5000 > 1000 * max(0, 1): heavy-tailed
    assert age[0] == (17.0, 19.0) and age[-1] == (89.0, 90.0)
    for bins in (hours, gain, loss, age):
        assert all(b[1] + 1 == c[0] for b, c in zip(bins, bins[1:]))  # contiguous integer ranges
    assert "education_num" not in {b.column for b in encoder.blocks}
    assert encoder.describe()["columns"]["hours_per_week"]["slots"] == len(hours)


def test_default_bin_kinds() -> None:
    # Prepare
    small = Column("s", "continuous", dtype="integer", bounds=(-5, 26))
    wide = Column("w", "continuous", dtype="integer", bounds=(-500, 2000))
    heavy = Column("h", "continuous", dtype="float", bounds=(0, 30000))

    # Execute
    bins = [column_bins(c) for c in (small, wide, heavy)]

    # Assert
    assert bins[0] == tuple((float(v), float(v)) for v in range(-5, 27))
    assert len(bins[1]) == 24 and bins[1][0][0] == -500 and bins[1][-1][1] == 2000
    assert bins[2][0] == (0.0, 0.0) and bins[2][1][0] == 0.0 and bins[2][-1][1] == 30000 and len(bins[2]) == 21


def test_encode_clips_to_bounds_and_counts() -> None:
    # Prepare
    schema = _toy()
    clean = _validated(schema, {"id": ["1", "2", "3"], "n": ["-4", "12", "5"], "c": ["a", "", "c"],
                                "code": ["1", "", "3"], "f": ["2.5", "", "-0.25"]})
    encoder = TableEncoder.from_schema(schema)

    # Execute
    x = encoder.encode(clean)
    decoded = encoder.decode(x)

    # Assert
    assert x.dtype == np.float32 and x.shape == (3, encoder.dim)
    assert encoder.last_clip_counts == {"n": 2, "f": 1}
    assert decoded["n"].tolist() == [0, 9, 5]
    assert decoded["f"].iloc[0] == pytest.approx(1.0)
    assert decoded["c"].isna().tolist() == [False, True, False]
    assert decoded["code"].isna().tolist() == [False, True, False]


def test_decode_takes_argmax_of_probabilities_and_clips_offsets() -> None:
    # Prepare
    schema = _toy()
    encoder = TableEncoder.from_schema(schema)
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 1.5, size=(50, encoder.dim))

    # Execute
    decoded = encoder.decode(x)

    # Assert
    assert list(decoded.columns) == ["n", "c", "code", "f"]
    assert [str(t) for t in decoded.dtypes] == ["Int64", "string", "Int64", "Float64"]
    assert decoded["n"].between(0, 9).all()
    assert decoded["f"].dropna().between(-1.0, 1.0).all()
    expected_code = decoded["c"].map({"a": 1, "b": 2, "c": 3}).astype("Int64")
    pd.testing.assert_series_equal(decoded["code"], expected_code, check_names=False)


def test_encode_refuses_unvalidated_frames_without_showing_values() -> None:
    # Prepare
    encoder = TableEncoder.from_schema(_toy())
    frame = pd.DataFrame({"n": [1], "c": ["CANARY-9f8e7d"], "code": [1], "f": [0.0]})

    # Execute
    with pytest.raises(DataValidationError) as caught:
        encoder.encode(frame)

    # Assert
    assert "column 'c'" in str(caught.value) and "CANARY" not in str(caught.value)


def test_decode_rejects_a_wrong_shape() -> None:
    # Execute
    with pytest.raises(ValueError, match=r"expected an array of shape \(n, 41\)"):
        TableEncoder.from_schema(_toy()).decode(np.zeros((2, 3)))


@st.composite
def _column(draw: Any, i: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(["categorical", "integer", "float", "identifier"]))
    out: dict[str, Any] = {"name": f"col{i}", "nullable": draw(st.booleans())}
    if kind == "identifier":
        return {**out, "type": "identifier"}
    if kind == "categorical":
        cats = draw(st.lists(st.text("abcXYZ-", min_size=1, max_size=4), min_size=1, max_size=6, unique=True))
        return {**out, "type": "categorical", "categories": cats}
    if kind == "integer":
        lo = draw(st.integers(-1000, 1000))
        hi = lo + draw(st.sampled_from([1, 5, 31, 32, 200, 5000, 4 * 10**6]))
        inner = draw(st.lists(st.integers(lo + 1, hi - 1), max_size=5, unique=True)) if hi - lo > 1 else []
        bins = {"bins": [lo, *sorted(inner), hi]} if draw(st.booleans()) else {}
        return {**out, "type": "continuous", "dtype": "integer", "bounds": [lo, hi], **bins}
    lo_f = draw(st.floats(-1000, 1000))
    return {**out, "type": "continuous", "dtype": "float", "bounds": [lo_f, lo_f + draw(st.floats(0.5, 1e5))]}


@st.composite
def _schema_and_table(draw: Any) -> tuple[Schema, pd.DataFrame]:
    columns = [draw(_column(i)) for i in range(draw(st.integers(1, 6)))]
    source = next((c for c in columns if c["type"] == "categorical"), None)
    if source is not None and draw(st.booleans()):
        mapping = {cat: draw(st.integers(0, 50)) for cat in source["categories"]}
        columns.append({"name": "derived", "type": "continuous", "dtype": "integer", "bounds": [0, 50],
                        "nullable": source["nullable"], "derived_from": source["name"], "mapping": mapping})
    schema = Schema.from_dict({"dataset": "random", "columns": columns})
    n = draw(st.integers(0, 15))
    table = {c.name: [draw(_cell(c)) for _ in range(n)] for c in schema.columns if c.derived_from is None}
    for c in schema.columns:
        if c.derived_from is not None and c.mapping is not None:
            table[c.name] = ["" if s == "" else str(c.mapping[s]) for s in table[c.derived_from]]
    return schema, pd.DataFrame(table, columns=[c.name for c in schema.columns], dtype=object)


@st.composite
def _cell(draw: Any, column: Column) -> str:
    if column.nullable and draw(st.integers(0, 4)) == 0:
        return ""
    if column.type == "identifier":
        return draw(st.text("0123456789", min_size=1, max_size=5))
    if column.type == "categorical":
        return str(draw(st.sampled_from(column.categories or ())))
    assert column.bounds is not None
    lo, hi = column.bounds
    if column.is_integer:
        return str(draw(st.one_of(st.integers(int(lo), int(hi)), st.sampled_from([int(lo), int(hi)]))))
    return repr(draw(st.one_of(st.floats(lo, hi), st.sampled_from([lo, hi]))))


@settings(max_examples=60, deadline=None)
@given(case=_schema_and_table())
def test_decode_inverts_encode_on_validated_tables_property(case: tuple[Schema, pd.DataFrame]) -> None:
    # Prepare
    schema, table = case
    clean = validate_table(table, schema, source="p").clean
    encoder = TableEncoder.from_schema(schema)

    # Execute
    decoded = encoder.decode(encoder.encode(clean))

    # Assert
    assert list(decoded.columns) == list(encoder.columns)
    assert sum(encoder.last_clip_counts.values()) == 0
    for col in schema.synthesized_columns:
        expected, actual = clean[col.name], decoded[col.name]
        assert actual.dtype == expected.dtype
        assert actual.isna().tolist() == expected.isna().tolist()
        if col.type == "continuous" and not col.is_integer:
            assert col.bounds is not None
            tolerance = 1e-6 * (col.bounds[1] - col.bounds[0])
            diff = np.abs(actual.to_numpy(np.float64, na_value=0.0) - expected.to_numpy(np.float64, na_value=0.0))
            assert np.all(diff <= tolerance)
        else:
            pd.testing.assert_series_equal(actual, expected, check_names=False)


@given(st.lists(st.integers(0, 4), min_size=1, max_size=40), st.booleans())
def test_slot_of_a_block_is_argmax_whether_one_hot_or_not(slots: list[int], soften: bool) -> None:
    from shared.slots import chosen_slots

    block = np.eye(5, dtype=np.float32)[slots]
    if soften:  # one row of probabilities sends the whole block to argmax, with the same answers
        block[0] = block[0] * 0.6 + 0.08
    assert chosen_slots(block).tolist() == np.argmax(block, axis=1).tolist()


def test_a_diverged_generators_nan_reads_as_zero() -> None:
    from shared.slots import chosen_slots

    block = np.array([[np.nan, 0.2, 0.7], [0.0, 1.0, 0.0]], dtype=np.float32)
    assert chosen_slots(block).tolist() == [2, 1]
