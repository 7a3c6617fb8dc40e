"""The GPU path on a real CUDA device: the site's device choice, a round of the real ClientApp at a site whose
device is ``cuda``, the trainer it calls (every generator; rows and privacy units), and drawing the synthetic
table from a generator that lives on the GPU.

CI has no GPU, so the module is skipped there; ``benchmarks/gpu_check.sh`` runs it on a GPU machine, beside the
``gpu`` benchmark. Where a result must not depend on the device, the same work is done on the CPU and compared:
the steps taken, the history the accountant recorded and so the epsilon, the table's categories.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, Metadata, RecordDict
from flwr.app.message.message import make_message
from flwr.common.serde import message_to_proto
from opacus.accountants import PRVAccountant

import client.trainer
from client.app import app as client_app
from client.trainer import LocalResult, train_round
from client.units import bound_rows_per_unit, pack_units, unit_ids
from server.config import RunConfig
from server.plan import make_plan
from server.sampling import sample_table
from shared.accounting import epsilon
from shared.class_shares import ClassShares
from shared.device import pick_device
from shared.encoding import TableEncoder
from shared.generator import TabularGenerator, state_hash
from shared.plan import LOSS_BOUND, TrainingPlan
from shared.schema import Schema, load_schema
from shared.synthesizers import build_generator
from shared.validation import read_site_table, validate_table
from shared.wire import layout_of, pack, unpack
from tests.conftest import SMALL_SCHEMA, write_site_table

GPU = "cuda"  # the device under test; every CUDA-specific line reads it, so a copy set to "cpu" checks the logic

pytestmark = [
    pytest.mark.skipif(
        GPU == "cuda" and not torch.cuda.is_available(),
        reason="no CUDA device visible: the GPU path is tested on a GPU machine (benchmarks/gpu_check.sh)",
    ),
    pytest.mark.filterwarnings("ignore:Full backward hook is firing"),
]

GENERATORS = ["tvae", "gan", "ctvae"]


def _plan(generator: str, schema: Schema, **overrides: object) -> TrainingPlan:
    values: dict[str, object] = dict(
        run_id="gpu", rounds=1, local_steps=6, sample_rate=0.2, noise_multiplier=1.1, max_grad_norm=1.0, lr=0.5,
        delta=1e-5, accountant="prv", target_epsilon=3.0, metric_noise_multiplier=100.0, hidden=16, latent=4,
        kl_weight=0.3, seed=0, schema_json=json.dumps(schema.to_dict()), generator=generator,
    )
    values.update(overrides)
    return TrainingPlan(**values)  # type: ignore[arg-type]


@pytest.fixture()
def site_rows(tmp_path: Path, small_schema: Path) -> tuple[TableEncoder, torch.Tensor]:
    write_site_table(tmp_path / "site.csv", rows=300, seed=5)
    schema = load_schema(small_schema)
    encoder = TableEncoder.from_schema(schema)
    return encoder, torch.from_numpy(encoder.encode(read_site_table(tmp_path / "site.csv", schema).clean))


def _round(plan: TrainingPlan, encoder: TableEncoder, data: torch.Tensor, device: str
           ) -> tuple[TabularGenerator, LocalResult, dict[str, torch.Tensor]]:
    """One site round as the ClientApp runs it: a fresh generator from the plan, ``train_round`` on the device
    the site's configuration picks (``pick_device``), with the same secret-stream seed on every device."""
    generator = build_generator(plan, encoder)
    start = generator.state_dict()
    result = train_round(generator, data, plan, history=[], rng=torch.Generator().manual_seed(7),
                         device=pick_device(device))
    return generator, result, start


def _parameter_devices(generator: TabularGenerator) -> set[str]:
    return {p.device.type for p in generator.weights.parameters()}


def test_a_site_that_asks_for_cuda_gets_the_gpu_and_computes_there() -> None:
    # Execute
    chosen, automatic = pick_device(GPU), pick_device("auto")

    # Assert
    assert chosen.type == GPU and automatic.type == GPU  # "auto" prefers the GPU when one is visible
    x = torch.arange(4.0, device=chosen)
    assert x.device.type == GPU and float((x @ x).cpu()) == 14.0


