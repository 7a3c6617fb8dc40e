"""The server's guard in front of Flower's FedAdam, fed hand-built reply messages."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, Metadata, MetricRecord, RecordDict
from flwr.app.message.message import make_message

from flwr.serverapp.strategy import FedAdam

from server.strategy import LedgeredFedAdam, SiteReport
from shared.plan import TrainingPlan
from shared.wire import pack

GOOD_METRICS = {"weight": 1.0, "noisy-loss": 12.0, "epsilon-run": 0.5, "epsilon-total": 0.5, "steps": 4}


def _reply(node: int, arrays: dict[str, np.ndarray], metrics: dict[str, float] | None = None, *,
           wire: bool = True) -> Message:
    """A site's reply as it arrives (``wire``: packed flat), or as the averaging step sees it once unpacked."""
    metadata = Metadata(
        run_id=1, message_id=f"r{node}", src_node_id=node, dst_node_id=0, reply_to_message_id="q",
        group_id="1", created_at=time.time(), ttl=60.0, message_type="train",
    )
    content = RecordDict(
        {
            "arrays": pack(arrays) if wire else ArrayRecord({k: Array(v) for k, v in arrays.items()}),
            "metrics": MetricRecord(metrics or GOOD_METRICS),
            "site": ConfigRecord({"site": f"site-{node}"}),
        }
    )
    return make_message(metadata, content)


def test_malformed_replies_are_refused_and_only_good_sites_are_reported() -> None:
    seen: list[tuple[int, list[SiteReport]]] = []
    strategy = LedgeredFedAdam(on_round=lambda o: seen.append((o.round, o.reports)), fraction_evaluate=0.0)
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
    strategy = LedgeredFedAdam(on_round=lambda o: seen.append(o.reports), fraction_evaluate=0.0)
    strategy.current_arrays = {"w": np.zeros(2, dtype=np.float32)}

    arrays, metrics = strategy.aggregate_train(1, [_reply(1, {"w": np.full(2, np.inf, dtype=np.float32)})])

    assert arrays is None and metrics is None and seen == [[]]


def test_metrics_beyond_the_protocol_are_refused_as_unpaid_releases() -> None:
    seen: list[list[SiteReport]] = []
    strategy = LedgeredFedAdam(on_round=lambda o: seen.append(o.reports), fraction_evaluate=0.0)
    strategy.current_arrays = {"w": np.zeros(2, dtype=np.float32)}
    row_count = {**GOOD_METRICS, "num-examples": 1234.0}
    size_weight = {**GOOD_METRICS, "weight": 1234.0}

    arrays, _ = strategy.aggregate_train(1, [_reply(1, {"w": np.ones(2, np.float32)}, row_count),
                                             _reply(2, {"w": np.ones(2, np.float32)}, size_weight)])

    assert arrays is None and seen == [[]]


def _central_plan(noise: float, clip: float) -> TrainingPlan:
    return TrainingPlan(
        run_id="r", rounds=1, local_steps=1, sample_rate=0.1, noise_multiplier=1.0, max_grad_norm=1.0, lr=1.0,
        delta=1e-5, accountant="prv", target_epsilon=1.0, metric_noise_multiplier=100.0, hidden=8, latent=2,
        kl_weight=0.3, seed=0, schema_json="{}", site_dp="central", site_clip=clip, site_noise_multiplier=noise,
        site_target_epsilon=10.0,
    )


def test_central_site_dp_clips_each_update_and_noises_the_average_before_adam() -> None:
    # Two sites, one far outside the clipping norm. Flower's wrapper clips it to S, averages, and adds
    # N(0, (z S / m)^2) per coordinate; FedAdam then steps from that noisy average.
    dim, clip, noise = 20_000, 1.0, 2.0
    strategy = LedgeredFedAdam(
        on_round=lambda o: None, plan=_central_plan(noise, clip), fraction_evaluate=0.0, eta=1.0,
    )
    strategy.current_arrays = {"w": np.zeros(dim, dtype=np.float64)}
    big = np.full(dim, 100.0)  # norm 100 * sqrt(dim): clipped to norm 1
    small = np.full(dim, 1e-9)  # (Flower's clip divides by the norm: an all-zero update would raise)

    averaged, _ = super(FedAdam, strategy).aggregate_train(1, [_reply(1, {"w": big}, wire=False),
                                                                   _reply(2, {"w": small}, wire=False)])

    assert averaged is not None
    values = averaged["w"].numpy()
    clipped_mean = clip / np.sqrt(dim) / 2  # each coordinate of the clipped big update, averaged with zero
    assert abs(values.mean() - clipped_mean) < 5 * (noise * clip / 2) / np.sqrt(dim)
    assert values.std() == pytest.approx(noise * clip / 2, rel=0.05)  # z S / m with m = 2 replies


