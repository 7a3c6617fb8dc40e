"""The hold-out split is for good: the strings its keyed hashes read must never change.

A site's hold-out rows are chosen by an HMAC of each row's content under the site's key; if the text of a
row changed (a float formatted differently, a separator moved), rows would silently move between training and
hold-out, and scores would no longer be on unseen rows. These tests pin the text to its cell-by-cell
definition and the split of one table to the one the first implementation made.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from client.holdout import holdout_mask, row_texts
from shared.evaluation.frames import labels, numeric
from shared.schema import Schema
from shared.validation import read_site_table
from tests.conftest import SMALL_SCHEMA, write_site_table

SCHEMA = Schema.from_dict(SMALL_SCHEMA)
# The rows client.holdout held out of write_site_table(rows=300, seed=11) under key bytes(range(32)) at 0.2, as
# computed by the cell-by-cell implementation it had until 2026-12-04.
HELD_OUT = [6, 13, 25, 31, 32, 33, 35, 36, 38, 41, 44, 46, 50, 69, 71, 75, 85, 92, 93, 96, 101, 105, 108, 113, 114,
            117, 119, 121, 122, 128, 137, 141, 151, 160, 165, 166, 175, 184, 187, 192, 196, 199, 200, 202, 211,
            213, 214, 215, 217, 219, 221, 226, 231, 232, 235, 236, 245, 247, 249, 252, 257, 258, 261, 264, 265,
            267, 280, 281, 282, 283, 289, 295]


def _cell_by_cell(frame: pd.DataFrame, schema: Schema) -> list[str]:
    """The definition: each synthesized column's text (categorical label, or repr of the float, "" if
    missing), joined by the unit separator."""
    parts = [
        labels(frame, c.name).astype(str) if c.type == "categorical"
        else ["" if np.isnan(v) else repr(float(v)) for v in numeric(frame, c.name)]
        for c in schema.synthesized_columns
    ]
    return ["\x1f".join(str(p[i]) for p in parts) for i in range(len(frame))]


def test_the_split_of_a_known_table_is_the_one_it_always_was(tmp_path: Path) -> None:
    write_site_table(tmp_path / "site.csv", rows=300, seed=11)
    frame = read_site_table(tmp_path / "site.csv", SCHEMA).clean
    assert np.flatnonzero(holdout_mask(frame, SCHEMA, bytes(range(32)), 0.2)).tolist() == HELD_OUT


floats = st.one_of(st.floats(allow_nan=True, allow_infinity=False, width=64),
                   st.sampled_from([0.0, -0.0, 1e16, 1e-5, 123456789012345678.0, 0.1, 2.5e-308]))


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(st.tuples(floats, st.sampled_from(["F", "M", None]), floats), min_size=0, max_size=20))
def test_row_texts_are_the_cell_by_cell_definition(rows: list[tuple[float, str | None, float]]) -> None:
    frame = pd.DataFrame(rows, columns=["age", "sex", "lab"])
    frame["ward"], frame["outcome"] = "cardio", "healed"
    frame["sex"] = frame["sex"].astype(object)
    texts = row_texts(frame, SCHEMA)
    assert texts == _cell_by_cell(frame, SCHEMA)
    key = bytes(32)
    assert all(hmac.digest(key, t.encode(), hashlib.sha256) == hmac.new(key, t.encode(), hashlib.sha256).digest()
               for t in texts[:3])
