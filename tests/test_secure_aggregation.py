"""SecAgg with real cryptography: sums, dropouts at each stage, refusals, restarts and config checks."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import pytest

from shared.errors import ConfigError, SecureAggregationError
from shared.secure_aggregation import SecAggClient, SecAggConfig, SecAggServer

CONFIG = SecAggConfig(threshold=2, clipping_range=2.0, quantization_bits=22, modulus_bits=32)
SHAPES: list[tuple[int, ...]] = [(4, 3), (5,), ()]  # a scalar included: 0-d arrays behave differently


def _vectors(ids: list[int], seed: int = 0) -> dict[int, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    # Scale 1.5 with clipping 2.0: most values inside, a few clipped, so clipping is exercised too.
    return {i: [rng.normal(scale=1.5, size=shape) for shape in SHAPES] for i in ids}


def _clipped_sum(vectors: dict[int, list[np.ndarray]], ids: Collection[int], c: float) -> list[np.ndarray]:
    return [sum(np.clip(vectors[i][k], -c, c) for i in ids) for k in range(len(SHAPES))]  # type: ignore[misc]


@dataclass
class Round:
    """Drives one round like the lead's Flower wiring would, with dropouts and optional restarts."""

    config: SecAggConfig
    ids: list[int]
    restart: bool = False  # serialize every client between stages, as separate processes would
    clients: dict[int, SecAggClient] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.server = SecAggServer(self.config, self.ids, SHAPES)
        self.vectors = _vectors(self.ids)

    def _reload(self) -> None:
        if self.restart:
            self.clients = {i: SecAggClient.from_bytes(c.to_bytes()) for i, c in self.clients.items()}

    def run_until_unmask(self, drop_before_mask: Collection[int] = ()) -> tuple[list[int], list[int]]:
        keys = {}
        for i in self.ids:
            self.clients[i], keys[i] = SecAggClient.start(self.config, i, "round-1")
        self._reload()
        broadcast = self.server.collect_public_keys(keys)
        sent = {i: self.clients[i].share_keys(broadcast) for i in broadcast}
        self._reload()
        routed = self.server.route_shares(sent)
        for i, ciphertexts in routed.items():
            self.clients[i].receive_shares(ciphertexts)
        self._reload()
        masked = {
            i: self.clients[i].mask(self.vectors[i], rng=np.random.default_rng(i))
            for i in routed if i not in drop_before_mask
        }
        self._reload()
        return self.server.collect_masked(masked)

    def finish(self, survivors: list[int], dropped: list[int], repliers: Collection[int]) -> tuple[list, int]:
        shares = {i: self.clients[i].unmask(survivors, dropped) for i in repliers}
        self._reload()
        return self.server.aggregate(shares)


def _assert_close_to_sum(result: list[np.ndarray], expected: list[np.ndarray], m: int, config: SecAggConfig) -> None:
    # Stochastic rounding moves each value by less than one quantum 2c / 2**bits; m values add up.
    bound = m * 2 * config.clipping_range / 2**config.quantization_bits
    for got, want in zip(result, expected):
        assert got.shape == np.shape(want)
        assert np.all(np.abs(got - want) <= bound)


@pytest.mark.parametrize(("n", "threshold"), [(3, 2), (10, 6)])
def test_sum_without_dropout(n: int, threshold: int) -> None:
    # Prepare
    config = SecAggConfig(threshold=threshold, clipping_range=2.0, quantization_bits=22, modulus_bits=32)
    rnd = Round(config, list(range(101, 101 + n)))
    # Execute
    survivors, dropped = rnd.run_until_unmask()
    result, m = rnd.finish(survivors, dropped, survivors)
    # Assert
    assert (survivors, dropped, m) == (rnd.ids, [], n)
    _assert_close_to_sum(result, _clipped_sum(rnd.vectors, rnd.ids, 2.0), n, config)


def test_node_dropping_before_masking_is_left_out_of_the_sum() -> None:
    config = SecAggConfig(threshold=3, clipping_range=2.0, quantization_bits=22, modulus_bits=32)
    rnd = Round(config, [1, 2, 3, 4])
    survivors, dropped = rnd.run_until_unmask(drop_before_mask={2})
    result, m = rnd.finish(survivors, dropped, survivors)
    assert (survivors, dropped, m) == ([1, 3, 4], [2], 3)
    _assert_close_to_sum(result, _clipped_sum(rnd.vectors, [1, 3, 4], 2.0), 3, config)


def test_node_dropping_after_masking_still_counts() -> None:
    config = SecAggConfig(threshold=3, clipping_range=2.0, quantization_bits=22, modulus_bits=32)
    rnd = Round(config, [1, 2, 3, 4])
    survivors, dropped = rnd.run_until_unmask()
    result, m = rnd.finish(survivors, dropped, repliers=[1, 2, 4])  # node 3 never answers the unmask request
    assert m == 4
    _assert_close_to_sum(result, _clipped_sum(rnd.vectors, [1, 2, 3, 4], 2.0), 4, config)


