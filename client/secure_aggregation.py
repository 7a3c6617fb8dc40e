"""A site's side of secure aggregation (server.secure_round drives the stages).

The protocol state, private keys included, lives in the node's ``context.state``, which Flower keeps on the
SuperNode between the messages of a run and never sends to the server. It is saved after every stage and
before the reply leaves, so a restarted ClientApp process can neither mask twice nor answer unmask twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict

from shared.errors import SecureAggregationError
from shared.secure_aggregation import SecAggClient, SecAggConfig
from shared.wire import pack

logger = logging.getLogger(__name__)

_STATE = "secagg"


def setup(msg: Message, context: Context) -> Message:
    """Stage 1: fresh key pairs for this round; publish the public halves."""
    request = msg.content.config_records["secagg"]
    config = SecAggConfig(
        threshold=int(request["threshold"]),  # type: ignore[arg-type]
        clipping_range=float(request["clipping-range"]),  # type: ignore[arg-type]
        quantization_bits=int(request["quantization-bits"]),  # type: ignore[arg-type]
        modulus_bits=int(request["modulus-bits"]),  # type: ignore[arg-type]
    )
    client, (encryption_key, masking_key) = SecAggClient.start(config, context.node_id, str(request["round-id"]))
    _save(context, client)
    return _reply(msg, {"encryption-key": encryption_key, "masking-key": masking_key})


def share(msg: Message, context: Context) -> Message:
    """Stage 2: Shamir-share this round's secrets among every site that published keys."""
    request = msg.content.config_records["secagg"]
    nodes = [int(n) for n in request["nodes"]]  # type: ignore[union-attr]
    keys = dict(zip(nodes, zip(_blobs(request["encryption-keys"]), _blobs(request["masking-keys"]), strict=True),
                    strict=True))
    client = _load(context)
    ciphertexts = client.share_keys(keys)
    _save(context, client)
    recipients = sorted(ciphertexts)
    return _reply(msg, {"recipients": recipients, "ciphertexts": [ciphertexts[r] for r in recipients]})


def mask_update(context: Context, incoming: ConfigRecord, keys: Sequence[str], update: list[np.ndarray]) -> ArrayRecord:
    """Stage 3 (inside the train reply): take the shares addressed to this site and mask its update (packed)."""
    client = _load(context)
    senders = [int(s) for s in incoming["senders"]]  # type: ignore[union-attr]
    client.receive_shares(dict(zip(senders, _blobs(incoming["ciphertexts"]), strict=True)))
    clipped = sum(int(np.count_nonzero(np.abs(u) > client.config.clipping_range)) for u in update)
    if clipped:
        # Logged here only: the count says something about this site's update, so it never leaves.
        logger.warning(
            "secure aggregation clipped %d update coordinates to +-%g; raise secure-agg.clip-range",
            clipped, client.config.clipping_range,
        )
    masked = client.mask(update)
    _save(context, client)
    return pack(dict(zip(keys, masked, strict=True)))  # flat on the wire, as every update (shared/wire.py)


def unmask(msg: Message, context: Context) -> Message:
    """Stage 4: the shares that remove the survivors' self masks and the dropped sites' pair masks."""
    request = msg.content.config_records["secagg"]
    client = _load(context)
    shares = client.unmask([int(n) for n in request["survivors"]],  # type: ignore[union-attr]
                           [int(n) for n in request["dropped"]])  # type: ignore[union-attr]
    _save(context, client)  # before the reply leaves: a second request must find the round answered
    nodes = sorted(shares)
    return _reply(msg, {"nodes": nodes, "shares": [shares[n] for n in nodes]})


def _load(context: Context) -> SecAggClient:
    if _STATE not in context.state.config_records:
        raise SecureAggregationError(
            "this site holds no secure-aggregation state for the round (it missed the key setup, or its "
            "SuperNode restarted); it sits this round out"
        )
    return SecAggClient.from_bytes(bytes(context.state.config_records[_STATE]["client"]))  # type: ignore[arg-type]


def _save(context: Context, client: SecAggClient) -> None:
    context.state.config_records[_STATE] = ConfigRecord({"client": client.to_bytes()})


def _reply(msg: Message, values: dict[str, object]) -> Message:
    return Message(content=RecordDict({"secagg": ConfigRecord(values)}), reply_to=msg)  # type: ignore[arg-type]


def _blobs(values: object) -> list[bytes]:
    return [bytes(v) for v in values]  # type: ignore[attr-defined]
