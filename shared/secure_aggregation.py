"""Secure aggregation: the server learns the sum of the sites' vectors and nothing else about any one.

This is SecAgg (Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine Learning",
CCS 2017) on a complete graph, with the message layout of Flower's SecAgg+ (Bell et al., CCS 2020), and
no transport: the caller moves the bytes. A round, for participants ``U0``:

1. ``SecAggClient.start`` -> two public keys per site; ``SecAggServer.collect_public_keys`` -> ``U1``.
2. ``share_keys``: each site Shamir-shares its self-mask seed ``b_i`` and its masking private key among
   ``U1`` (threshold ``t``), each pair of shares encrypted for its recipient; ``route_shares`` -> ``U2``.
3. ``receive_shares`` then ``mask``: quantize, add ``PRG(b_i)`` and ``+/-PRG(s_ij)`` for every other
   ``j`` in ``U2``, mod ``2**modulus_bits``; ``collect_masked`` -> survivors ``U3`` and dropped ``U2 - U3``.
4. ``unmask``: each survivor reveals its share of ``b_j`` for survivors and of ``sk_j`` for dropped sites;
   ``aggregate`` removes the masks and returns the float sum of the survivors' clipped vectors.

Threat model: an honest-but-curious server and fewer than ``t`` colluding sites. There is no PKI and no
consistency round (the signatures of the malicious-server variant), so a server that forges public keys
can read everything; :meth:`SecAggConfig.validate` demands ``2t > n`` so that a server which tells
different sites different dropout lists still cannot collect ``t`` shares of both secrets of one site.
Masks are expanded with ChaCha20 keyed through HKDF-SHA256, not Flower's ``pseudo_rand_gen`` (it folds
the seed into 32 bits, so a mask could be brute-forced).
"""

from __future__ import annotations

import base64
import json
import logging
import math
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from cryptography.fernet import InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
from flwr.common.secure_aggregation.crypto.symmetric_encryption import decrypt, encrypt, generate_shared_key
from flwr.common.secure_aggregation.secaggplus_utils import (
    share_keys_plaintext_concat,
    share_keys_plaintext_separate,
)
from flwr.supercore.primitives.asymmetric import (
    bytes_to_private_key,
    bytes_to_public_key,
    generate_key_pairs,
    private_key_to_bytes,
    public_key_to_bytes,
)
from numpy.typing import NDArray

from shared.errors import ConfigError, SecureAggregationError

__all__ = ["SecAggClient", "SecAggConfig", "SecAggServer"]

logger = logging.getLogger(__name__)

FORMAT = "fedsynth-secagg-client/1"
PublicKeys = tuple[bytes, bytes]  # (encryption key, masking key), PEM
_CURVE = ec.SECP384R1()  # the curve Flower's generate_key_pairs uses
_SCALAR_BYTES = 48
_SEED_BYTES = 32
_SELF_MASK_INFO = b"fedsynth/secagg/v1/self-mask"
_PAIR_MASK_INFO = b"fedsynth/secagg/v1/pairwise-mask/"
_MAX_QUANTIZATION_BITS = 52  # float64 carries 53 significant bits; beyond that quantization is not exact


