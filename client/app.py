"""The fedsynth ClientApp: what runs at a site. Only this package touches raw rows.

Train: check the plan against the site's own cap, write the spend to the site ledger (write-ahead), train
with DP-SGD, return only the weights and noised metrics. Query "deliver": receive the signed synthetic table
and write it to the site's output folder after verifying it.

A deployed SuperNode starts a fresh process for every message, so each handler imports what only it needs:
torch and Opacus (~4 s) for training, scikit-learn for evaluation. A secure-aggregation stage or a delivery
then costs a fraction of a second of imports instead of seconds (benchmarks/deployed_rounds.py).
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import time
from typing import cast

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from client import epsilon_foresight, secure_aggregation
from client.holdout import holdout_key
from client.policy import check_budget
from client.site import SiteConfig
from client.task_memory import task_memory
from shared.accounting import epsilon
from shared.dp_statistics import HistogramSpec
from shared.errors import SchemaError, SecureAggregationError
from shared.ledger import Ledger, Release, record_spend
from shared.logs import configure_logging
from shared.plan import TRUST_LOCAL, TRUST_SECAGG, TrainingPlan
from shared.schema import Schema, load_schema
from shared.wire import layout_of, pack, unpack

app = ClientApp()
logger = logging.getLogger(__name__)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local DP training."""
    import torch

    from client.data import load_site_data
    from client.site_dp import site_update
    from client.trainer import train_round
    from shared.device import pick_device
    from shared.encoding import TableEncoder
    from shared.synthesizers import build_generator

    configure_logging()
    config = msg.content.config_records["config"]
    plan = TrainingPlan.from_config(config)
    server_round = int(cast(int, config["server-round"]))
    site = SiteConfig.from_context(dict(context.node_config), dict(context.run_config))
    # Before the first torch operation: on a CPU site this sets torch's thread count, and an operation run before
    # it would start a thread pool sized for the whole machine, in every site's task.
    device = pick_device(site.device)
    schema = _schema(plan, site)
    encoder = TableEncoder.from_schema(schema)
    # Unpacked before anything is spent: a generator this site cannot read costs it no budget.
    generator = build_generator(plan, encoder)
    layout = layout_of(generator.state_dict())
    arrays = unpack(msg.content.array_records["arrays"], layout)
    data = load_site_data(
        site.data_path, schema, encoder, holdout_key=_holdout_key(site, plan),
        holdout_fraction=plan.evaluate_holdout_fraction, max_rows_per_unit=plan.max_rows_per_unit,
        quarantine=site.quarantine_path,
    )

    ledger = Ledger.load(site.ledger_path)
    memory = task_memory()  # a deployed site's warm runtime: the previous round may have foreseen this epsilon
    if memory is not None:
        epsilon_foresight.recall(memory, ledger.history(site.site, "record"), plan)
    check_budget(ledger, site, plan)
    if plan.secure_agg and "secagg" not in msg.content.config_records:
        raise SecureAggregationError("the plan asks for secure aggregation but the round carries no shares")
    shares_noise = plan.record_noise == "shared" and site.trusts_secure_aggregation
    own_noise = plan.record_noise_share(site.trusts_secure_aggregation)
    trust = TRUST_SECAGG if shares_noise else TRUST_LOCAL
    if plan.record_noise == "shared" and not shares_noise:
        logger.warning("%s does not trust secure aggregation (its policy): it adds the full noise itself", site.site)
    releases = [Release(*named) for named in plan.named_round_releases()]
    # Write-ahead: the spend is durable before any training result exists, so no crash can forget it.
    entry = record_spend(
        site.ledger_path, site=site.site, round=server_round, level="record", accountant=plan.accountant,
        delta=plan.delta, releases=releases, run_id=plan.run_id, trust=trust,
        fallback_noise_multiplier=own_noise if shares_noise else None, **plan.ledger_unit(),
    )
    if plan.site_dp != "off":
        _record_site_level(site, plan, server_round)

    generator.load_state_dict(arrays.to_torch_state_dict())
    seed = site.noise_seed if site.noise_seed is not None else secrets.randbits(63)
    rng = torch.Generator().manual_seed(seed + server_round)
    began = time.perf_counter()
    result = train_round(
        generator, data.encoded, plan, history=ledger.history(site.site, "record"),
        rng=rng, device=device, noise_multiplier=own_noise,
    )
    trained_s = time.perf_counter() - began  # training alone: benchmarks read it as the work a round exists for
    spent = Ledger.load(site.ledger_path)
    run_epsilon = _run_epsilon(spent, site.site, plan)
    if memory is not None:  # the next round's question, answered while this site waits for that round
        history = spent.history(site.site, "record")
        memory.after_reply(functools.partial(epsilon_foresight.foresee, memory, history, plan))
    logger.info(
        "%s round %d: %d DP-SGD steps in %.2f s, noisy loss %.3f, epsilon this run %.4f, total %.4f (cap %.2f)",
        site.site, server_round, result.steps, trained_s, result.noisy_loss, run_epsilon,
        entry.epsilon, site.epsilon_cap,
    )
    metrics = MetricRecord(
        {
            "weight": 1.0,  # equal weights: a row count would be an unpaid release
            "noisy-loss": result.noisy_loss,
            "epsilon-run": run_epsilon,
            "epsilon-total": entry.epsilon,
            "steps": result.steps,
        }
    )
    identity = ConfigRecord({"site": site.site, "trust": trust})
    trained = generator.state_dict()
    if plan.secure_agg:
        keys = list(layout)
        update = site_update(plan, [trained[k].numpy() - arrays[k].numpy() for k in keys])
        reply_arrays = secure_aggregation.mask_update(context, msg.content.config_records["secagg"], keys, update)
    else:
        reply_arrays = pack(trained)
    content = RecordDict({"arrays": reply_arrays, "metrics": metrics, "site": identity})
    return Message(content=content, reply_to=msg)


