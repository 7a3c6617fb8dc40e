"""Aggregation: Flower's FedAdam (the FedAvg family with an Adam step at the server; Reddi et al.,
"Adaptive Federated Optimization", ICLR 2021), guarded and ledgered.

DESIGN.md section 9 measured plain FedAvg with each site's own Adam at TSTR/TRTR 0.47 under epsilon 1, and
local SGD with Adam at the server at 0.85, so FedAdam is the default. We do not re-implement it: this subclass
only (1) refuses replies that are malformed, non-finite or wrongly shaped before Flower averages them,
(2) hands each accepted site's report to the consortium ledger before the round's result is used, and
(3) chooses where the average that Adam steps from comes from:

- plain: Flower's FedAvg average;
- central site-level DP: Flower's ``DifferentialPrivacyServerSideFixedClipping`` wrapped around a FedAvg
  (clip each update to S, average, add N(0, (zS/m)^2)). The noise must go on the average *before* the Adam
  step: wrapping FedAdam itself would noise Adam's output, whose sensitivity is not S/m;
- secure aggregation: the sum the SecAgg protocol unmasks (server.secure_round), divided by the survivors.

The averaging step sits between FedAdam and FedOpt in the method resolution order (``_Averaging``), so
FedAdam's own ``aggregate_train`` calls it where it would call FedAvg's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, cast

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping, FedAdam, FedAvg, FedMedian, FedTrimmedAvg, Krum, Strategy,
)
from flwr.serverapp.strategy.fedopt import FedOpt

from server.round_outcome import DROPPED, FAILED, REFUSED, UPDATED, RoundOutcome, SiteOutcome, SiteReport, node_name
from shared.errors import FedsynthError
from shared.plan import TrainingPlan
from shared.wire import WireFormatError, layout_of, pack, unpack

logger = logging.getLogger(__name__)

WEIGHT_KEY = "weight"
# Error replies the SuperLink writes itself when a node went away or its reply was lost: the site is gone.
_GONE = frozenset({ErrorCode.NODE_UNAVAILABLE, ErrorCode.REPLY_MESSAGE_UNAVAILABLE, ErrorCode.MESSAGE_UNAVAILABLE})
_REQUIRED_METRICS = (WEIGHT_KEY, "noisy-loss", "epsilon-run", "epsilon-total", "steps")
# Everything a site may send: anything else (a row count, an exact loss) would be an unpaid release.
ALLOWED_METRICS = frozenset(_REQUIRED_METRICS)


class StopRequested(FedsynthError):
    """The coordinator asked the run to stop (console StopRun); raised before the next round starts."""


class RoundObserver(Protocol):
    """Who watches the rounds (server.console.monitor.RunMonitor): told when one starts, asked whether to stop."""

    def round_started(self, server_round: int, sites: list[str]) -> None:
        """The round's train messages are about to go to these sites."""

    def stop_reason(self) -> str | None:
        """Why training must stop before the next round, or None to go on."""


class SecureSum(Protocol):
    """What the strategy needs from a secure-aggregation round (server.secure_round.SecureRounds)."""

    def open(self, server_round: int, messages: list[Message], grid: Grid) -> list[Message]:
        """Run the key stages with the sampled sites; return the train messages for those still in."""

    def unmask(self, server_round: int, replies: list[Message], grid: Grid) -> tuple[dict[str, np.ndarray], int]:
        """Unmask the sum of the replies' update vectors; return (sum per parameter, number of survivors)."""


ROBUST_RULES = ("mean", "median", "trimmed-mean", "krum")


def robust_rule(rule: str, *, trim_beta: float = 0.2, byzantine: int = 1) -> Strategy | None:
    """Flower's robust aggregator for ``rule`` (None for the plain mean): what FedAdam then steps from.

    median: coordinate-wise median (FedMedian; Yin et al. 2018); trimmed-mean: drop the ``trim_beta`` share at
    each end per coordinate (FedTrimmedAvg); krum: the update closest to its n - f - 2 neighbours, for f =
    ``byzantine`` (Krum; Blanchard et al. 2017). Each site's update is already DP on its own (local noise),
    so any rule over them is post-processing.
    """
    if rule == "mean":
        return None
    if rule == "median":
        return FedMedian(weighted_by_key=WEIGHT_KEY)
    if rule == "trimmed-mean":
        return FedTrimmedAvg(beta=trim_beta, weighted_by_key=WEIGHT_KEY)
    if rule == "krum":
        return Krum(num_malicious_nodes=byzantine, weighted_by_key=WEIGHT_KEY)
    raise ValueError(f"aggregate.rule must be one of {ROBUST_RULES}, got {rule!r}")


