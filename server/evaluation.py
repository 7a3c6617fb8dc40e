"""Federated evaluation, server side: send the sampled table and the public layout, sum the noisy answers.

Runs once, after training and before the table is published: every site that trained scores the table on its
hold-out and returns noisy counts it has already charged to its own ledger; the server mirrors the charge and
keeps the answers in ``evaluation.json``, which the signed manifest covers, so the report can be rebuilt and
checked from the run folder alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from server.consortium import ConsortiumLedger
from shared.atomic import atomic_write_text
from shared.dp_evaluation import EvaluationLayout, layout_for
from shared.errors import FedsynthError
from shared.plan import TrainingPlan
from shared.schema import Schema

logger = logging.getLogger(__name__)

EVALUATE = f"{MessageType.QUERY}.evaluate"
EVALUATION_FILE = "evaluation.json"


@dataclass(frozen=True)
class FederatedEvaluation:
    """The sites' noisy evaluation releases (DP outputs: safe to store and publish)."""

    layout: EvaluationLayout
    noise_multiplier: float
    holdout_fraction: float
    releases: dict[str, dict[str, np.ndarray]]  # site -> family -> noisy cells
    synthetic_sha256: str

    @property
    def noise_std(self) -> float:
        """Noise standard deviation of one cell of one site's release."""
        return self.noise_multiplier * self.layout.sensitivity

    def write(self, path: Path) -> None:
        body = {
            "format": "fedsynth-evaluation/1",
            "mechanism": "Gaussian, noise multiplier z on L2 sensitivity sqrt(F) (shared.dp_evaluation)",
            "noise_multiplier": self.noise_multiplier,
            "sensitivity": self.layout.sensitivity,
            "holdout_fraction": self.holdout_fraction,
            "synthetic_sha256": self.synthetic_sha256,
            "layout": json.loads(self.layout.to_json()),
            "releases": {site: {k: v.tolist() for k, v in fam.items()} for site, fam in sorted(self.releases.items())},
        }
        atomic_write_text(path, json.dumps(body, indent=1, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> FederatedEvaluation:
        try:
            body = json.loads(path.read_text())
            layout = EvaluationLayout.from_json(json.dumps(body["layout"]))
            shapes = layout.families()
            releases = {
                site: {name: np.asarray(fam[name], dtype=np.float64).reshape(shape) for name, shape in shapes.items()}
                for site, fam in body["releases"].items()
            }
            return cls(layout, float(body["noise_multiplier"]), float(body["holdout_fraction"]), releases,
                       str(body["synthetic_sha256"]))
        except (OSError, ValueError, KeyError, TypeError) as problem:
            raise FedsynthError(f"{path}: not a readable fedsynth evaluation file ({problem})") from problem


def evaluate_sites(
    grid: Grid, participants: dict[int, str], plan: TrainingPlan, ledger: ConsortiumLedger, table: pd.DataFrame,
    schema: Schema,
) -> FederatedEvaluation | None:
    """Ask every site that trained to score ``table``; None when no site answered (the run goes on)."""
    csv = table.to_csv(index=False).encode()
    digest = hashlib.sha256(csv).hexdigest()
    layout = layout_for(schema, table, pairs=plan.evaluate_pairs)
    request = RecordDict({
        "config": ConfigRecord(plan.to_config()),
        "evaluation": ConfigRecord({"layout": layout.to_json(), "synthetic.csv": csv}),
    })
    messages = [Message(request, message_type=EVALUATE, dst_node_id=node) for node in sorted(participants)]
    releases: dict[str, dict[str, np.ndarray]] = {}
    shapes = layout.families()
    for reply in grid.send_and_receive(messages, timeout=900):
        name = participants.get(reply.metadata.src_node_id, str(reply.metadata.src_node_id))
        if reply.has_error():
            logger.warning("evaluation: %s did not answer (%s)", name, reply.error.reason)
            continue
        record = reply.content.config_records["evaluation"]
        site = str(record["site"])
        if str(record["synthetic-sha256"]) != digest:
            logger.warning("evaluation: %s scored a different table; its answer is left out", site)
            continue
        try:
            cells = {k: np.asarray(record[f"eval.{k}"], dtype=np.float64).reshape(s) for k, s in shapes.items()}
        except (KeyError, ValueError):
            logger.warning("evaluation: %s answered with cells that do not fit the layout; left out", site)
            continue
        ledger.record_evaluation(site)  # the site charged itself before answering; mirror it
        releases[site] = cells
    if not releases:
        logger.warning("evaluation: no site answered; the report will have no federated scores")
        return None
    logger.info(
        "evaluation: %d sites released noisy score histograms (%d families, noise std %.1f per cell and site)",
        len(releases), len(shapes), plan.evaluate_noise_multiplier * layout.sensitivity,
    )
    return FederatedEvaluation(layout, plan.evaluate_noise_multiplier, plan.evaluate_holdout_fraction, releases,
                               digest)
