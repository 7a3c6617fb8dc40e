"""What one site's update costs on the wire, and to serialise, against the model it carries.

The reply is built exactly as ``client.app.train`` builds it (the generator's weights packed into one flat
array, ``shared.wire``, the noisy metrics, the site's name) and turned into what Flower really sends: every object of the message's
tree, deflated (a content-addressed object is pushed once, so identical chunks count once). The figure is
those bytes over the bare float32 payload, parameters x 4. Serialisation is what the site does to send it
(the record from the state dict, deflated into Flower's objects); the server's inflating it back into tensors
is reported beside it. Both are set against one real round of local DP-SGD training
(``client.trainer.train_round``, the run config's default 10 steps) on a README demo site's share of Adult.

With secure aggregation the update is a masked vector of 64-bit integers (32-bit quantisation summed modulo
2^64, ``shared.plan.secagg_config``); its ratio is reported beside the plain one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents
from flwr.supercore.task_identity import TaskIdentity

from benchmarks.adult import adult_encoded, benchmark_plan
from client.trainer import train_round
from shared.synthesizers import build_generator
from shared.wire import layout_of, pack, unpack

SITE_ROWS = 8_683  # one of the README demo's 3 sites: 32,561 Adult rows / 3, less its 20% hold-out


@dataclass(frozen=True)
class WireFigures:
    parameters: int
    update_bytes: int
    secure_agg_bytes: int
    serialize_s: float  # at the site: state dict -> the packed ArrayRecord -> the deflated objects Flower pushes
    deserialize_s: float  # at the server: objects -> Message -> state dict
    training_s: float  # one round of the site's local training (train_round), the median of three
    objects: int  # objects Flower stores and moves one by one for the update (each hop pulls or pushes each)

    @property
    def ratio(self) -> float:
        return self.update_bytes / (self.parameters * 4)

    @property
    def secure_agg_ratio(self) -> float:
        return self.secure_agg_bytes / (self.parameters * 4)

    @property
    def serialize_share(self) -> float:
        return self.serialize_s / self.training_s


def site_reply(arrays: ArrayRecord) -> Message:
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 1, 1  # what the SuperNode sets
    incoming = Message(RecordDict({"arrays": arrays}), dst_node_id=1, message_type="train")
    metrics = MetricRecord({"weight": 1.0, "noisy-loss": 1.23, "epsilon-run": 0.5, "epsilon-total": 0.5,
                            "steps": 10})
    identity = ConfigRecord({"site": "site-0", "trust": "local"})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics, "site": identity}), reply_to=incoming)


def wire_bytes(message: Message) -> tuple[int, dict[str, bytes]]:
    """Bytes of every object Flower pushes for ``message``, and the objects themselves."""
    contents = {object_id: obj.deflate() for object_id, obj in get_all_nested_objects(message).items()}
    return sum(len(c) for c in contents.values()), contents


def _round_trip(state: dict[str, torch.Tensor]) -> tuple[int, float, float]:
    """(bytes, the site's serialisation seconds, the server's deserialisation seconds)."""
    began = time.perf_counter()
    message = site_reply(pack(state))  # as client/app.py sends it
    size, contents = wire_bytes(message)
    serialized = time.perf_counter()
    received = inflate_object_from_contents(message.object_id, contents)
    assert isinstance(received, Message)
    restored = unpack(received.content.array_records["arrays"], layout_of(state)).to_torch_state_dict()
    deserialized = time.perf_counter()
    if set(restored) != set(state) or any(not torch.equal(restored[k], state[k]) for k in state):
        raise AssertionError("the update did not survive serialisation unchanged")
    return size, serialized - began, deserialized - serialized


def measure(*, repeats: int = 5) -> WireFigures:
    encoder, data = adult_encoded()
    plan = benchmark_plan()
    generator = build_generator(plan, encoder)
    rows = data[torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(0))[:SITE_ROWS]]
    rounds = []
    for seed in range(3):  # the first also warms up Opacus's hooks: the median of three
        began = time.perf_counter()
        train_round(generator, rows, plan, history=[], rng=torch.Generator().manual_seed(seed),
                    device=torch.device("cpu"))
        rounds.append(time.perf_counter() - began)
    training = sorted(rounds)[1]
    state = generator.state_dict()
    parameters = sum(v.numel() for v in state.values())
    serialize, deserialize = [], []
    for _ in range(repeats):
        size, site_s, server_s = _round_trip(state)
        serialize.append(site_s)
        deserialize.append(server_s)
    rng = np.random.default_rng(0)
    masked = pack({k: rng.integers(0, 2**63, size=tuple(v.shape), dtype=np.uint64) for k, v in state.items()})
    secure_size, _ = wire_bytes(site_reply(masked))
    objects = len(wire_bytes(site_reply(pack(state)))[1])
    return WireFigures(parameters, size, secure_size, float(np.median(serialize)), float(np.median(deserialize)),
                       training, objects)