def test_drop_at_every_stage_with_restarts_between_stages() -> None:
    config = SecAggConfig(threshold=3, clipping_range=2.0, quantization_bits=22, modulus_bits=32)
    rnd = Round(config, [5, 6, 7, 8, 9], restart=True)
    survivors, dropped = rnd.run_until_unmask(drop_before_mask={9})
    result, m = rnd.finish(survivors, dropped, repliers=[5, 7, 8])
    assert (survivors, dropped, m) == ([5, 6, 7, 8], [9], 4)
    _assert_close_to_sum(result, _clipped_sum(rnd.vectors, [5, 6, 7, 8], 2.0), 4, config)


def test_site_missing_public_keys_is_out_of_the_round() -> None:
    server = SecAggServer(CONFIG, [1, 2, 3], SHAPES)
    keys = {i: SecAggClient.start(CONFIG, i, "r")[1] for i in (1, 3)}
    assert sorted(server.collect_public_keys(keys)) == [1, 3]


def test_fewer_survivors_than_threshold_is_refused() -> None:
    config = SecAggConfig(threshold=3, clipping_range=2.0, quantization_bits=22, modulus_bits=32)
    rnd = Round(config, [1, 2, 3, 4])
    with pytest.raises(SecureAggregationError, match="fewer than the threshold 3"):
        rnd.run_until_unmask(drop_before_mask={2, 3})
    with pytest.raises(SecureAggregationError, match="fewer than the threshold 3"):
        rnd.clients[1].unmask([1, 4], [2, 3])  # a client refuses too, whatever the server claims


def test_too_few_unmask_replies_is_refused() -> None:
    config = SecAggConfig(threshold=3, clipping_range=2.0, quantization_bits=22, modulus_bits=32)
    rnd = Round(config, [1, 2, 3, 4])
    survivors, dropped = rnd.run_until_unmask()
    with pytest.raises(SecureAggregationError, match="fewer than the threshold 3"):
        rnd.finish(survivors, dropped, repliers=[1, 2])


def test_client_refuses_both_shares_of_one_node_and_a_second_request() -> None:
    rnd = Round(SecAggConfig(threshold=2, clipping_range=2.0, quantization_bits=22, modulus_bits=32), [1, 2, 3])
    rnd.run_until_unmask()
    client = rnd.clients[1]
    with pytest.raises(SecureAggregationError, match="both as survivors and as dropped"):
        client.unmask([1, 2, 3], [3])
    with pytest.raises(SecureAggregationError, match="listed twice"):
        client.unmask([1, 2, 3, 3], [])
    with pytest.raises(SecureAggregationError, match="not listed as a survivor"):
        client.unmask([2, 3], [1])
    assert sorted(client.unmask([1, 2], [3])) == [1, 2, 3]
    with pytest.raises(SecureAggregationError, match="already answered"):
        SecAggClient.from_bytes(client.to_bytes()).unmask([1, 2, 3], [])


def test_client_masks_only_once() -> None:
    rnd = Round(CONFIG, [1, 2, 3])
    rnd.run_until_unmask()
    with pytest.raises(SecureAggregationError, match="cannot mask at stage 'masked'"):
        rnd.clients[1].mask(rnd.vectors[1])


def test_masked_vector_hides_input_and_masks_cancel_only_in_the_sum() -> None:
    # Prepare: all-zero inputs quantize to exactly 2**21, so any unmasked value would stand out.
    ids = [1, 2, 3]
    server = SecAggServer(CONFIG, ids, [(20_000,)])
    clients, keys = {}, {}
    for i in ids:
        clients[i], keys[i] = SecAggClient.start(CONFIG, i, "r")
    broadcast = server.collect_public_keys(keys)
    routed = server.route_shares({i: clients[i].share_keys(broadcast) for i in ids})
    for i in ids:
        clients[i].receive_shares(routed[i])
    # Execute
    masked = {i: clients[i].mask([np.zeros(20_000)])[0] for i in ids}
    # Assert
    modulus = 2.0**CONFIG.modulus_bits
    for single in (masked[1], (masked[1] + masked[2]) % 2**32):  # one vector, or a partial sum
        assert np.mean(single == 2**21) < 0.001
        assert abs(np.mean(single / modulus) - 0.5) < 0.01
    survivors, dropped = server.collect_masked({i: [vector] for i, vector in masked.items()})
    result, m = server.aggregate({i: clients[i].unmask(survivors, dropped) for i in ids})
    assert m == 3 and np.all(result[0] == 0.0)


def test_tampered_or_misrouted_ciphertext_is_refused() -> None:
    ids = [1, 2, 3]
    clients, keys = {}, {}
    for i in ids:
        clients[i], keys[i] = SecAggClient.start(CONFIG, i, "r")
    sent = {i: clients[i].share_keys(keys) for i in ids}
    tampered = bytearray(sent[2][1])
    tampered[-5] ^= 1
    restored = clients[1].to_bytes()
    with pytest.raises(SecureAggregationError, match="failed authentication"):
        clients[1].receive_shares({2: bytes(tampered), 3: sent[3][1]})
    with pytest.raises(SecureAggregationError, match="failed authentication"):
        SecAggClient.from_bytes(restored).receive_shares({2: sent[2][3], 3: sent[3][1]})  # meant for node 3


