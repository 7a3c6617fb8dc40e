"""The server's guard in front of Flower's FedAdam, fed hand-built reply messages."""

from __future__ import annotations

import time

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, Metadata, MetricRecord, RecordDict
from flwr.app.message.message import make_message

from server.strategy import LedgeredFedAdam, SiteReport

GOOD_METRICS = {"weight": 1.0, "noisy-loss": 12.0, "epsilon-run": 0.5, "epsilon-total": 0.5, "steps": 4}


def _reply(node: int, arrays: dict[str, np.ndarray], metrics: dict[str, float] | None = None) -> Message:
    metadata = Metadata(
        run_id=1, message_id=f"r{node}", src_node_id=node, dst_node_id=0, reply_to_message_id="q",
        group_id="1", created_at=time.time(), ttl=60.0, message_type="train",
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
            "metrics": MetricRecord(metrics or GOOD_METRICS),
            "site": ConfigRecord({"site": f"site-{node}"}),
        }
    )
    return make_message(metadata, content)


def test_malformed_replies_are_refused_and_only_good_sites_are_reported() -> None:
    seen: list[tuple[int, list[SiteReport]]] = []
    strategy = LedgeredFedAdam(on_round=lambda r, reports: seen.append((r, reports)), fraction_evaluate=0.0)
    strategy.current_arrays = {"w": np.zeros(3, dtype=np.float32)}
    replies = [
        _reply(1, {"w": np.ones(3, dtype=np.float32)}),
        _reply(2, {"w": np.array([np.nan, 0, 0], dtype=np.float32)}),
        _reply(3, {"w": np.ones(4, dtype=np.float32)}),
        _reply(4, {"v": np.ones(3, dtype=np.float32)}),
        _reply(5, {"w": np.ones(3, dtype=np.float32)}, {"weight": 1.0}),
    ]

    arrays, _ = strategy.aggregate_train(1, replies)

    assert [r.site for r in seen[0][1]] == ["site-1"]
    assert strategy.participants == {1: "site-1"}
    assert arrays is not None and np.all(arrays["w"].numpy() > 0)  # moved toward the one good update


def test_a_round_without_usable_replies_changes_nothing() -> None:
    seen: list[list[SiteReport]] = []
    strategy = LedgeredFedAdam(on_round=lambda r, reports: seen.append(reports), fraction_evaluate=0.0)
    strategy.current_arrays = {"w": np.zeros(2, dtype=np.float32)}

    arrays, metrics = strategy.aggregate_train(1, [_reply(1, {"w": np.full(2, np.inf, dtype=np.float32)})])

    assert arrays is None and metrics is None and seen == [[]]