@dataclass(frozen=True)
class SecAggConfig:
    """Parameters of one secure-aggregation round, identical at the server and every site."""

    threshold: int
    clipping_range: float
    quantization_bits: int
    modulus_bits: int

    def __post_init__(self) -> None:
        if not isinstance(self.threshold, int) or self.threshold < 2:
            raise ConfigError(
                f"secure aggregation threshold must be an integer >= 2, got {self.threshold!r}: with 1 the "
                "server could unmask a site from that site's own share"
            )
        if not isinstance(self.clipping_range, (int, float)) or not 0 < self.clipping_range < math.inf:
            raise ConfigError(
                f"secure aggregation clipping_range must be a positive number, got {self.clipping_range!r}"
            )
        bits = self.quantization_bits
        if not isinstance(bits, int) or not 1 <= bits <= _MAX_QUANTIZATION_BITS:
            raise ConfigError(
                f"secure aggregation quantization_bits must be an integer in 1..{_MAX_QUANTIZATION_BITS}, "
                f"got {self.quantization_bits!r} (22 is a good default)"
            )
        if not isinstance(self.modulus_bits, int) or not self.quantization_bits < self.modulus_bits <= 64:
            raise ConfigError(
                f"secure aggregation modulus_bits must be an integer above quantization_bits "
                f"({self.quantization_bits}) and at most 64, got {self.modulus_bits!r}"
            )

    def validate(self, num_participants: int) -> None:
        """Check the parameters against the number of sites invited to a round.

        Raises
        ------
        ConfigError
            If the threshold cannot be met or is not a majority, or the sum could overflow the modulus.
        """
        n = num_participants
        if self.threshold > n:
            raise ConfigError(
                f"secure aggregation threshold ({self.threshold}) exceeds the number of participants ({n}): "
                "lower the threshold or invite more sites"
            )
        if 2 * self.threshold <= n:
            raise ConfigError(
                f"secure aggregation threshold ({self.threshold}) must be more than half the participants ({n}), "
                f"i.e. at least {n // 2 + 1}: otherwise a server that tells two halves of the sites different "
                "dropout lists can rebuild both secrets of one site and unmask its vector"
            )
        needed = self.quantization_bits + (n - 1).bit_length() + 1  # n values below 2**(bits+1) must not wrap
        if self.modulus_bits < needed:
            raise ConfigError(
                f"secure aggregation modulus_bits ({self.modulus_bits}) is too small for {n} participants with "
                f"quantization_bits {self.quantization_bits}: the sum would wrap; use modulus_bits >= {needed}"
            )