@app.query("histograms")
def histograms(msg: Message, context: Context) -> Message:
    """Paid-for preprocessing: noisy histograms over the plan's public grid (one Gaussian release)."""
    from client.data import load_site_frame, training_frame
    from client.units import one_row_per_unit
    from shared.dp_statistics import noisy_histograms

    configure_logging()
    plan = TrainingPlan.from_config(msg.content.config_records["config"])
    site = SiteConfig.from_context(dict(context.node_config), dict(context.run_config))
    schema = _schema(plan, site)
    frame, _ = load_site_frame(site.data_path, schema, site.quarantine_path)
    key = _holdout_key(site, plan)
    frame = training_frame(frame, schema, key=key, holdout_fraction=plan.evaluate_holdout_fraction,
                           max_rows_per_unit=plan.max_rows_per_unit)
    if plan.per_unit:
        frame = one_row_per_unit(frame, schema, key)  # each unit adds 1 to one cell per histogram, as a row does
    check_budget(Ledger.load(site.ledger_path), site, plan, plan.preprocess_releases())
    entry = record_spend(
        site.ledger_path, site=site.site, round=0, level="record", accountant=plan.accountant, delta=plan.delta,
        releases=[Release("histograms", *plan.preprocess_releases()[0])], run_id=plan.run_id, **plan.ledger_unit(),
    )
    noisy = noisy_histograms(frame, HistogramSpec.from_json(plan.preprocess_spec_json), plan.preprocess_noise_multiplier)
    logger.info("%s released noisy histograms of %s (epsilon now %.4f)", site.site, sorted(noisy), entry.epsilon)
    record = ConfigRecord({"site": site.site, **{f"hist.{name}": values for name, values in noisy.items()}})
    return Message(content=RecordDict({"histograms": record}), reply_to=msg)


@app.query("evaluate")
def evaluate(msg: Message, context: Context) -> Message:
    """Federated evaluation: noisy score histograms of the synthetic table on this site's hold-out rows."""
    from client.evaluation import evaluate_at_site
    from shared.dp_evaluation import EvaluationLayout

    configure_logging()
    plan = TrainingPlan.from_config(msg.content.config_records["config"])
    site = SiteConfig.from_context(dict(context.node_config), dict(context.run_config))
    request = msg.content.config_records["evaluation"]
    layout = EvaluationLayout.from_json(str(request["layout"]))
    release = evaluate_at_site(site, plan, _schema(plan, site), layout, bytes(cast(bytes, request["synthetic.csv"])))
    record = ConfigRecord({
        "site": site.site, "synthetic-sha256": release.synthetic_sha256,
        **{f"eval.{name}": [float(x) for x in values.reshape(-1)] for name, values in release.noisy.items()},
    })
    return Message(content=RecordDict({"evaluation": record}), reply_to=msg)