def _watch_training(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, set[str]]]:
    """Per ``train_round`` call the ClientApp makes: the device it passed, and where the weights were after it."""
    seen: list[tuple[str, set[str]]] = []
    real: Callable[..., LocalResult] = client.trainer.train_round

    def watched(generator: TabularGenerator, *args: Any, device: torch.device, **kwargs: Any) -> LocalResult:
        result = real(generator, *args, device=device, **kwargs)
        seen.append((device.type, _parameter_devices(generator)))
        return result

    monkeypatch.setattr(client.trainer, "train_round", watched)  # the app imports it when a round starts
    return seen


def _app_round(sites: Path, plan: TrainingPlan, device: str) -> Message:
    """One training message through the real ClientApp, at simulated site-1 whose run config asks for ``device``."""
    sites.mkdir()
    write_site_table(sites / "site-1.csv", rows=200, seed=1)
    encoder = TableEncoder.from_schema(Schema.from_dict(json.loads(plan.schema_json)))
    metadata = Metadata(
        run_id=1, message_id="m1", src_node_id=0, dst_node_id=7, reply_to_message_id="", group_id="1",
        created_at=time.time(), ttl=3600.0, message_type="train",
    )
    config = ConfigRecord({**plan.to_config(), "server-round": 1})
    message = make_message(metadata, RecordDict({"arrays": pack(build_generator(plan, encoder).state_dict()),
                                                 "config": config}))
    context = Context(
        run_id=1, node_id=7, node_config={"partition-id": 1, "num-partitions": 3}, state=RecordDict(),
        run_config={"sites-dir": str(sites), "simulation.site-epsilon-cap": 10.0, "simulation.device": device},
    )
    return client_app(message, context)


