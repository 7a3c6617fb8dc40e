"""Tests for shared.slots: the compact form of encoded rows, and that sampling through it gives the same table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.ctvae import ConditionalTVAEGenerator
from shared.encoding import TableEncoder
from shared.schema import Schema
from shared.slots import EncodedSlots, one_hot, slots_of
from shared.tvae import SAMPLE_CHUNK, TVAEConfig, TVAEGenerator


def _schema() -> Schema:
    return Schema.from_dict({
        "dataset": "toy", "target": "c",
        "columns": [
            {"name": "n", "type": "continuous", "dtype": "integer", "bounds": [0, 9]},
            {"name": "c", "type": "categorical", "categories": ["a", "b", "c"], "nullable": True},
            {"name": "code", "type": "continuous", "dtype": "integer", "bounds": [1, 3], "nullable": True,
             "derived_from": "c", "mapping": {"a": 1, "b": 2, "c": 3}},
            {"name": "f", "type": "continuous", "bounds": [-1.0, 1.0], "nullable": True},
        ],
    })


ENCODER = TableEncoder.from_schema(_schema())
WIDTHS = [b.width for b in ENCODER.blocks if b.kind == "categorical"]


@st.composite
def _compact(draw: st.DrawFn) -> EncodedSlots:
    rows = draw(st.integers(0, 30))
    slots = np.array([[draw(st.integers(0, w - 1)) for w in WIDTHS] for _ in range(rows)], dtype=np.int64)
    offsets = np.array(draw(st.lists(st.lists(st.floats(0, 1, width=32), min_size=2, max_size=2),
                                     min_size=rows, max_size=rows)), dtype=np.float32)
    return EncodedSlots(slots.reshape(rows, len(WIDTHS)), offsets.reshape(rows, 2))


@settings(max_examples=60, deadline=None)
@given(_compact())
def test_compact_and_one_hot_forms_decode_to_the_same_table(encoded: EncodedSlots) -> None:
    # Execute
    table = one_hot(encoded, ENCODER.blocks, ENCODER.dim)
    back = slots_of(table, ENCODER.blocks)

    # Assert
    assert np.array_equal(back.slots, encoded.slots) and np.array_equal(back.offsets, encoded.offsets)
    assert np.all(table[:, [b.start for b in ENCODER.blocks if b.kind == "categorical"]] >= 0)
    pd.testing.assert_frame_equal(ENCODER.decode_slots(encoded), ENCODER.decode(table))


def test_a_missing_slot_decodes_as_null_in_the_column_and_its_derived_column() -> None:
    # Prepare: c's last slot is its missing slot
    encoded = EncodedSlots(np.array([[3, 3, 0], [3, 1, 24]]), np.full((2, 2), 0.5, dtype=np.float32))

    # Execute
    frame = ENCODER.decode_slots(encoded)

    # Assert
    assert frame["c"].isna().tolist() == [True, False] and frame["c"][1] == "b"
    assert frame["code"].isna().tolist() == [True, False] and frame["code"][1] == 2
    assert str(frame["c"].dtype) == "string" and str(frame["code"].dtype) == "Int64"
    assert frame["f"].isna().tolist() == [False, True]


def test_a_float64_table_decodes_at_its_own_precision() -> None:
    # Prepare: an offset that float32 would round
    encoded = EncodedSlots(np.array([[2, 0, 5]]), np.array([[0.5, 0.123456789012345]]))
    table = one_hot(encoded, ENCODER.blocks, ENCODER.dim).astype(np.float64)
    table[:, [b.start for b in ENCODER.blocks if b.kind == "offset"]] = encoded.offsets

    # Execute
    frame = ENCODER.decode(table)

    # Assert
    expected = ENCODER._bins["f"].values(np.array([5]), np.array([0.123456789012345]))  # noqa: SLF001
    assert frame["f"][0] == expected[0]


def test_a_slot_outside_its_block_is_refused() -> None:
    with pytest.raises(ValueError, match="'c'"):
        ENCODER.decode_slots(EncodedSlots(np.array([[0, 4, 0]]), np.zeros((1, 2), dtype=np.float32)))
    with pytest.raises(ValueError, match="3 slots and 2 offsets"):
        ENCODER.decode_slots(EncodedSlots(np.zeros((1, 2), dtype=np.int64), np.zeros((1, 2), dtype=np.float32)))


@pytest.mark.parametrize("generator", [
    TVAEGenerator(ENCODER.blocks, ENCODER.dim, TVAEConfig(hidden=8, latent=3)),
    ConditionalTVAEGenerator(ENCODER.blocks, ENCODER.dim, TVAEConfig(hidden=8, latent=3), condition="c"),
])
def test_compact_sampling_draws_exactly_the_rows_of_one_hot_sampling(generator: TVAEGenerator) -> None:
    # Prepare: more than one chunk, so the random stream must be consumed in the same order
    rows = SAMPLE_CHUNK + 17

    # Execute
    compact = generator.sample_slots(rows, generator=torch.Generator().manual_seed(4))
    table = generator.sample(rows, generator=torch.Generator().manual_seed(4))

    # Assert
    assert len(compact) == rows
    assert np.array_equal(one_hot(compact, ENCODER.blocks, ENCODER.dim), table)
    assert len(set(compact.slots[:, 1].tolist())) > 1  # drawn, not a constant