def _holdout_key(site: SiteConfig, plan: TrainingPlan) -> bytes:
    """The site's secret key: it picks the hold-out and, with a privacy unit, which of a unit's rows are used."""
    return holdout_key(site.ledger_path) if plan.evaluate_holdout_fraction > 0 or plan.per_unit else b""


@app.query("secagg_setup")
def secagg_setup(msg: Message, context: Context) -> Message:
    """Secure aggregation, stage 1: this round's public keys."""
    return secure_aggregation.setup(msg, context)


@app.query("secagg_share")
def secagg_share(msg: Message, context: Context) -> Message:
    """Secure aggregation, stage 2: encrypted Shamir shares for the other sites."""
    return secure_aggregation.share(msg, context)


@app.query("secagg_unmask")
def secagg_unmask(msg: Message, context: Context) -> Message:
    """Secure aggregation, stage 4: the shares that unmask the sum (and only the sum)."""
    return secure_aggregation.unmask(msg, context)


def _record_site_level(site: SiteConfig, plan: TrainingPlan, server_round: int) -> None:
    """Site-level DP spend, written ahead like the record-level one (the site's own copy of the claim)."""
    record_spend(
        site.ledger_path, site=site.site, round=server_round, level="site", accountant=plan.accountant,
        delta=plan.delta, releases=[Release("site-update", *plan.site_round_release())], run_id=plan.run_id,
        trust=plan.site_trust, fallback_noise_multiplier=plan.site_fallback_noise_multiplier(),
    )


@app.query("deliver")
def deliver(msg: Message, context: Context) -> Message:
    """Receive the pooled synthetic table and its signed manifest."""
    from client.delivery import receive_delivery

    configure_logging()
    site = SiteConfig.from_context(dict(context.node_config), dict(context.run_config))
    written = receive_delivery(msg.content.config_records["delivery"], site.output_dir)
    logger.info("%s received the synthetic table: %s", site.site, written)
    reply = ConfigRecord({"site": site.site, "path": str(written)})
    return Message(content=RecordDict({"receipt": reply}), reply_to=msg)


def _run_epsilon(ledger: Ledger, site: str, plan: TrainingPlan) -> float:
    """This run's spend alone (the consortium's view); the site's cap applies to its total over all runs."""
    history = [h for e in ledger.entries_for(site, "record") if e.run_id == plan.run_id for h in e.history()]
    return epsilon(history, delta=plan.delta, accountant=plan.accountant)


def _schema(plan: TrainingPlan, site: SiteConfig) -> Schema:
    """The consortium schema sent with the plan; a site holding its own copy insists they agree."""
    schema = Schema.from_dict(json.loads(plan.schema_json))
    if (schema.privacy_unit or "") != plan.privacy_unit:
        raise SchemaError(
            f"the plan protects {plan.privacy_unit or 'one row'!r} but its schema names the privacy unit "
            f"{schema.privacy_unit!r}; server and site run different versions"
        )
    if site.schema_path is not None:
        local = load_schema(site.schema_path)
        if _public_part(local, plan) != _public_part(schema, plan):
            raise SchemaError(
                f"{site.schema_path}: the server's schema (hash {schema.hash[:12]}) differs from this site's "
                f"(hash {local.hash[:12]}); agree on one schema before training"
            )
    return schema


def _public_part(schema: Schema, plan: TrainingPlan) -> str:
    """The schema's hash without the bins the consortium estimated with DP (those differ from any local copy)."""
    if not plan.preprocess_spec_json:
        return schema.hash
    estimated = set(HistogramSpec.from_json(plan.preprocess_spec_json).edges)
    data = schema.to_dict()
    for column in data["columns"]:
        if column["name"] in estimated:
            column.pop("bins", None)
    return Schema.from_dict(data).hash