@pytest.mark.parametrize("name", GENERATORS)
def test_the_client_app_at_a_cuda_site_trains_there_and_reports_the_cpus_epsilon(
    tmp_path: Path, small_schema: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # Prepare: the run's own plan (noise solved for the budget), as the server sends it
    run_config = {"schema-path": str(small_schema), "num-rounds": 3, "train.local-steps": 4, "train.hidden": 16,
                  "dp.target-epsilon": 2.0, "train.generator": name}
    plan = make_plan(RunConfig.from_run_config(run_config), load_schema(small_schema))  # type: ignore[arg-type]

    seen = _watch_training(monkeypatch)

    # Execute
    gpu_reply = _app_round(tmp_path / "gpu", plan, GPU)
    cpu_reply = _app_round(tmp_path / "cpu", plan, "cpu")

    # Assert: the site trained on the GPU
    assert seen == [(GPU, {GPU}), ("cpu", {"cpu"})]
    gpu_metrics, cpu_metrics = (dict(r.content.metric_records["metrics"]) for r in (gpu_reply, cpu_reply))
    assert gpu_metrics["steps"] == cpu_metrics["steps"] == plan.local_steps
    # It reports what the CPU site reports, and what Opacus recomputes from the plan's releases.
    accountant = PRVAccountant()
    assert plan.accountant == "prv"
    accountant.history = plan.round_releases()
    assert gpu_metrics["epsilon-run"] == pytest.approx(accountant.get_epsilon(delta=plan.delta), rel=1e-6)
    assert gpu_metrics["epsilon-run"] == cpu_metrics["epsilon-run"]
    assert gpu_metrics["epsilon-total"] == cpu_metrics["epsilon-total"]
    # What it sends is plain numbers on the wire: finite, trained, readable by the server's own layout.
    message_to_proto(gpu_reply).SerializeToString()
    encoder = TableEncoder.from_schema(Schema.from_dict(json.loads(plan.schema_json)))
    start = build_generator(plan, encoder).state_dict()
    layout = layout_of(start)
    sent = unpack(gpu_reply.content.array_records["arrays"], layout)
    assert all(np.isfinite(sent[k].numpy()).all() for k in layout)
    assert any(not np.array_equal(sent[k].numpy(), start[k].numpy()) for k in layout)


@pytest.mark.parametrize("name", GENERATORS)
def test_a_dp_sgd_round_on_the_gpu_trains_and_costs_what_it_costs_on_the_cpu(
    site_rows: tuple[TableEncoder, torch.Tensor], name: str
) -> None:
    # Prepare
    encoder, data = site_rows
    plan = _plan(name, encoder.schema)

    # Execute
    gpu_generator, gpu, start = _round(plan, encoder, data, GPU)
    _, cpu, _ = _round(plan, encoder, data, "cpu")

    # Assert: the steps ran on the GPU and changed the weights
    assert _parameter_devices(gpu_generator) == {GPU}
    assert gpu.steps == cpu.steps == plan.local_steps
    trained = gpu_generator.state_dict()
    assert all(torch.isfinite(v).all() for v in trained.values())
    assert state_hash(trained) != state_hash(start)
    assert 0.0 <= gpu.noisy_loss <= LOSS_BOUND
    # The accountant's record, and so the epsilon the site reports, is the CPU's, and Opacus's own recomputation.
    planned = [(plan.noise_multiplier, plan.sample_rate, plan.local_steps)]
    assert gpu.history == cpu.history == planned
    accountant = PRVAccountant()
    accountant.history = list(planned)
    expected = accountant.get_epsilon(delta=plan.delta)
    assert epsilon(gpu.history, delta=plan.delta, accountant=plan.accountant) == pytest.approx(expected, rel=1e-9)
    assert epsilon(gpu.history, delta=plan.delta, accountant=plan.accountant) == epsilon(
        cpu.history, delta=plan.delta, accountant=plan.accountant)


@pytest.mark.parametrize("name", GENERATORS)
def test_what_a_site_sends_after_a_gpu_round_holds_only_cpu_arrays(
    site_rows: tuple[TableEncoder, torch.Tensor], name: str
) -> None:
    # Prepare
    encoder, data = site_rows
    generator, _, _ = _round(_plan(name, encoder.schema), encoder, data, GPU)

    # Execute: the state a site serialises (the wire packs it flat; checkpoints keep Flower's per-tensor record)
    state = generator.state_dict()
    record = ArrayRecord(state)

    # Assert
    assert _parameter_devices(generator) == {GPU}  # the model itself stays where it trained
    assert {v.device.type for v in state.values()} == {"cpu"}
    assert set(record.keys()) == set(state)
    for key, tensor in state.items():
        assert np.array_equal(record[key].numpy(), tensor.numpy())


def test_a_round_over_privacy_units_on_the_gpu_records_the_planned_steps() -> None:
    # Prepare: patients with one to four rows each, at most k of them used per patient
    schema = Schema.from_dict({**SMALL_SCHEMA, "privacy_unit": "patient_id"})
    encoder, k = TableEncoder.from_schema(schema), 3
    rng = np.random.default_rng(0)
    rows = [{"patient_id": f"P{p}", "age": str(int(rng.integers(18, 96))), "sex": str(rng.choice(["F", "M"])),
             "ward": str(rng.choice(["cardio", "onco", ""])), "lab": f"{rng.gamma(2.0, 40.0):.3f}",
             "outcome": str(rng.choice(["healed", "readmitted"]))}
            for p in range(60) for _ in range(int(rng.integers(1, 5)))]
    frame = validate_table(pd.DataFrame(rows), schema, source="gpu-test").clean
    kept = bound_rows_per_unit(frame, schema, bytes(range(32)), k)
    ids = unit_ids(kept, schema)
    assert ids is not None
    units = torch.from_numpy(pack_units(encoder.encode(kept), ids, k))
    plan = _plan("tvae", schema, privacy_unit="patient_id", max_rows_per_unit=k, sample_rate=0.5, local_steps=4)

    # Execute
    generator, result, start = _round(plan, encoder, units, GPU)

    # Assert
    assert units.shape == (60, k, encoder.dim)
    assert _parameter_devices(generator) == {GPU}
    assert result.history == [(plan.noise_multiplier, plan.sample_rate, plan.local_steps)]
    assert 0.0 <= result.noisy_loss <= LOSS_BOUND
    assert state_hash(generator.state_dict()) != state_hash(start)


def _assert_follows_schema(table: pd.DataFrame, schema: Schema, rows: int) -> None:
    assert len(table) == rows
    assert list(table.columns) == [c.name for c in schema.synthesized_columns]
    for column in schema.synthesized_columns:
        values = table[column.name]
        if not column.nullable:
            assert values.notna().all(), column.name
        present = values.dropna()
        if column.type == "categorical":
            assert set(present.astype(str)) <= set(column.categories or ()), column.name
        else:
            assert column.bounds is not None
            numbers = present.astype(float)
            assert numbers.between(*column.bounds).all(), column.name
            if column.is_integer:
                assert (numbers == numbers.round()).all(), column.name


@pytest.mark.parametrize("name", GENERATORS)
def test_a_generator_on_the_gpu_draws_the_cpus_table_in_the_schema(small_schema: Path, name: str) -> None:
    # Prepare: the same weights on both devices (as the server's checkpoint or the benchmark would load them)
    schema = load_schema(small_schema)
    encoder = TableEncoder.from_schema(schema)
    plan = _plan(name, schema)
    on_gpu, on_cpu = build_generator(plan, encoder), build_generator(plan, encoder)
    on_gpu.weights.to(pick_device(GPU))

    # Execute
    gpu_table = sample_table(on_gpu, encoder, 2000, seed=3).table
    cpu_table = sample_table(on_cpu, encoder, 2000, seed=3).table
    requested = sample_table(on_gpu, encoder, 401, seed=4, class_shares=ClassShares.parse("readmitted=0.5"))

    # Assert
    assert _parameter_devices(on_gpu) == {GPU}
    _assert_follows_schema(gpu_table, schema, 2000)
    _assert_follows_schema(requested.table, schema, 401)
    # Same draws from the same seeded stream: only float rounding near a category's threshold may differ.
    for column in ("sex", "ward", "outcome"):
        drawn = [table[column].astype(object).fillna("(missing)").to_numpy() for table in (gpu_table, cpu_table)]
        agree = float(np.mean(drawn[0] == drawn[1]))
        assert agree >= 0.98, (column, agree)
    assert requested.table["outcome"].value_counts().to_dict() in (
        {"readmitted": 201, "healed": 200}, {"readmitted": 200, "healed": 201})
    assert {v.device.type for v in on_gpu.state_dict().values()} == {"cpu"}


@pytest.mark.parametrize("name", GENERATORS)
def test_the_loss_a_gpu_site_releases_is_the_cpus_before_the_noise(
    site_rows: tuple[TableEncoder, torch.Tensor], name: str
) -> None:
    # The noisy loss a site releases is clamped to [0, LOSS_BOUND], so a device that computed nonsense (NaN, a
    # wrong scale) would hide behind the clamp in the metric; compare the per-row losses themselves. The
    # generators draw their own randomness (a VAE's latent noise, a GAN's samples) from the device's stream,
    # so the rows' values differ by that noise only: their means agree closely over 300 rows.
    encoder, data = site_rows
    plan = _plan(name, encoder.schema)
    on_cpu, on_gpu = build_generator(plan, encoder), build_generator(plan, encoder)
    on_gpu.weights.to(GPU)
    torch.manual_seed(3)
    cpu_losses = on_cpu.per_row_loss(data, generator=torch.Generator().manual_seed(3))
    gpu_losses = on_gpu.per_row_loss(data.to(GPU), generator=torch.Generator().manual_seed(3)).cpu()
    assert gpu_losses.shape == cpu_losses.shape == (data.shape[0],)
    print(f"{name}: mean per-row loss {float(cpu_losses.mean()):.4f} on the CPU, {float(gpu_losses.mean()):.4f} on {GPU}")
    assert torch.isfinite(gpu_losses).all()
    assert float(gpu_losses.mean()) == pytest.approx(float(cpu_losses.mean()), rel=0.15)
