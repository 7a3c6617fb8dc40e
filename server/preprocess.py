"""Paid-for preprocessing, server side: ask every site for noisy histograms, sum them, derive the bins and
class frequencies (shared.dp_statistics), and put the DP-estimated bins into the plan's schema.

Runs once, before round 1. Every site that answers has already charged the release to its own ledger; the
server mirrors the charge at round 0. The outputs are post-processing of DP releases and cost nothing more.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace

import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy.strategy_utils import sample_nodes

from server.consortium import ConsortiumLedger
from shared.dp_statistics import HistogramSpec, class_frequencies, quantile_schema, sum_histograms
from shared.errors import FedsynthError
from shared.plan import TrainingPlan
from shared.schema import Schema

logger = logging.getLogger(__name__)

HISTOGRAMS = f"{MessageType.QUERY}.histograms"


@dataclass(frozen=True)
class Estimates:
    """What preprocessing produced: the plan with DP bins in its schema, and the target's class shares."""

    plan: TrainingPlan
    class_frequencies: dict[str, dict[str, float]]


def estimate(grid: Grid, plan: TrainingPlan, schema: Schema, ledger: ConsortiumLedger, min_sites: int) -> Estimates:
    """Run the histogram release with every available site and post-process the noisy sums."""
    spec = HistogramSpec.from_json(plan.preprocess_spec_json)
    sample_nodes(grid, min_sites, min_sites)  # Flower's own wait until min_sites are connected
    nodes = sorted(grid.get_node_ids())  # then ask every connected site, not just the minimum
    request = ConfigRecord(plan.to_config())
    messages = [Message(RecordDict({"config": request}), message_type=HISTOGRAMS, dst_node_id=n) for n in nodes]
    answers: list[dict[str, list[float]]] = []
    for reply in grid.send_and_receive(messages, timeout=600):
        if reply.has_error():
            logger.warning("preprocessing: node %d did not answer (%s)", reply.metadata.src_node_id, reply.error.reason)
            continue
        record = reply.content.config_records["histograms"]
        ledger.record_preprocess(str(record["site"]))
        answers.append({k[len("hist."):]: list(v) for k, v in record.items() if k.startswith("hist.")})  # type: ignore[arg-type]
    if not answers:
        raise FedsynthError("preprocessing: no site released its histograms; the run cannot estimate its bins")
    totals = sum_histograms(answers, spec)
    effective = quantile_schema(schema, spec, totals, plan.preprocess_bins) if spec.edges else schema
    for name in spec.edges:
        logger.info("preprocessing: DP quantile bins for %s: %s", name, effective.column(name).bins)
    freqs = class_frequencies(spec, totals)
    for name, shares in freqs.items():
        logger.info("preprocessing: DP class frequencies of %s: %s", name,
                    ", ".join(f"{c} {s:.3f}" for c, s in shares.items()))
    logger.info("preprocessing: %d sites released histograms (%s)", len(answers), _noise_note(plan, spec, len(answers)))
    new_plan = replace(plan, schema_json=json.dumps(effective.to_dict(), sort_keys=True))
    return Estimates(plan=new_plan, class_frequencies=freqs)


def _noise_note(plan: TrainingPlan, spec: HistogramSpec, sites: int) -> str:
    std = plan.preprocess_noise_multiplier * np.sqrt(spec.count) * np.sqrt(sites)
    return f"noise std per summed cell {std:.0f}"
