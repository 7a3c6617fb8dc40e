"""How the generator travels between server and sites: one flat array, not one Flower object per tensor.

Flower stores and moves every Array of a message as objects of its own (the array and its chunks), each one
pulled by a separate request between SuperLink, SuperNode and the task. A 12-tensor generator made 29 objects
a reply; flat, a reply is 7, and each object saved is a round trip on every hop of every site, both ways
(benchmarks: ``wire_ratio``'s ``update_objects``, ``round_overhead``).

Only the wire is flat. Everything that reasons about parameters (FedAdam, the checkpoint, the guards on a
reply, secure aggregation's per-tensor masks) keeps the per-tensor form, so it is packed just before a
message goes out and unpacked first thing on arrival. The receiver splits the vector by its *own* layout
(the generator it built from the plan); the array's name carries a fingerprint of the sender's layout, so a
site on another generator shape is refused by name instead of being split wrongly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Union

import numpy as np
from flwr.app import Array, ArrayRecord

from shared.errors import FedsynthError

if TYPE_CHECKING:  # not imported at run time: a secure-aggregation stage packs numpy arrays without torch
    import torch

Tensor = Union[np.ndarray, "torch.Tensor"]

_PREFIX = "flat-"

Layout = dict[str, tuple[int, ...]]


class WireFormatError(FedsynthError):
    """A received record is not the flat generator this side expects."""


def layout_of(tensors: Mapping[str, Tensor]) -> Layout:
    """Parameter names and shapes, the order they travel in (sorted by name: no side's dict order matters)."""
    return {name: tuple(int(d) for d in tensors[name].shape) for name in sorted(tensors)}


def fingerprint(layout: Layout) -> str:
    text = ";".join(f"{name}:{'x'.join(map(str, shape))}" for name, shape in layout.items())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pack(tensors: Mapping[str, Tensor]) -> ArrayRecord:
    """One ArrayRecord holding a single array: every tensor flattened, in ``layout_of`` order."""
    layout = layout_of(tensors)
    arrays = [_numpy(tensors[name]) for name in layout]
    dtypes = {a.dtype for a in arrays}
    if len(dtypes) != 1:
        # Never met by our generators (all float32) or masked updates (all uint64); mixing would need a cast.
        raise WireFormatError(f"cannot send tensors of mixed dtypes {sorted(map(str, dtypes))} as one array")
    flat = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0, dtype=np.float32)
    return ArrayRecord({_PREFIX + fingerprint(layout): Array(flat)})


def unpack(record: ArrayRecord, expected: Layout) -> ArrayRecord:
    """The per-tensor record ``pack`` made, split by ``expected`` (the receiver's own layout).

    Raises WireFormatError naming what differs (never a value): not one flat array, another layout, or
    another length.
    """
    if len(record) != 1:
        raise WireFormatError(f"expected the generator as one flat array, got {len(record)} arrays")
    name, array = next(iter(record.items()))
    want = _PREFIX + fingerprint(expected)
    if name != want:
        raise WireFormatError(f"the generator was sent in layout {name!r}, this side expects {want!r} (a different "
                              "generator shape or fedsynth version)")
    flat = array.numpy()
    sizes = [int(np.prod(shape, dtype=np.int64)) for shape in expected.values()]
    if flat.ndim != 1 or flat.size != sum(sizes):
        raise WireFormatError(f"the flat generator has shape {flat.shape}, expected ({sum(sizes)},)")
    parts = np.split(flat, np.cumsum(sizes)[:-1]) if sizes else []
    # Slices of one contiguous vector reshape to contiguous views (ascontiguousarray would turn 0-d into 1-d).
    return ArrayRecord({key: Array(part.reshape(shape))
                        for (key, shape), part in zip(expected.items(), parts, strict=True)})


def _numpy(tensor: Tensor) -> np.ndarray:
    if hasattr(tensor, "detach"):  # a torch tensor, perhaps on a GPU
        return tensor.detach().cpu().numpy()
    return np.asarray(tensor)
