"""Encoded rows in compact form: each categorical block's chosen slot and each offset's value.

A generator's sample is one-hot in every categorical block, so an (n, dim) float table says no more than one
small integer per block. Sampling a synthetic table through the compact form skips writing the one-hot table
and reading it back (an ``argmax`` or two matrix-vector products per block), which was a third of the time a
table took (``python -m benchmarks --only sampling_vs_ctgan``). ``one_hot`` and ``slots_of`` convert between
the two forms; the one-hot form stays what a generator trains on and what ``sample`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # shared.encoding decodes through this module
    from shared.encoding import OutputBlock

__all__ = ["EncodedSlots", "chosen_slots", "one_hot", "slots_of"]


@dataclass(frozen=True)
class EncodedSlots:
    """``slots[:, j]``: the slot chosen in the j-th categorical block; ``offsets[:, k]``: the k-th offset's value.

    Blocks are counted in layout order, categorical and offset blocks separately.
    """

    slots: np.ndarray  # (n, categorical blocks), int64
    offsets: np.ndarray  # (n, offset blocks), floats in [0, 1]; NaN (a diverged generator) decodes as 0

    def __post_init__(self) -> None:
        if self.slots.ndim != 2 or self.offsets.ndim != 2 or len(self.slots) != len(self.offsets):
            raise ValueError(f"slots {self.slots.shape} and offsets {self.offsets.shape} must be 2-D with one row each")

    def __len__(self) -> int:
        return len(self.slots)

    @staticmethod
    def concatenate(parts: list[EncodedSlots], blocks: tuple[OutputBlock, ...]) -> EncodedSlots:
        if not parts:
            return empty(blocks)
        return EncodedSlots(np.concatenate([p.slots for p in parts]), np.concatenate([p.offsets for p in parts]))


def empty(blocks: tuple[OutputBlock, ...]) -> EncodedSlots:
    categorical = sum(b.kind == "categorical" for b in blocks)
    return EncodedSlots(np.zeros((0, categorical), dtype=np.int64),
                        np.zeros((0, len(blocks) - categorical), dtype=np.float32))


def one_hot(encoded: EncodedSlots, blocks: tuple[OutputBlock, ...], dim: int) -> np.ndarray:
    """The (n, dim) float32 table of ``encoded``: a 1 at each block's slot, each offset in its column."""
    table = np.zeros((len(encoded), dim), dtype=np.float32)
    rows = np.arange(len(encoded))
    categorical = [b for b in blocks if b.kind == "categorical"]
    for index, block in enumerate(categorical):
        table[rows, block.start + encoded.slots[:, index]] = 1.0
    for index, block in enumerate(b for b in blocks if b.kind != "categorical"):
        table[:, block.start] = encoded.offsets[:, index]
    return table


def slots_of(x: np.ndarray, blocks: tuple[OutputBlock, ...]) -> EncodedSlots:
    """The compact form of a one-hot (or probability) table: the chosen slot of each block, the offsets."""
    categorical = [b for b in blocks if b.kind == "categorical"]
    slots = np.empty((len(x), len(categorical)), dtype=np.int64)
    for index, block in enumerate(categorical):
        slots[:, index] = chosen_slots(x[:, block.start : block.start + block.width])
    starts = [b.start for b in blocks if b.kind != "categorical"]
    return EncodedSlots(slots, x[:, starts])  # the table's own precision: a float64 offset decodes as before


def chosen_slots(block: np.ndarray) -> np.ndarray:
    """Each row's slot in a block: ``argmax``, computed as two matrix-vector products when every row is one-hot.

    ``np.argmax`` over a narrow strided slice of a wide table cost ~7x the products. With non-negative values
    (one-hot rows or probabilities, what decode takes), a row summing to 1 whose weighted index points at a 1
    is exactly one-hot; any other row sends the block to ``argmax``.
    """
    width = block.shape[1]
    index = block @ np.arange(width, dtype=block.dtype)
    total = block @ np.ones(width, dtype=block.dtype)
    slot = np.rint(np.nan_to_num(index, nan=-1.0, posinf=-1.0, neginf=-1.0)).astype(np.int64)  # NaN: not one-hot
    inside = (slot >= 0) & (slot < width)
    hits = np.zeros(len(block), dtype=bool)
    hits[inside] = block[np.flatnonzero(inside), slot[inside]] == 1
    if len(block) and bool(np.all((total == 1) & (index == slot) & hits)):
        return slot
    return np.argmax(np.nan_to_num(block, nan=0.0), axis=1)  # a diverged generator's NaN reads as 0
