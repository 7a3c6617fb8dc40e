"""The fedsynth ServerApp: plan, train with FedAdam, keep the ledger, publish, deliver.

Thin on purpose: each step lives in the module named for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from contextlib import AbstractContextManager, nullcontext

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from server.checkpoint import Checkpointer
from server.config import RunConfig
from server.console.config import ConsoleConfig
from server.console.history import replay_rounds
from server.console.monitor import RunMonitor
from server.console.server import ConsoleServer
from server.consortium import ConsortiumLedger, NoSiteTrained
from server.delivery import deliver
from server.plan import describe_plan, make_plan
from server.preprocess import estimate
from server.evaluation import evaluate_sites
from server.prompt_grid import PromptGrid
from server.publish import publish
from server.resume import prepare_out_dir
from server.report import write_report
from server.sampling import sample_table
from server.secure_round import SecureRounds
from server.strategy import LedgeredFedAdam, StopRequested, robust_rule
from server.summary import summarize
from shared.atomic import atomic_write_text
from shared.console.v1 import console_pb2 as pb
from shared.encoding import TableEncoder
from shared.logs import configure_logging
from shared.manifest import MANIFEST_NAME, load_or_create_signing_key
from shared.schema import Schema, load_schema
from shared.synthesizers import build_generator

app = ServerApp()
logger = logging.getLogger(__name__)


@app.main()
def main(grid: Grid, context: Context) -> None:
    configure_logging()
    config = RunConfig.from_run_config(dict(context.run_config))
    monitor = RunMonitor(config.out_dir)
    with _console(config.console, monitor):
        try:
            _run(PromptGrid(grid), context, config, monitor)
        except BaseException as exc:
            monitor.ended(pb.RUN_STATUS_FAILED, f"{type(exc).__name__}: {exc}"[:500])
            raise


def _console(config: ConsoleConfig | None, monitor: RunMonitor) -> AbstractContextManager[object]:
    """The live console for the whole run (started before planning, so a bad address fails at once)."""
    if config is None:
        return nullcontext()
    return ConsoleServer(monitor, address=config.address, tokens=config.tokens, tls=config.tls, insecure=config.insecure)


def _run(grid: Grid, context: Context, config: RunConfig, monitor: RunMonitor) -> None:
    schema = load_schema(config.schema_path)
    # Fail before training, not after, if the key cannot be made or sits inside the output.
    key = load_or_create_signing_key(config.signing_key, forbidden_dir=config.out_dir)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    resume = prepare_out_dir(config, schema)
    if resume is None:
        plan = make_plan(config, schema)
        atomic_write_text(config.out_dir / "plan.json", plan.to_json() + "\n")
        logger.info("plan\n%s", describe_plan(plan))
    else:
        plan = resume.plan
        schema = Schema.from_dict(json.loads(plan.schema_json))
        logger.warning("%s", resume.describe())
    encoder = TableEncoder.from_schema(schema)

    ledger = ConsortiumLedger(
        config.out_dir / "ledger.json", plan, on_progress=monitor.round_finished,
        rounds=resume.rounds if resume else None, unconfirmed=resume.unconfirmed if resume else None,
    )
    monitor.spent_from(lambda: {"record": ledger.spent(), "site": ledger.site_level_spent()})
    monitor.started(plan, dict(context.run_config), min_sites=config.min_sites)
    frequencies: dict[str, dict[str, float]] = {}
    if resume is not None:
        replay_rounds(monitor, resume.rounds)  # a watcher sees the whole run, not just what follows the restart
        frequencies = resume.checkpoint.class_frequencies
    elif plan.preprocess_noise_multiplier > 0:
        monitor.phase(pb.RUN_STATUS_PREPROCESSING, "sites release noisy histograms (paid, once)")
        estimates = estimate(grid, plan, schema, ledger, config.min_sites)
        plan, frequencies = estimates.plan, estimates.class_frequencies
        ledger.plan = plan
        schema = Schema.from_dict(json.loads(plan.schema_json))
        encoder = TableEncoder.from_schema(schema)
        atomic_write_text(config.out_dir / "plan.json", plan.to_json() + "\n")
        monitor.plan_changed(plan)
    generator = build_generator(plan, encoder)
    initial = ArrayRecord(generator.state_dict())
    secure_sum = SecureRounds(plan) if plan.secure_agg else None
    strategy = LedgeredFedAdam(
        on_round=ledger.record_round, plan=plan, secure_sum=secure_sum, fraction_evaluate=0.0,
        min_train_nodes=config.min_sites, min_available_nodes=config.min_sites, eta=config.server_lr, eta_l=plan.lr,
        observer=monitor, max_update_norm=config.max_update_norm,
        robust=robust_rule(config.aggregate_rule, trim_beta=config.aggregate_trim_beta,
                           byzantine=config.aggregate_byzantine),
        on_send=ledger.round_sent, first_round=resume.next_round if resume else 1,
        dtypes={name: array.numpy().dtype for name, array in initial.items()},
    )
    checkpointer = Checkpointer(config.out_dir / "checkpoint", plan, ledger, strategy=strategy,
                                class_frequencies=frequencies)
    rounds_left = plan.rounds
    if resume is not None:
        initial = ArrayRecord(resume.checkpoint.generator)
        strategy.m_t, strategy.v_t = resume.checkpoint.m_t, resume.checkpoint.v_t
        strategy.participants.update(resume.checkpoint.participants)
        checkpointer.last_round, checkpointer.last_arrays = resume.checkpoint.round, initial
        rounds_left = resume.rounds_left
    monitor.phase(pb.RUN_STATUS_TRAINING)
    stopped = ""
    try:
        if rounds_left == 0:  # stopped after its last round, before publishing
            final, rounds_done = initial, plan.rounds
        else:
            result = strategy.start(
                grid=grid, initial_arrays=initial, num_rounds=rounds_left,
                train_config=ConfigRecord(plan.to_config()), evaluate_fn=checkpointer, timeout=config.round_timeout,
            )
            final, rounds_done = result.arrays, plan.rounds
    except NoSiteTrained as stop:
        logger.error("%s", stop)
        if checkpointer.last_round < 1 or checkpointer.last_arrays is None:
            raise
        final, rounds_done = checkpointer.last_arrays, checkpointer.last_round
        logger.warning("publishing the generator of round %d, the last completed round", rounds_done)
    except StopRequested as stop:
        logger.warning("%s", stop)
        stopped = str(stop)
        if monitor.skip_publish or checkpointer.last_arrays is None or checkpointer.last_round < 1:
            ledger.settle_unconfirmed()
            monitor.ended(pb.RUN_STATUS_STOPPED, f"{stop}; nothing published")
            return
        final, rounds_done = checkpointer.last_arrays, checkpointer.last_round
    ledger.settle_unconfirmed()

    generator.load_state_dict(final.to_torch_state_dict())
    monitor.phase(pb.RUN_STATUS_SAMPLING)
    sample = sample_table(generator, encoder, config.synthetic_rows, plan.seed, frequencies,
                          class_shares=config.class_shares)
    table = sample.table
    evaluation = None
    if plan.evaluate_noise_multiplier > 0:
        monitor.phase(pb.RUN_STATUS_EVALUATING, "sites release noisy score histograms on their hold-out (paid)")
        evaluation = evaluate_sites(grid, strategy.participants, plan, ledger, table, schema)
    monitor.phase(pb.RUN_STATUS_PUBLISHING)
    publication = publish(
        config.out_dir, table=table, generator=generator, schema=schema, plan=plan, ledger=ledger.ledger,
        rounds_completed=rounds_done, key=key, sampling=sample.record, evaluation=evaluation,
    )
    write_report(config.out_dir, reference=config.reference)
    receipts = deliver(grid, strategy.participants, publication, key)
    logger.info("summary\n%s", summarize(publication, plan, receipts))
    digest = hashlib.sha256((config.out_dir / MANIFEST_NAME).read_bytes()).hexdigest()
    detail = f"published {len(table)} synthetic rows after {rounds_done} of {plan.rounds} rounds"
    monitor.ended(pb.RUN_STATUS_STOPPED if stopped else pb.RUN_STATUS_FINISHED,
                  f"{stopped}; {detail}" if stopped else detail, manifest_sha256=digest)
