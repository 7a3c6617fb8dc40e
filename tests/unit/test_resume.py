"""Resuming a stopped server: what it reads back, which round it numbers on from, and how the consortium ledger
settles a round that was in flight when the server died."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord
from opacus.accountants import RDPAccountant

from server.checkpoint import Checkpointer, read_checkpoint
from server.config import RunConfig
from server.consortium import ConsortiumLedger
from server.plan import make_plan
from server.resume import prepare_out_dir
from server.round_outcome import UPDATED, RoundOutcome, SiteOutcome, SiteReport
from shared.accounting import epsilon
from shared.errors import ConfigError
from shared.schema import load_schema
from tests.conftest import SMALL_SCHEMA


@pytest.fixture
def config(tmp_path: Path) -> RunConfig:
    (tmp_path / "schema.json").write_text(json.dumps(SMALL_SCHEMA))
    return RunConfig.from_run_config({
        "schema-path": str(tmp_path / "schema.json"), "out-dir": str(tmp_path / "out"), "num-rounds": 6,
        "dp.accountant": "rdp", "resume": True,
    })


def _report(plan_rounds: int, node: int, site: str, charged_rounds: int, plan: object) -> SiteReport:
    main, metric = plan.round_releases()  # type: ignore[attr-defined]
    eps = epsilon([main, metric] * charged_rounds, delta=plan.delta, accountant=plan.accountant)  # type: ignore[attr-defined]
    return SiteReport(node_id=node, site=site, noisy_loss=1.0, epsilon_run=eps, epsilon_total=eps,
                      steps=plan.local_steps, trust="local")  # type: ignore[attr-defined]


def _round(ledger: ConsortiumLedger, server_round: int, reports: list[SiteReport]) -> None:
    now = time.time()
    ledger.record_round(RoundOutcome(server_round, now, now + 1, reports,
                                     [SiteOutcome(r.node_id, r.site, UPDATED, 0.5) for r in reports]))


def _rounds_of(ledger: ConsortiumLedger, site: str) -> list[int]:
    return [e.round for e in ledger.ledger.entries_for(site, "record")]


def test_a_round_lost_in_flight_is_recorded_for_exactly_the_sites_that_trained_it(config: RunConfig) -> None:
    schema = load_schema(config.schema_path)
    plan = make_plan(config, schema)
    config.out_dir.mkdir(parents=True)
    path = config.out_dir / "ledger.json"
    first = ConsortiumLedger(path, plan)
    for server_round in (1, 2):
        _round(first, server_round, [_report(6, n, f"site-{n}", server_round, plan) for n in (1, 2, 3)])
    first.round_sent(3, {"site-1": 1, "site-2": 2, "node-3": 3})  # the server dies with round 3 out

    # The restarted server: site-1 trained round 3 (its ledger has it), site-2 never got it, node 3 (known to
    # the server only by its node id) trained it but never reports again.
    resumed = ConsortiumLedger(path, plan, unconfirmed={"site-1": (3, 1), "site-2": (3, 2), "node-3": (3, 3)})
    _round(resumed, 4, [_report(6, 1, "site-1", 4, plan), _report(6, 2, "site-2", 3, plan)])
    resumed.settle_unconfirmed()

    assert _rounds_of(resumed, "site-1") == [1, 2, 3, 4]
    assert _rounds_of(resumed, "site-2") == [1, 2, 4]
    assert _rounds_of(resumed, "node-3") == [3]  # counted once, as an upper bound, under the name it was sent as
    assert resumed.ledger.verify() == len(resumed.ledger.entries)
    # Independently of shared.accounting: Opacus's RDP accountant over the releases site-1 really made.
    main, metric = plan.round_releases()
    accountant = RDPAccountant()
    accountant.history = [main, metric] * 4
    assert resumed.spent()["site-1"] == pytest.approx(accountant.get_epsilon(delta=plan.delta), rel=1e-9)
    assert resumed.unconfirmed == {}


def test_resume_reads_the_checkpoint_and_numbers_on_after_the_round_in_flight(config: RunConfig) -> None:
    schema = load_schema(config.schema_path)
    plan = make_plan(config, schema)
    out = config.out_dir
    out.mkdir(parents=True)
    (out / "plan.json").write_text(plan.to_json())
    ledger = ConsortiumLedger(out / "ledger.json", plan)
    _round(ledger, 1, [_report(6, 7, "site-a", 1, plan)])
    class Moments:  # the strategy's state, as the checkpoint reads it
        m_t = {"w": np.full(3, 0.5)}
        v_t = {"w": np.full(3, 0.25)}
        participants = {7: "site-a"}
        round_offset = 0

    checkpointer = Checkpointer(out / "checkpoint", plan, ledger, strategy=Moments(),
                                class_frequencies={"y": {"0": 0.7, "1": 0.3}})
    checkpointer(1, ArrayRecord({"w": Array(np.arange(3, dtype=np.float32))}))
    ledger.round_sent(2, {"site-a": 7})

    point = prepare_out_dir(config, schema)

    assert point is not None and point.plan == plan
    assert point.next_round == 3 and point.rounds_left == 4
    assert point.unconfirmed == {"site-a": (2, 7)}
    assert [r["round"] for r in point.rounds] == [1]
    saved = read_checkpoint(out / "checkpoint" / "checkpoint.pt")
    assert saved.round == 1 and saved.participants == {7: "site-a"}
    assert np.array_equal(saved.m_t["w"], np.full(3, 0.5)) and np.array_equal(saved.v_t["w"], np.full(3, 0.25))
    assert saved.class_frequencies == {"y": {"0": 0.7, "1": 0.3}}
    assert "round 2 was in flight" in point.describe()


def test_resume_refuses_what_it_cannot_continue_honestly(config: RunConfig, tmp_path: Path) -> None:
    schema = load_schema(config.schema_path)
    plan = make_plan(config, schema)
    out = config.out_dir
    assert prepare_out_dir(config, schema) is None  # nothing there yet: a new run

    out.mkdir(parents=True)
    (out / "plan.json").write_text(plan.to_json())
    ledger = ConsortiumLedger(out / "ledger.json", plan)
    _round(ledger, 1, [_report(6, 7, "site-a", 1, plan)])
    fresh = RunConfig.from_run_config({"schema-path": str(config.schema_path), "out-dir": str(out)})
    with pytest.raises(ConfigError, match="resume=true"):
        prepare_out_dir(fresh, schema)  # a second run appended to the first one's ledger
    with pytest.raises(ConfigError, match="before its first checkpoint"):
        prepare_out_dir(config, schema)

    Checkpointer(out / "checkpoint", plan, ledger)(1, ArrayRecord({"w": Array(np.zeros(2, dtype=np.float32))}))
    changed = RunConfig.from_run_config({"schema-path": str(config.schema_path), "out-dir": str(out),
                                         "num-rounds": 6, "dp.accountant": "rdp", "resume": True,
                                         "dp.target-epsilon": 9.0})
    with pytest.raises(ConfigError, match="differs in: .*noise_multiplier"):
        prepare_out_dir(changed, schema)  # the noise was calibrated to the old budget

    (out / "manifest.json").write_text("{}")
    with pytest.raises(ConfigError, match="already finished"):
        prepare_out_dir(config, schema)


def test_the_strategy_numbers_rounds_on_from_where_the_run_stopped() -> None:
    from server.strategy import LedgeredFedAdam
    from tests.unit.test_strategy import _reply

    seen: list[int] = []
    strategy = LedgeredFedAdam(on_round=lambda o: seen.append(o.round), fraction_evaluate=0.0, first_round=4)
    strategy.current_arrays = {"w": np.zeros(3, dtype=np.float32)}
    strategy.aggregate_train(1, [_reply(1, {"w": np.ones(3, dtype=np.float32)})])
    assert seen == [4]  # Flower's first round of the resumed start() is the run's round 4
