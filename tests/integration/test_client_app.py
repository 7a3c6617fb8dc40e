"""The real ClientApp, called with hand-built Flower messages: what a site sends, spends and refuses."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, Metadata, RecordDict
from flwr.app.message.message import make_message
from flwr.common.serde import message_to_proto
from opacus.accountants import PRVAccountant

from client.app import app as client_app
from server.config import RunConfig
from server.plan import make_plan
from shared.encoding import OutputBlock, TableEncoder
from shared.errors import BudgetExceededError
from shared.plan import TrainingPlan
from shared.schema import Schema, load_schema
from shared.tvae import TVAEGenerator
from shared.wire import WireFormatError, layout_of, pack, unpack
from tests.conftest import CANARY_CATEGORY, CANARY_FLOAT, CANARY_ID, write_site_table


def _plan(schema_path: Path, **overrides: object) -> TrainingPlan:
    run_config: dict[str, object] = {
        "schema-path": str(schema_path), "num-rounds": 3, "train.local-steps": 3, "train.hidden": 16,
        "dp.target-epsilon": 2.0, **overrides,
    }
    return make_plan(RunConfig.from_run_config(run_config), load_schema(schema_path))  # type: ignore[arg-type]


def _train_message(plan: TrainingPlan, server_round: int) -> Message:
    schema = Schema.from_dict(json.loads(plan.schema_json))
    encoder = TableEncoder.from_schema(schema)
    generator = TVAEGenerator(encoder.blocks, encoder.dim, plan.model_config, seed=plan.seed)
    config = ConfigRecord({**plan.to_config(), "server-round": server_round})
    metadata = Metadata(
        run_id=1, message_id=f"m{server_round}", src_node_id=0, dst_node_id=7, reply_to_message_id="",
        group_id=str(server_round), created_at=time.time(), ttl=3600.0, message_type="train",
    )
    return make_message(metadata, RecordDict({"arrays": pack(generator.state_dict()), "config": config}))


def _context(sites_dir: Path, cap: float) -> Context:
    return Context(
        run_id=1, node_id=7, node_config={"partition-id": 1, "num-partitions": 3}, state=RecordDict(),
        run_config={"sites-dir": str(sites_dir), "simulation.site-epsilon-cap": cap},
    )


@pytest.fixture()
def site(tmp_path: Path, small_schema: Path) -> tuple[Path, Path]:
    sites = tmp_path / "sites"
    sites.mkdir()
    write_site_table(sites / "site-1.csv", rows=120, seed=1, canary=True)
    return sites, small_schema


def test_reply_carries_only_weights_and_noised_metrics(site: tuple[Path, Path]) -> None:
    sites, schema = site
    plan = _plan(schema)
    reply = client_app(_train_message(plan, 1), _context(sites, cap=5.0))
    wire = message_to_proto(reply).SerializeToString()
    for canary in (CANARY_ID, CANARY_CATEGORY, CANARY_FLOAT):
        assert canary.encode() not in wire
    metrics = dict(reply.content.metric_records["metrics"])
    assert set(metrics) == {"weight", "noisy-loss", "epsilon-run", "epsilon-total", "steps"}
    assert metrics["weight"] == 1.0  # never the row count
    assert dict(reply.content.config_records["site"]) == {"site": "site-1", "trust": "local"}
    sent = _train_message(plan, 1).content.array_records["arrays"]
    [flat] = reply.content.array_records["arrays"].values()  # the whole generator as one array on the wire
    assert flat.shape == next(iter(sent.values())).shape
    layout = layout_of(TVAEGenerator(*_blocks(plan), plan.model_config, seed=plan.seed).state_dict())
    before, after = unpack(sent, layout), unpack(reply.content.array_records["arrays"], layout)
    assert all(np.isfinite(after[k].numpy()).all() for k in layout)
    assert any(not np.array_equal(before[k].numpy(), after[k].numpy()) for k in layout)  # it trained


def test_a_generator_sent_in_another_layout_is_refused_by_name(site: tuple[Path, Path]) -> None:
    sites, schema = site
    plan = _plan(schema)
    message = _train_message(plan, 1)
    state = TVAEGenerator(*_blocks(plan), plan.model_config, seed=plan.seed).state_dict()
    state.pop(next(iter(state)))  # a server on another generator shape
    message.content.array_records["arrays"] = pack(state)
    with pytest.raises(WireFormatError, match="layout"):
        client_app(message, _context(sites, cap=5.0))
    assert not (sites / "site-1.ledger.json").exists()  # refused before anything was spent


def _blocks(plan: TrainingPlan) -> tuple[tuple[OutputBlock, ...], int]:
    encoder = TableEncoder.from_schema(Schema.from_dict(json.loads(plan.schema_json)))
    return encoder.blocks, encoder.dim


def test_spend_is_cumulative_across_rounds_and_processes(site: tuple[Path, Path]) -> None:
    sites, schema = site
    plan = _plan(schema)
    for server_round in (1, 2):  # each call rebuilds everything from the ledger file, as a new process would
        client_app(_train_message(plan, server_round), _context(sites, cap=5.0))
    entries = json.loads((sites / "site-1.ledger.json").read_text())["entries"]
    accountant = PRVAccountant()  # the plan's default accountant, recomputed with Opacus directly
    assert plan.accountant == "prv"
    accountant.history = plan.round_releases() * 2
    assert [e["round"] for e in entries] == [1, 2]
    assert entries[-1]["epsilon"] == pytest.approx(accountant.get_epsilon(delta=plan.delta), rel=1e-6)


def test_site_refuses_a_round_past_its_cap_and_spends_nothing(site: tuple[Path, Path]) -> None:
    sites, schema = site
    plan = _plan(schema)
    with pytest.raises(BudgetExceededError, match="cap"):
        client_app(_train_message(plan, 1), _context(sites, cap=0.1))
    assert not (sites / "site-1.ledger.json").exists()


def _histogram_message(plan: TrainingPlan) -> Message:
    metadata = Metadata(
        run_id=1, message_id="h", src_node_id=0, dst_node_id=7, reply_to_message_id="", group_id="0",
        created_at=time.time(), ttl=3600.0, message_type="query.histograms",
    )
    return make_message(metadata, RecordDict({"config": ConfigRecord(plan.to_config())}))


def test_histograms_are_paid_for_before_they_leave_and_hold_no_row(site: tuple[Path, Path]) -> None:
    sites, schema = site
    plan = _plan(schema, **{"preprocess.quantile-bins": True, "preprocess.class-frequencies": True})
    assert plan.preprocess_noise_multiplier > 0

    reply = client_app(_histogram_message(plan), _context(sites, cap=5.0))

    record = reply.content.config_records["histograms"]
    assert {k for k in record.keys() if k.startswith("hist.")} == {"hist.age", "hist.lab", "hist.outcome"}
    wire = message_to_proto(reply).SerializeToString()
    for canary in (CANARY_ID, CANARY_CATEGORY, CANARY_FLOAT):
        assert canary.encode() not in wire
    entries = json.loads((sites / "site-1.ledger.json").read_text())["entries"]
    assert [(e["round"], e["noise_multiplier"], e["sample_rate"], e["steps"]) for e in entries] == [
        (0, plan.preprocess_noise_multiplier, 1.0, 1)
    ]


def test_histograms_past_the_cap_are_refused_and_nothing_is_spent(site: tuple[Path, Path]) -> None:
    sites, schema = site
    plan = _plan(schema, **{"preprocess.class-frequencies": True, "preprocess.noise-multiplier": 5.0})
    with pytest.raises(BudgetExceededError, match="cap"):
        client_app(_histogram_message(plan), _context(sites, cap=0.5))
    assert not (sites / "site-1.ledger.json").exists()