def test_a_node_the_superlink_reports_gone_is_dropped_under_its_own_name() -> None:
    from flwr.app import Error
    from flwr.common.constant import ErrorCode

    from server.round_outcome import DROPPED, RoundOutcome, UPDATED

    seen: list[RoundOutcome] = []
    strategy = LedgeredFedAdam(on_round=seen.append, fraction_evaluate=0.0)
    strategy.current_arrays = {"w": np.zeros(2, dtype=np.float32)}
    strategy.participants = {3: "site-3"}
    sent = []
    for node in (2, 3):
        metadata = Metadata(run_id=1, message_id=f"ins-{node}", src_node_id=0, dst_node_id=node,
                            reply_to_message_id="", group_id="1", created_at=time.time(), ttl=60.0,
                            message_type="train")
        sent.append(make_message(metadata, RecordDict()))
    strategy._sent, strategy._sampled = sent, [2, 3]
    # What the SuperLink writes for a node that went away: sent by the SuperLink itself (node 1).
    gone = make_message(Metadata(run_id=1, message_id="err", src_node_id=1, dst_node_id=1,
                                 reply_to_message_id="ins-3", group_id="1", created_at=time.time(), ttl=60.0,
                                 message_type="train"),
                        error=Error(code=ErrorCode.NODE_UNAVAILABLE, reason="node unavailable"))

    strategy.aggregate_train(1, [_reply(2, {"w": np.ones(2, dtype=np.float32)}), gone])

    outcomes = {o.node_id: (o.site, o.status) for o in seen[0].sites}
    assert outcomes == {2: ("site-2", UPDATED), 3: ("site-3", DROPPED)}


def test_wrong_dtypes_and_oversized_updates_are_refused_with_a_reason(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[list[SiteReport]] = []
    strategy = LedgeredFedAdam(on_round=lambda o: seen.append(o.reports), fraction_evaluate=0.0, max_update_norm=5.0)
    strategy.current_arrays = {"w": np.zeros(4, dtype=np.float32)}
    replies = [
        _reply(1, {"w": np.ones(4, dtype=np.float32)}),  # norm 2: fine
        _reply(2, {"w": np.ones(4, dtype=np.float64)}),  # a float64 where the model is float32
        _reply(3, {"w": np.full(4, 100.0, dtype=np.float32)}),  # norm 200 > 5
        _reply(4, {"w": np.ones(4, dtype=np.int32)}),
    ]

    arrays, _ = strategy.aggregate_train(1, replies)

    assert [r.site for r in seen[0]] == ["site-1"] and arrays is not None
    assert "dtype float64, expected float32" in caplog.text and "exceeds aggregate.max-update-norm 5" in caplog.text
    assert "dtype int32" in caplog.text


@pytest.mark.parametrize("rule", ["median", "trimmed-mean", "krum"])
def test_robust_rules_keep_one_hostile_update_from_moving_the_model(rule: str) -> None:
    from server.strategy import robust_rule

    strategy = LedgeredFedAdam(on_round=lambda o: None, fraction_evaluate=0.0, robust=robust_rule(rule, trim_beta=0.2))
    strategy.current_arrays = {"w": np.zeros(3, dtype=np.float32)}

    def replies() -> list[Message]:  # fresh each time: an aggregator may consume the records it reads
        honest = [_reply(i, {"w": np.full(3, 1.0 + 0.01 * i, dtype=np.float32)}, wire=False) for i in range(1, 5)]
        return [*honest, _reply(9, {"w": np.full(3, 1e6, dtype=np.float32)}, wire=False)]

    robust, _ = super(FedAdam, strategy).aggregate_train(1, replies())
    plain, _ = super(FedAdam, LedgeredFedAdam(on_round=lambda o: None, fraction_evaluate=0.0)).aggregate_train(
        1, replies())

    assert robust is not None and plain is not None
    assert np.all(np.abs(robust["w"].numpy() - 1.0) < 0.1)  # what FedAdam steps from stays with the honest sites
    assert np.all(plain["w"].numpy() > 1e5)  # the plain mean is dragged away


def test_robust_rules_are_refused_where_the_server_cannot_see_each_update(tmp_path: Path) -> None:
    from server.config import RunConfig
    from shared.errors import ConfigError

    schema = tmp_path / "schema.json"
    schema.write_text("{}")
    base = {"schema-path": str(schema), "aggregate.rule": "median"}
    assert RunConfig.from_run_config(base).aggregate_rule == "median"
    with pytest.raises(ConfigError, match="secure-agg"):
        RunConfig.from_run_config({**base, "secure-agg": True})
    with pytest.raises(ConfigError, match="aggregate.rule must be one of"):
        RunConfig.from_run_config({**base, "aggregate.rule": "mode"})