def test_client_refuses_duplicate_keys_and_a_list_without_its_own() -> None:
    client, own = SecAggClient.start(CONFIG, 1, "r")
    other = SecAggClient.start(CONFIG, 2, "r")[1]
    with pytest.raises(SecureAggregationError, match="identical"):
        client.share_keys({1: own, 2: other, 3: other})
    with pytest.raises(SecureAggregationError, match="own public keys"):
        client.share_keys({1: other, 2: own})
    with pytest.raises(SecureAggregationError, match="fewer than the threshold"):
        client.share_keys({1: own})


@pytest.mark.parametrize(
    ("drop", "target", "message"),
    [((), 2, "out of range|do not combine"), ({3}, 3, "does not match its public key|do not combine")],
)
def test_corrupted_share_is_detected(drop: set[int], target: int, message: str) -> None:
    # A wrong seed b leaves uniform noise (caught by the range check); a wrong masking key fails its public key.
    rnd = Round(SecAggConfig(threshold=3, clipping_range=2.0, quantization_bits=22, modulus_bits=32), [1, 2, 3, 4])
    survivors, dropped = rnd.run_until_unmask(drop_before_mask=drop)
    shares = {i: rnd.clients[i].unmask(survivors, dropped) for i in survivors}
    share = bytearray(shares[1][target])
    share[10] ^= 0xFF  # inside the first 16-byte chunk, so the padding still checks out
    shares[1][target] = bytes(share)
    with pytest.raises(SecureAggregationError, match=message):
        rnd.server.aggregate(shares)


def test_server_refuses_stages_out_of_order_and_wrong_shapes() -> None:
    with pytest.raises(SecureAggregationError, match="call the stages in order"):
        SecAggServer(CONFIG, [1, 2, 3], SHAPES).aggregate({})
    other = SecAggServer(CONFIG, [1, 2, 3], [(3,)])
    other.collect_public_keys({i: SecAggClient.start(CONFIG, i, "r")[1] for i in (1, 2, 3)})
    other.route_shares({1: {2: b"", 3: b""}, 2: {1: b"", 3: b""}, 3: {1: b"", 2: b""}})
    with pytest.raises(SecureAggregationError, match="wrong shape"):
        other.collect_masked({1: [np.zeros(4, np.uint64)], 2: [np.zeros(3, np.uint64)]})


def test_non_finite_input_is_refused_without_echoing_it() -> None:
    client, keys = {}, {}
    for i in (1, 2):
        client[i], keys[i] = SecAggClient.start(CONFIG, i, "r")
    sent = {i: client[i].share_keys(keys) for i in (1, 2)}
    client[1].receive_shares({2: sent[2][1]})
    with pytest.raises(SecureAggregationError, match="NaN or infinite") as info:
        client[1].mask([np.array([1.2345678, np.nan])])
    assert "1.234" not in str(info.value)


def test_unreadable_state_is_a_clear_error() -> None:
    with pytest.raises(SecureAggregationError, match="unreadable"):
        SecAggClient.from_bytes(b"{not json")
    with pytest.raises(SecureAggregationError, match="unreadable"):
        SecAggClient.from_bytes(b'{"format": "something-else/1"}')


@pytest.mark.parametrize(
    ("kwargs", "n", "message"),
    [
        ({"threshold": 1}, 3, "threshold must be an integer >= 2"),
        ({"threshold": 4}, 3, "exceeds the number of participants"),
        ({"threshold": 5}, 10, "more than half the participants"),
        ({"clipping_range": 0.0}, 3, "clipping_range must be a positive number"),
        ({"clipping_range": float("nan")}, 3, "clipping_range must be a positive number"),
        ({"quantization_bits": 0}, 3, "quantization_bits must be an integer"),
        ({"quantization_bits": 60, "modulus_bits": 64}, 3, "quantization_bits must be an integer"),
        ({"modulus_bits": 65}, 3, "at most 64"),
        ({"modulus_bits": 22}, 3, "above quantization_bits"),
        ({"threshold": 6, "modulus_bits": 26}, 10, "use modulus_bits >= 27"),
    ],
)
def test_config_validation(kwargs: dict[str, float], n: int, message: str) -> None:
    values = {"threshold": 2, "clipping_range": 2.0, "quantization_bits": 22, "modulus_bits": 32} | kwargs
    with pytest.raises(ConfigError, match=message):
        SecAggConfig(**values).validate(n)  # type: ignore[arg-type]


def test_config_at_the_modulus_limit_is_accepted_and_sums_without_wrapping() -> None:
    # 3 values of at most 2**22 need 22 + 2 + 1 = 25 bits; all inputs at +c hit the top of the range.
    config = SecAggConfig(threshold=2, clipping_range=1.0, quantization_bits=22, modulus_bits=25)
    rnd = Round(config, [1, 2, 3])
    rnd.vectors = {i: [np.full(shape, 5.0) for shape in SHAPES] for i in rnd.ids}
    survivors, dropped = rnd.run_until_unmask()
    result, _ = rnd.finish(survivors, dropped, survivors)
    assert all(np.allclose(r, 3.0) for r in result)
