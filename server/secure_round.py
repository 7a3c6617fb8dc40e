"""Secure aggregation over Flower's Message API: the server's side of each round.

Flower ships SecAgg+ only for its legacy API, so the protocol (shared.secure_aggregation, built on Flower's
own key-agreement, Shamir and quantization primitives) is driven here with plain query messages:

1. ``query.secagg_setup``: every sampled site makes fresh key pairs and returns its two public keys;
2. ``query.secagg_share``: the server broadcasts the keys; each site returns its encrypted Shamir shares;
3. the train message carries the ciphertexts addressed to each site; the site trains, masks its update
   (its weights minus the global ones) and replies with the masked integer vector;
4. ``query.secagg_unmask``: the survivors return the shares that remove the masks, and the server gets the
   sum of the survivors' updates and nothing else. A site that drops after stage 2 does not break the
   round as long as ``threshold`` sites survive.
"""

from __future__ import annotations

import logging
import numpy as np
from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from shared.errors import SecureAggregationError
from shared.plan import TrainingPlan
from shared.secure_aggregation import SecAggConfig, SecAggServer

logger = logging.getLogger(__name__)

SETUP, SHARE, UNMASK = (f"{MessageType.QUERY}.secagg_{stage}" for stage in ("setup", "share", "unmask"))
STAGE_TIMEOUT_S = 600.0


class SecureRounds:
    """Runs the SecAgg stages around each training round (the strategy's ``SecureSum``)."""

    def __init__(self, plan: TrainingPlan, timeout: float = STAGE_TIMEOUT_S) -> None:
        self.plan, self.config, self.timeout = plan, plan.secagg_config(), timeout
        self._server: SecAggServer | None = None
        self._keys: list[str] = []

    def open(self, server_round: int, messages: list[Message], grid: Grid) -> list[Message]:
        """Stages 1 and 2 with the sampled sites; return train messages carrying each one's ciphertexts."""
        if not messages:
            return messages
        arrays = messages[0].content.array_records["arrays"]
        self._keys = sorted(arrays.keys())  # the order sites mask in (shared/wire.layout_of)
        nodes = [m.metadata.dst_node_id for m in messages]
        self._server = server = SecAggServer(self.config, nodes, [tuple(arrays[k].shape) for k in self._keys])
        round_id = f"{self.plan.run_id}/{server_round}"

        setup = ConfigRecord({"round-id": round_id, **_config_values(self.config)})
        replies = self._ask(grid, SETUP, {node: setup for node in nodes})
        keys = {
            node: (bytes(rec["encryption-key"]), bytes(rec["masking-key"]))  # type: ignore[arg-type]
            for node, rec in replies.items()
        }
        published = server.collect_public_keys(keys)

        order = sorted(published)
        broadcast = ConfigRecord({
            "nodes": order,
            "encryption-keys": [published[n][0] for n in order],
            "masking-keys": [published[n][1] for n in order],
        })
        replies = self._ask(grid, SHARE, {node: broadcast for node in order})
        sent = {
            node: dict(zip(_ints(rec["recipients"]), _blobs(rec["ciphertexts"]), strict=True))
            for node, rec in replies.items()
        }
        routed = server.route_shares(sent)

        out = []
        for message in messages:
            node = message.metadata.dst_node_id
            if node not in routed:
                continue
            incoming = routed[node]
            content = RecordDict({
                "arrays": message.content.array_records["arrays"],
                "config": message.content.config_records["config"],
                "secagg": ConfigRecord({"senders": sorted(incoming), "ciphertexts": [incoming[s] for s in sorted(incoming)]}),
            })
            out.append(Message(content=content, message_type=MessageType.TRAIN, dst_node_id=node))
        logger.info("round %d: secure aggregation set up with %d of %d sites", server_round, len(out), len(nodes))
        return out

    def unmask(self, server_round: int, replies: list[Message], grid: Grid) -> tuple[dict[str, np.ndarray], int]:
        """Stage 4: collect the masked updates, ask the survivors for shares, return (sum, survivors)."""
        server = self._server
        if server is None:
            raise SecureAggregationError(f"round {server_round}: no secure-aggregation round was opened")
        masked = {}
        for reply in replies:
            record = reply.content.array_records["arrays"]
            masked[reply.metadata.src_node_id] = [record[k].numpy() for k in self._keys]
        survivors, dropped = server.collect_masked(masked)
        request = ConfigRecord({"survivors": survivors, "dropped": dropped})
        answers = self._ask(grid, UNMASK, {node: request for node in survivors})
        shares = {
            node: dict(zip(_ints(rec["nodes"]), _blobs(rec["shares"]), strict=True)) for node, rec in answers.items()
        }
        total, count = server.aggregate(shares)
        self._server = None
        return dict(zip(self._keys, total, strict=True)), count

    def _ask(self, grid: Grid, message_type: str, requests: dict[int, ConfigRecord]) -> dict[int, ConfigRecord]:
        """Send one stage's requests; return the answers of the sites that replied without error."""
        messages = [
            Message(content=RecordDict({"secagg": record}), message_type=message_type, dst_node_id=node)
            for node, record in requests.items()
        ]
        answers: dict[int, ConfigRecord] = {}
        for reply in grid.send_and_receive(messages, timeout=self.timeout):
            node = reply.metadata.src_node_id
            if reply.has_error():
                logger.warning("%s: node %d failed (%s); it leaves this round", message_type, node, reply.error.reason)
                continue
            answers[node] = reply.content.config_records["secagg"]
        return answers


def _config_values(config: SecAggConfig) -> dict[str, int | float]:
    return {
        "threshold": config.threshold, "clipping-range": config.clipping_range,
        "quantization-bits": config.quantization_bits, "modulus-bits": config.modulus_bits,
    }


def _ints(values: object) -> list[int]:
    return [int(v) for v in values]  # type: ignore[attr-defined]


def _blobs(values: object) -> list[bytes]:
    return [bytes(v) for v in values]  # type: ignore[attr-defined]
