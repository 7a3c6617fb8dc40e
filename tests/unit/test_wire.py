"""The generator on the wire: one flat array, split back by the receiver's own layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flwr.app import Message
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.wire import site_reply, wire_bytes
from shared.wire import WireFormatError, layout_of, pack, unpack

shapes = st.lists(st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(shapes=shapes, dtype=st.sampled_from([np.float32, np.float64, np.uint64]), seed=st.integers(0, 2**31))
def test_pack_then_unpack_gives_back_every_tensor_exactly(shapes: list[tuple[int, ...]], dtype: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {f"layer{i}.{'weight' if i % 2 else 'bias'}": (rng.random(shape) * 1e6).astype(dtype)
               for i, shape in enumerate(shapes)}
    back = unpack(pack(tensors), layout_of(tensors))
    assert list(back.keys()) == sorted(tensors)
    for name, tensor in tensors.items():
        assert back[name].numpy().dtype == tensor.dtype and np.array_equal(back[name].numpy(), tensor)


def test_torch_state_dicts_pack_like_numpy_and_the_order_of_the_dict_does_not_matter() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    state = module.state_dict()
    reordered = dict(reversed(list(state.items())))
    packed = pack(state)
    assert [a.numpy().tolist() for a in packed.values()] == [a.numpy().tolist() for a in pack(reordered).values()]
    back = unpack(packed, layout_of(reordered)).to_torch_state_dict()
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_a_packed_reply_is_a_handful_of_flower_objects_whatever_the_number_of_tensors() -> None:
    tensors = {f"t{i}": np.full((8, 8), i, dtype=np.float32) for i in range(40)}
    message = site_reply(pack(tensors))  # a train reply as client.app builds it
    _, objects = wire_bytes(message)
    assert len(objects) <= 7  # the message, its records, the array and its chunk: not 2 per tensor
    received = inflate_object_from_contents(message.object_id, objects)
    assert isinstance(received, Message)
    back = unpack(received.content.array_records["arrays"], layout_of(tensors))
    assert all(np.array_equal(back[k].numpy(), v) for k, v in tensors.items())


def test_a_generator_of_another_layout_is_refused_by_name_not_split_wrongly() -> None:
    sent = {"a": np.zeros((2, 3), np.float32), "b": np.zeros(4, np.float32)}
    same_size = {"a": np.zeros((3, 2), np.float32), "b": np.zeros(4, np.float32)}  # 10 values, other shapes
    with pytest.raises(WireFormatError, match="layout"):
        unpack(pack(sent), layout_of(same_size))
    with pytest.raises(WireFormatError, match="layout"):
        unpack(pack({**sent, "c": np.zeros(1, np.float32)}), layout_of(sent))


def test_a_record_that_is_not_one_flat_array_of_the_right_length_is_refused() -> None:
    tensors = {"a": np.zeros(3, np.float32), "b": np.zeros(2, np.float32)}
    per_tensor = pack({"a": tensors["a"]})
    per_tensor["b"] = next(iter(pack({"b": tensors["b"]}).values()))
    with pytest.raises(WireFormatError, match="one flat array"):
        unpack(per_tensor, layout_of(tensors))
    record = pack(tensors)
    name = next(iter(record))
    record[name] = next(iter(pack({"x": np.zeros(4, np.float32)}).values()))  # right name, 4 values, not 5
    with pytest.raises(WireFormatError, match=r"expected \(5,\)"):
        unpack(record, layout_of(tensors))


def test_mixed_dtypes_are_refused_rather_than_cast() -> None:
    with pytest.raises(WireFormatError, match="mixed dtypes"):
        pack({"a": np.zeros(2, np.float32), "b": np.zeros(2, np.int64)})