class _Averaging(FedOpt):
    """The average FedAdam steps from. Without a plan it is FedAvg's, exactly as in Flower."""

    plan: TrainingPlan | None = None
    secure_sum: SecureSum | None = None
    grid: Grid | None = None
    robust: Strategy | None = None

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        if self.secure_sum is not None:
            return self._secure_average(server_round, replies)
        if self.plan is not None and self.plan.site_dp == "central":
            # A fresh wrapper per round so the noise is scaled by the sites that actually replied: with
            # num_sampled_clients fixed, a dropped site would leave the sum under-noised.
            dp = DifferentialPrivacyServerSideFixedClipping(
                FedAvg(weighted_by_key=WEIGHT_KEY), noise_multiplier=self.plan.site_noise_multiplier,
                clipping_norm=self.plan.site_clip, num_sampled_clients=len(replies),
            )
            dp.current_arrays = ArrayRecord({k: Array(v) for k, v in (self.current_arrays or {}).items()})
            return dp.aggregate_train(server_round, replies)
        if self.robust is not None:
            return self.robust.aggregate_train(server_round, replies)
        return super().aggregate_train(server_round, replies)

    def _secure_average(
        self, server_round: int, replies: list[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        assert self.secure_sum is not None and self.grid is not None
        total, survivors = self.secure_sum.unmask(server_round, replies, self.grid)
        current = self.current_arrays or {}
        average = {k: (current[k] + total[k] / survivors).astype(current[k].dtype) for k in current}
        metrics = self.train_metrics_aggr_fn([msg.content for msg in replies], self.weighted_by_key)
        return ArrayRecord({k: Array(v) for k, v in average.items()}), metrics


class LedgeredFedAdam(FedAdam, _Averaging):
    """FedAdam that validates replies and reports accepted sites after every training round."""

    def __init__(
        self,
        *,
        on_round: Callable[[RoundOutcome], None],
        plan: TrainingPlan | None = None,
        secure_sum: SecureSum | None = None,
        observer: RoundObserver | None = None,
        robust: Strategy | None = None,
        max_update_norm: float = 0.0,
        on_send: Callable[[int, dict[str, int]], None] | None = None,
        first_round: int = 1,
        dtypes: dict[str, np.dtype[Any]] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(weighted_by_key=WEIGHT_KEY, **kwargs)  # type: ignore[arg-type]
        self._on_round, self._on_send = on_round, on_send
        # Flower's start() counts rounds from 1; a resumed run (server.resume) numbers on from where it stopped,
        # so that no site is ever asked to train, and charge, the same round number twice.
        self.round_offset = first_round - 1
        self.participants: dict[int, str] = {}
        self.plan, self.secure_sum, self.observer = plan, secure_sum, observer
        self.robust, self.max_update_norm = robust, max_update_norm
        self._started_at = time.time()
        self._sampled: list[int] = []
        self._sent: list[Message] = []
        # What a site must send: the generator's own dtypes (FedAdam's arrays, and so a checkpoint's, may be
        # wider). Taken from the first round's arrays unless given.
        self._dtypes: dict[str, np.dtype[Any]] = dict(dtypes or {})

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        server_round += self.round_offset
        reason = self.observer.stop_reason() if self.observer is not None else None
        if reason is not None:
            raise StopRequested(f"stopped before round {server_round}: {reason}")
        self._started_at = time.time()
        if not self._dtypes:
            self._dtypes = {key: array.numpy().dtype for key, array in arrays.items()}
        messages = list(super().configure_train(server_round, arrays, config, grid))
        self._sampled = [msg.metadata.dst_node_id for msg in messages]
        if self.observer is not None:
            self.observer.round_started(server_round, [self._name(node) for node in self._sampled])
        if self.secure_sum is not None:
            self.grid = grid
            messages = self.secure_sum.open(server_round, messages, grid)
        if messages:  # flat on the wire only (shared/wire.py); one packing serves every site
            flat = pack({key: array.numpy() for key, array in messages[0].content.array_records["arrays"].items()})
            for message in messages:
                message.content.array_records["arrays"] = flat
        # Kept so that a reply can be traced to the node it was sent to: the Grid gives each message its id
        # when it pushes it, and the SuperLink answers for a node that went away with its own id as sender.
        self._sent = messages
        if self._on_send is not None:  # write-ahead: after a crash, who may have trained (and charged) this round
            self._on_send(server_round, {self._name(m.metadata.dst_node_id): m.metadata.dst_node_id for m in messages})
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        server_round += self.round_offset
        finished_at = time.time()
        accepted: list[Message] = []
        reports: list[SiteReport] = []
        outcomes: list[SiteOutcome] = []
        sent_to = {m.metadata.message_id: m.metadata.dst_node_id for m in self._sent if m.metadata.message_id}
        for msg in replies:
            node = sent_to.get(msg.metadata.reply_to_message_id, msg.metadata.src_node_id)
            replied = min(max(msg.metadata.created_at - self._started_at, 0.0), finished_at - self._started_at)
            if msg.has_error():
                logger.warning("round %d: node %d failed: %s", server_round, node, msg.error.reason)
                if msg.error.code in _GONE:  # the SuperLink answered for a node that went away
                    outcomes.append(SiteOutcome(node, self._name(node), DROPPED, None, str(msg.error.reason or "")))
                else:
                    outcomes.append(SiteOutcome(node, self._name(node), FAILED, replied, str(msg.error.reason or "")))
                continue
            problem = self._unwire(msg) or self._problem(msg)
            if problem:
                logger.warning("round %d: update from node %d refused: %s", server_round, node, problem)
                outcomes.append(SiteOutcome(node, self._reply_name(msg, node), REFUSED, replied, problem))
                continue
            accepted.append(msg)
            reports.append(_report(msg))
            outcomes.append(SiteOutcome(node, reports[-1].site, UPDATED, replied))
        for report in reports:
            # A site that comes back under a new node id (a resumed simulation, a re-registered key) is one site.
            for stale in [n for n, site in self.participants.items() if site == report.site and n != report.node_id]:
                del self.participants[stale]
            self.participants[report.node_id] = report.site
        answered = {outcome.node_id for outcome in outcomes}
        outcomes += [SiteOutcome(node, self._name(node), DROPPED, None, "no reply before the round closed")
                     for node in self._sampled if node not in answered]
        self._on_round(RoundOutcome(server_round, self._started_at, finished_at, reports, outcomes))
        if not accepted:
            return None, None
        return super().aggregate_train(server_round, accepted)

    def _name(self, node: int) -> str:
        return self.participants.get(node, node_name(node))

    def _reply_name(self, msg: Message, node: int) -> str:
        """The site name a refused reply gives, if it gives one that is a plain string."""
        site = msg.content.config_records.get("site")
        name = site.get("site") if site is not None else None
        return name if isinstance(name, str) and 0 < len(name) <= 64 else self._name(node)

    def _unwire(self, msg: Message) -> str | None:
        """Unpacks the reply's flat generator into per-tensor arrays in place; why it cannot be, or None."""
        records = msg.content.array_records
        if len(records) != 1:
            return None  # _problem says what is wrong with the reply's shape
        name = next(iter(records))
        try:
            records[name] = unpack(records[name], layout_of(self.current_arrays or {}))
        except WireFormatError as exc:
            return str(exc)
        return None

    def _problem(self, msg: Message) -> str | None:
        """Why a reply cannot be averaged, or None. Never echoes array contents."""
        content = msg.content
        if len(content.array_records) != 1 or len(content.metric_records) != 1 or "site" not in content.config_records:
            return "reply must carry one ArrayRecord, one MetricRecord and the site's name"
        metrics = next(iter(content.metric_records.values()))
        missing = [k for k in _REQUIRED_METRICS if k not in metrics]
        if missing:
            return f"metrics {missing} are missing"
        unexpected = sorted(set(metrics) - ALLOWED_METRICS)
        if unexpected:
            return f"metrics {unexpected} are not part of the protocol (an unpaid release); refusing the update"
        if metrics[WEIGHT_KEY] != 1.0:
            return "aggregation weight must be 1.0: a weight derived from the site's rows would reveal its size"
        arrays = next(iter(content.array_records.values()))
        current = self.current_arrays or {}
        if set(arrays.keys()) != set(current):
            return "parameter names differ from the global generator's"
        squared = 0.0
        for key, array in arrays.items():
            values = array.numpy()
            if values.shape != current[key].shape:
                return f"parameter {key!r} has shape {values.shape}, expected {current[key].shape}"
            if self.secure_sum is not None:
                if values.dtype.kind not in "iu":
                    return f"parameter {key!r} is not a masked integer vector: secure aggregation is on"
                continue
            expected = self._dtypes.get(key, current[key].dtype)
            if values.dtype != expected:
                return f"parameter {key!r} has dtype {values.dtype}, expected {expected}"
            if not np.all(np.isfinite(values)):
                return f"parameter {key!r} holds non-finite values"
            if self.max_update_norm > 0:
                squared += float(np.sum((values.astype(np.float64) - current[key]) ** 2))
        if self.max_update_norm > 0 and squared ** 0.5 > self.max_update_norm:
            return f"update norm {squared ** 0.5:.3g} exceeds aggregate.max-update-norm {self.max_update_norm:g}"
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
        trust=str(msg.content.config_records["site"].get("trust", "local")),
    )