class SecAggClient:
    """One site's side of a round. All state survives :meth:`to_bytes` / :meth:`from_bytes`.

    A site keeps its own pair of shares locally instead of sending itself a ciphertext through the server.
    Once a site has masked, it erases its seed and masking private key; once it has answered the unmask
    request, it erases the shares it held. Start a new client (new keys) for every round.
    """

    def __init__(self, *, config: SecAggConfig, node_id: int, round_id: str, stage: str,
                 encryption_key: ec.EllipticCurvePrivateKey, masking_key: ec.EllipticCurvePrivateKey | None,
                 own_keys: PublicKeys, seed: bytes | None, public_keys: dict[int, PublicKeys],
                 shares: dict[int, tuple[bytes, bytes]]) -> None:
        # Not for callers: use start() or from_bytes().
        self.config, self.node_id, self.round_id, self.stage = config, node_id, round_id, stage
        self._enc_sk, self._mask_sk, self._own_keys, self._seed = encryption_key, masking_key, own_keys, seed
        self._public_keys, self._shares = public_keys, shares

    @classmethod
    def start(cls, config: SecAggConfig, node_id: int, round_id: str) -> tuple[SecAggClient, PublicKeys]:
        """Make fresh key pairs; return the client and its (encryption, masking) public keys to publish."""
        enc_sk, enc_pk = generate_key_pairs()
        mask_sk, mask_pk = generate_key_pairs()
        own = (public_key_to_bytes(enc_pk), public_key_to_bytes(mask_pk))
        client = cls(config=config, node_id=node_id, round_id=round_id, stage="started", encryption_key=enc_sk,
                     masking_key=mask_sk, own_keys=own, seed=None, public_keys={}, shares={})
        return client, own

    def share_keys(self, public_keys: Mapping[int, PublicKeys]) -> dict[int, bytes]:
        """Share ``b_i`` and the masking key among all of ``public_keys``; return recipient -> ciphertext."""
        self._require_stage("started", "share_keys")
        if public_keys.get(self.node_id) != self._own_keys:
            raise SecureAggregationError(
                f"node {self.node_id}: the server's key list does not carry this site's own public keys; "
                "refusing to share secrets (restart the round)"
            )
        if len(public_keys) < self.config.threshold:
            raise SecureAggregationError(
                f"node {self.node_id}: only {len(public_keys)} participants, fewer than the threshold "
                f"{self.config.threshold}; the round cannot complete"
            )
        _check_distinct_keys(public_keys)
        ids = sorted(public_keys)
        seed = secrets.token_bytes(_SEED_BYTES)
        assert self._mask_sk is not None  # present until mask()
        scalar = self._mask_sk.private_numbers().private_value.to_bytes(_SCALAR_BYTES, "big")
        b_shares = create_shares(seed, self.config.threshold, len(ids))
        sk_shares = create_shares(scalar, self.config.threshold, len(ids))
        own_share, out = (b"", b""), {}
        for b_share, sk_share, node in zip(b_shares, sk_shares, ids):
            if node == self.node_id:
                own_share = (b_share, sk_share)
                continue
            key = generate_shared_key(self._enc_sk, _load_public_key(public_keys[node][0], node))
            out[node] = encrypt(key, share_keys_plaintext_concat(self.node_id, node, b_share, sk_share))
        self._seed, self._public_keys = seed, dict(public_keys)
        self._shares, self.stage = {self.node_id: own_share}, "shared"
        return out

    def receive_shares(self, ciphertexts: Mapping[int, bytes]) -> None:
        """Decrypt the shares addressed to this site (sender -> ciphertext); the senders form ``U2``."""
        self._require_stage("shared", "receive_shares")
        received = dict(self._shares)
        for sender, ciphertext in ciphertexts.items():
            if sender == self.node_id or sender not in self._public_keys:
                raise SecureAggregationError(
                    f"node {self.node_id}: got shares from node {sender}, which is not another participant "
                    "of this round; the server routed them wrongly (restart the round)"
                )
            key = generate_shared_key(self._enc_sk, _load_public_key(self._public_keys[sender][0], sender))
            try:
                src, dst, b_share, sk_share = share_keys_plaintext_separate(decrypt(key, ciphertext))
            except InvalidToken:
                raise SecureAggregationError(
                    f"node {self.node_id}: the shares from node {sender} failed authentication (altered or "
                    "encrypted for another site); restart the round"
                ) from None
            if (src, dst) != (sender, self.node_id):
                raise SecureAggregationError(
                    f"node {self.node_id}: shares delivered as from node {sender} name sender {src} and "
                    f"recipient {dst}; refusing them (restart the round)"
                )
            received[sender] = (b_share, sk_share)
        if len(received) < self.config.threshold:
            raise SecureAggregationError(
                f"node {self.node_id}: shares from only {len(received)} sites (self included), fewer than the "
                f"threshold {self.config.threshold}; the round cannot complete"
            )
        self._shares, self.stage = received, "received"

    def mask(
        self, vector: Sequence[NDArray[Any]], *, rng: np.random.Generator | None = None
    ) -> list[NDArray[np.uint64]]:
        """Quantize ``vector`` and add this site's masks; return uint64 arrays of the same shapes.

        ``rng`` drives stochastic rounding only (the masks come from a CSPRNG); pass a seeded one in tests.
        A client masks once: two vectors under the same masks would reveal their difference.
        """
        self._require_stage("received", "mask")
        arrays = [np.asarray(a, dtype=np.float64) for a in vector]
        flat = np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0)
        total = _quantize(flat, self.config, rng if rng is not None else np.random.default_rng())
        assert self._seed is not None and self._mask_sk is not None  # present until now
        total += _prg(self._seed, _SELF_MASK_INFO, flat.size, self.config.modulus_bits)
        for other in self._shares:
            if other != self.node_id:
                peer = _load_public_key(self._public_keys[other][1], other)
                total += _pairwise_mask(self._mask_sk, peer, self.node_id, other, flat.size, self.config)
        total &= _modulus_mask(self.config.modulus_bits)
        # Neither secret is needed again; erasing them limits what a later leak of the state could reveal.
        self._seed, self._mask_sk, self.stage = None, None, "masked"
        return _split(total, [a.shape for a in arrays])

    def unmask(self, survivors: Sequence[int], dropped: Sequence[int]) -> dict[int, bytes]:
        """Reveal this site's share of ``b_j`` for each survivor and of ``sk_j`` for each dropped site.

        Persist the client (:meth:`to_bytes`) before sending the reply: a second request is refused.
        """
        if self.stage == "unmasked":
            raise SecureAggregationError(
                f"node {self.node_id}: the unmask request was already answered for round {self.round_id!r}; "
                "a second answer could reveal both secrets of a site, so it is refused"
            )
        self._require_stage("masked", "unmask")
        alive, gone, holders = set(survivors), set(dropped), set(self._shares)
        problem = None
        if len(alive) != len(survivors) or len(gone) != len(dropped):
            problem = "a node is listed twice"
        elif alive & gone:
            problem = f"nodes {sorted(alive & gone)} are listed both as survivors and as dropped"
        elif alive | gone != holders:
            problem = "the survivors and dropped sites are not exactly the sites that shared keys with this one"
        elif self.node_id not in alive:
            problem = "this site, which sent its masked vector, is not listed as a survivor"
        elif len(alive) < self.config.threshold:
            problem = f"only {len(alive)} survivors, fewer than the threshold {self.config.threshold}"
        if problem is not None:
            raise SecureAggregationError(
                f"node {self.node_id}: refusing the unmask request: {problem}; the server must restart the round"
            )
        reply = {node: self._shares[node][0] for node in alive} | {node: self._shares[node][1] for node in gone}
        self._shares, self.stage = {}, "unmasked"
        return reply

    def to_bytes(self) -> bytes:
        """Serialize the whole state (private keys included: keep it at the site, never send it)."""
        state = {
            "format": FORMAT, "config": asdict(self.config), "node_id": self.node_id, "round_id": self.round_id,
            "stage": self.stage, "encryption_key": _b64(private_key_to_bytes(self._enc_sk)),
            "masking_key": None if self._mask_sk is None else _b64(private_key_to_bytes(self._mask_sk)),
            "own_keys": [_b64(k) for k in self._own_keys],
            "seed": None if self._seed is None else _b64(self._seed),
            "public_keys": {str(n): [_b64(k) for k in keys] for n, keys in self._public_keys.items()},
            "shares": {str(n): [_b64(s) for s in pair] for n, pair in self._shares.items()},
        }
        return json.dumps(state).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> SecAggClient:
        """Restore a client saved by :meth:`to_bytes`."""
        try:
            s = json.loads(data)
            if s["format"] != FORMAT:
                raise ValueError(s["format"])
            masking = s["masking_key"]
            return cls(
                config=SecAggConfig(**s["config"]), node_id=int(s["node_id"]), round_id=str(s["round_id"]),
                stage=str(s["stage"]), encryption_key=bytes_to_private_key(_unb64(s["encryption_key"])),
                masking_key=None if masking is None else bytes_to_private_key(_unb64(masking)),
                own_keys=_pair(s["own_keys"]), seed=None if s["seed"] is None else _unb64(s["seed"]),
                public_keys={int(n): _pair(k) for n, k in s["public_keys"].items()},
                shares={int(n): _pair(p) for n, p in s["shares"].items()},
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SecureAggregationError(
                f"the saved secure-aggregation state is unreadable ({type(exc).__name__}); this site cannot "
                "continue the round and will count as dropped"
            ) from None

    def _require_stage(self, stage: str, action: str) -> None:
        if self.stage != stage:
            raise SecureAggregationError(
                f"node {self.node_id}: cannot {action} at stage {self.stage!r} of round {self.round_id!r} "
                f"(expected {stage!r}); the messages arrived out of order, restart the round"
            )


class SecAggServer:
    """The coordinator's side of a round; it sees public keys, ciphertexts, masked vectors and shares.

    It keeps its state in memory (the ServerApp runs a round in one process), stage by stage.
    """

    def __init__(self, config: SecAggConfig, participants: list[int], shapes: list[tuple[int, ...]]) -> None:
        if len(set(participants)) != len(participants):
            raise SecureAggregationError("secure aggregation participants contain a node id twice; pass each once")
        config.validate(len(participants))
        self.config, self.participants = config, sorted(participants)
        self.shapes = [tuple(int(d) for d in shape) for shape in shapes]
        self._size = sum(math.prod(shape) for shape in self.shapes)
        self._stage = "keys"
        self._public_keys: dict[int, PublicKeys] = {}
        self._u2: list[int] = []
        self._survivors: list[int] = []
        self._dropped: list[int] = []
        self._sum = np.zeros(self._size, dtype=np.uint64)

    def collect_public_keys(self, keys: Mapping[int, PublicKeys]) -> dict[int, PublicKeys]:
        """Take the keys of the sites that answered (the others are out); return the keys to broadcast."""
        self._require_stage("keys", "collect_public_keys")
        _check_known(keys, self.participants, "public keys")
        for node, pair in keys.items():
            for key in pair:
                _load_public_key(key, node)
        _check_distinct_keys(keys)
        _log_missing("sent no public keys", self.participants, keys)
        self._check_enough(len(keys), "sites sent public keys")
        self._public_keys = {node: keys[node] for node in sorted(keys)}
        self._stage = "route"
        return dict(self._public_keys)

    def route_shares(self, sent: Mapping[int, Mapping[int, bytes]]) -> dict[int, dict[int, bytes]]:
        """Turn sender -> recipient -> ciphertext into recipient -> sender -> ciphertext within ``U2``."""
        self._require_stage("route", "route_shares")
        _check_known(sent, list(self._public_keys), "shares")
        u2 = sorted(sent)
        for sender in u2:
            recipients = set(sent[sender])
            missing = set(u2) - {sender} - recipients
            stray = (recipients - set(self._public_keys)) | (recipients & {sender})
            if missing or stray:
                raise SecureAggregationError(
                    f"node {sender} sent shares for the wrong sites (missing {sorted(missing)}, unexpected "
                    f"{sorted(stray)}); an unmodified client never does this: exclude the site and restart"
                )
        _log_missing("did not share keys", list(self._public_keys), sent)
        self._check_enough(len(u2), "sites shared keys")
        self._u2, self._stage = u2, "masked"
        return {recipient: {s: sent[s][recipient] for s in u2 if s != recipient} for recipient in u2}

    def collect_masked(self, masked: Mapping[int, Sequence[NDArray[Any]]]) -> tuple[list[int], list[int]]:
        """Add up the masked vectors; return (survivors, dropped) to send with the unmask request."""
        self._require_stage("masked", "collect_masked")
        _check_known(masked, self._u2, "a masked vector")
        self._check_enough(len(masked), "sites sent masked vectors")
        checked = {node: self._check_masked(node, masked[node]) for node in sorted(masked)}
        for vector in checked.values():
            self._sum += vector
        self._survivors = sorted(masked)
        self._dropped = [node for node in self._u2 if node not in masked]
        _log_missing("dropped before masking", self._u2, masked)
        self._stage = "unmask"
        return list(self._survivors), list(self._dropped)

    def aggregate(self, shares: Mapping[int, Mapping[int, bytes]]) -> tuple[list[NDArray[np.float64]], int]:
        """Rebuild the secrets from the survivors' shares, remove the masks; return (float sum, survivors)."""
        self._require_stage("unmask", "aggregate")
        _check_known(shares, self._survivors, "unmask shares")
        self._check_enough(len(shares), "survivors answered the unmask request")
        targets = set(self._survivors) | set(self._dropped)
        for replier, per_node in shares.items():
            if set(per_node) - targets:
                raise SecureAggregationError(f"node {replier} returned shares for sites not asked about; restart")
        total, bits = self._sum.copy(), self.config.modulus_bits
        for node in self._survivors:
            total -= _prg(self._reconstruct(node, shares), _SELF_MASK_INFO, self._size, bits)
        for gone in self._dropped:
            secret = self._reconstruct(gone, shares)
            key = _rebuild_masking_key(secret, gone, self._public_keys[gone][1])
            for node in self._survivors:  # cancel the survivor's half of the pair mask it shared with `gone`
                total -= _pairwise_mask(key, _load_public_key(self._public_keys[node][1], node), node, gone,
                                        self._size, self.config)
        total &= _modulus_mask(bits)
        m = len(self._survivors)
        if total.size and int(total.max()) > m * 2**self.config.quantization_bits:
            raise SecureAggregationError(
                "the unmasked sum is out of range: a share or a masked vector was corrupted; discard this round"
            )
        step = 2 * self.config.clipping_range / 2**self.config.quantization_bits
        result = total.astype(np.float64) * step - m * self.config.clipping_range  # m offsets, one per vector
        self._stage = "done"
        logger.info("secure aggregation: summed %d vectors (%d dropped)", m, len(self._dropped))
        return _split(result, self.shapes), m

    def _check_masked(self, node: int, arrays: Sequence[NDArray[Any]]) -> NDArray[np.uint64]:
        parts = [np.asarray(a) for a in arrays]
        valid = [tuple(a.shape) for a in parts] == self.shapes and all(
            a.dtype in (np.uint64, np.int64)
            and (a.size == 0 or (int(a.min()) >= 0 and int(a.max()) >> self.config.modulus_bits == 0))
            for a in parts
        )
        if not valid:
            raise SecureAggregationError(
                f"node {node} sent a masked vector of the wrong shape, type or range (expected {self.shapes}, "
                "uint64 or int64 values below the modulus); check both sides use the same model and config"
            )
        return np.concatenate([a.astype(np.uint64).ravel() for a in parts] + [np.zeros(0, np.uint64)])

    def _reconstruct(self, node: int, shares: Mapping[int, Mapping[int, bytes]]) -> bytes:
        index = {holder: i + 1 for i, holder in enumerate(self._public_keys)}  # Shamir x = position in U1
        held = [(holder, per[node]) for holder, per in sorted(shares.items()) if node in per]
        if len(held) < self.config.threshold:
            raise SecureAggregationError(
                f"only {len(held)} shares for node {node}, fewer than the threshold {self.config.threshold}; "
                "the round cannot complete"
            )
        chosen = held[: self.config.threshold]  # any t shares determine the secret
        if any(len(s) < 4 or int.from_bytes(s[:4], "little") != index[h] or len(s) != len(chosen[0][1])
               for h, s in chosen):
            raise SecureAggregationError(f"a share for node {node} is malformed or mislabelled; restart the round")
        try:
            return combine_shares([s for _, s in chosen])
        except ValueError:
            raise SecureAggregationError(f"the shares for node {node} do not combine; restart the round") from None

    def _require_stage(self, stage: str, action: str) -> None:
        if self._stage != stage:
            raise SecureAggregationError(
                f"cannot {action} at stage {self._stage!r} (expected {stage!r}); call the stages in order, "
                "one SecAggServer per round"
            )

    def _check_enough(self, count: int, what: str) -> None:
        if count < self.config.threshold:
            raise SecureAggregationError(
                f"only {count} {what}, fewer than the threshold {self.config.threshold}: the round cannot "
                "complete; retry with more sites available or a lower threshold"
            )


# ---- helpers --------------------------------------------------------------------------------------------


def _modulus_mask(bits: int) -> np.uint64:
    return np.uint64((1 << bits) - 1)


def _prg(secret: bytes, info: bytes, size: int, modulus_bits: int) -> NDArray[np.uint64]:
    """``size`` values uniform mod ``2**modulus_bits`` (a power of two, so masking bits is unbiased)."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)
    # Each key is derived for one use only (distinct secret or info), so a fixed all-zero nonce is safe.
    stream = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(bytes(8 * size))
    return np.frombuffer(stream, dtype="<u8").astype(np.uint64) & _modulus_mask(modulus_bits)


def _pairwise_mask(own: ec.EllipticCurvePrivateKey, peer: ec.EllipticCurvePublicKey, me: int, other: int,
                   size: int, config: SecAggConfig) -> NDArray[np.uint64]:
    """``me``'s signed share of the pair mask: +PRG(s) for the lower node id, -PRG(s) for the higher."""
    info = _PAIR_MASK_INFO + f"{min(me, other)}:{max(me, other)}".encode()
    mask = _prg(own.exchange(ec.ECDH(), peer), info, size, config.modulus_bits)
    return mask if me < other else (np.uint64(0) - mask) & _modulus_mask(config.modulus_bits)


def _quantize(flat: NDArray[np.float64], config: SecAggConfig, rng: np.random.Generator) -> NDArray[np.uint64]:
    """Clip to +/-c, map to [0, 2**bits] and round stochastically (unbiased): our own, not Flower's, so the
    randomness is injected rather than numpy's global state, and no value passes through int32."""
    if not np.all(np.isfinite(flat)):
        raise SecureAggregationError("the vector to mask holds NaN or infinite values; fix the local update first")
    c = config.clipping_range
    scaled = (np.clip(flat, -c, c) + c) * (2**config.quantization_bits / (2 * c))
    floor = np.floor(scaled)
    rounded = floor + (rng.random(flat.shape) < scaled - floor)
    quantized: NDArray[np.uint64] = np.clip(rounded, 0, 2**config.quantization_bits).astype(np.uint64)
    return quantized


def _rebuild_masking_key(secret: bytes, node: int, public_key: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = ec.derive_private_key(int.from_bytes(secret, "big"), _CURVE)
    except ValueError:
        key = None
    if key is None or public_key_to_bytes(key.public_key()) != public_key:
        raise SecureAggregationError(
            f"the masking key rebuilt for dropped node {node} does not match its public key: a share was "
            "corrupted; discard this round"
        )
    return key


def _split(flat: NDArray[Any], shapes: Iterable[tuple[int, ...]]) -> list[NDArray[Any]]:
    out, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(flat[start:start + size].reshape(shape).copy())
        start += size
    return out


def _load_public_key(data: bytes, node: int) -> ec.EllipticCurvePublicKey:
    try:
        key = bytes_to_public_key(data)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != _CURVE.name:
        raise SecureAggregationError(f"node {node} published a public key that is not a PEM {_CURVE.name} key")
    return key


def _check_distinct_keys(keys: Mapping[int, PublicKeys]) -> None:
    flat = [k for pair in keys.values() for k in pair]
    if len(set(flat)) != len(flat):
        raise SecureAggregationError(
            "two public keys in this round are identical (a replayed or copied key); restart the round"
        )


def _check_known(replies: Mapping[int, Any], expected: list[int], what: str) -> None:
    unknown = sorted(set(replies) - set(expected))
    if unknown:
        raise SecureAggregationError(
            f"nodes {unknown} sent {what} but are not expected at this stage; pass only the replies of "
            "the sites that completed the previous stage"
        )


def _log_missing(what: str, expected: list[int], got: Mapping[int, Any]) -> None:
    missing = sorted(set(expected) - set(got))
    if missing:
        logger.warning("secure aggregation: nodes %s %s and are out of the round", missing, what)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _pair(items: list[str]) -> tuple[bytes, bytes]:
    first, second = items
    return _unb64(first), _unb64(second)
