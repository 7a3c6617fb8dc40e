"""Aggregation: Flower's FedAdam (the FedAvg family with an Adam step at the server; Reddi et al.,
"Adaptive Federated Optimization", ICLR 2021), guarded and ledgered.

DESIGN.md section 9 measured plain FedAvg with each site's own Adam at TSTR/TRTR 0.47 under epsilon 1, and
local SGD with Adam at the server at 0.85, so FedAdam is the default. We do not re-implement it: this subclass
only (1) refuses replies that are malformed, non-finite or wrongly shaped before Flower averages them, and
(2) hands each accepted site's report to the consortium ledger before the round's result is used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

import numpy as np
from flwr.app import ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedAdam

logger = logging.getLogger(__name__)

WEIGHT_KEY = "weight"
_REQUIRED_METRICS = (WEIGHT_KEY, "noisy-loss", "epsilon-run", "epsilon-total", "steps")


@dataclass(frozen=True)
class SiteReport:
    """What a site said about its round: all of it either public plan arithmetic or DP-noised."""

    node_id: int
    site: str
    noisy_loss: float
    epsilon_run: float
    epsilon_total: float
    steps: int


class LedgeredFedAdam(FedAdam):
    """FedAdam that validates replies and reports accepted sites after every training round."""

    def __init__(self, *, on_round: Callable[[int, list[SiteReport]], None], **kwargs: object) -> None:
        super().__init__(weighted_by_key=WEIGHT_KEY, **kwargs)  # type: ignore[arg-type]
        self._on_round = on_round
        self.participants: dict[int, str] = {}

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        accepted: list[Message] = []
        reports: list[SiteReport] = []
        for msg in replies:
            if msg.has_error():
                logger.warning("round %d: node %d failed: %s", server_round, msg.metadata.src_node_id, msg.error.reason)
                continue
            problem = self._problem(msg)
            if problem:
                logger.warning("round %d: update from node %d refused: %s", server_round, msg.metadata.src_node_id, problem)
                continue
            accepted.append(msg)
            reports.append(_report(msg))
        for report in reports:
            self.participants[report.node_id] = report.site
        self._on_round(server_round, reports)
        if not accepted:
            return None, None
        return super().aggregate_train(server_round, accepted)

    def _problem(self, msg: Message) -> str | None:
        """Why a reply cannot be averaged, or None. Never echoes array contents."""
        content = msg.content
        if len(content.array_records) != 1 or len(content.metric_records) != 1 or "site" not in content.config_records:
            return "reply must carry one ArrayRecord, one MetricRecord and the site's name"
        metrics = next(iter(content.metric_records.values()))
        missing = [k for k in _REQUIRED_METRICS if k not in metrics]
        if missing:
            return f"metrics {missing} are missing"
        arrays = next(iter(content.array_records.values()))
        current = self.current_arrays or {}
        if set(arrays.keys()) != set(current):
            return "parameter names differ from the global generator's"
        for key, array in arrays.items():
            values = array.numpy()
            if values.shape != current[key].shape:
                return f"parameter {key!r} has shape {values.shape}, expected {current[key].shape}"
            if not np.all(np.isfinite(values)):
                return f"parameter {key!r} holds non-finite values"
        return None


def _report(msg: Message) -> SiteReport:
    metrics = next(iter(msg.content.metric_records.values()))
    return SiteReport(
        node_id=msg.metadata.src_node_id,
        site=str(msg.content.config_records["site"]["site"]),
        noisy_loss=float(cast(float, metrics["noisy-loss"])),
        epsilon_run=float(cast(float, metrics["epsilon-run"])),
        epsilon_total=float(cast(float, metrics["epsilon-total"])),
        steps=int(cast(float, metrics["steps"])),
    )
