"""The console over real gRPC channels (TLS, tokens) on free loopback ports, driven by a real RunMonitor.

The round loop here is the monitor's own API fed with rounds.json records written by the real consortium
ledger; the full ServerApp path is covered by tests/integration/test_federated_run.py and test_console_stop.py.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from server.certs import make_consortium_certs
from server.console.server import ConsoleServer
from server.console.tokens import add_token
from shared.console.auth import bearer
from shared.console.transport import TLSFiles, open_channel
from shared.console.v1 import console_pb2 as pb
from shared.console.v1 import console_pb2_grpc as pb_grpc
from shared.errors import ConfigError
from shared.manifest import load_or_create_signing_key, verify_output, write_signed_manifest
from tests.integration.console_driver import ROUNDS, Federation


@pytest.fixture()
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pki")
    make_consortium_certs(root, ["localhost", "127.0.0.1"], clients=["dash"])
    return root


@pytest.fixture()
def tokens(tmp_path: Path) -> dict[str, str | Path]:
    path = tmp_path / "tokens.json"
    return {"path": path, "admin": add_token(path, "alice", "admin"), "viewer": add_token(path, "bob", "viewer")}


@pytest.fixture()
def live(tmp_path: Path, pki: Path, tokens: dict[str, str | Path]) -> Iterator[tuple[Federation, pb_grpc.ConsoleStub]]:
    federation = Federation(tmp_path)
    server = ConsoleServer(federation.monitor, address="127.0.0.1:0", tokens=Path(tokens["path"]),
                           tls=TLSFiles(cert=pki / "server.crt", key=pki / "server.key")).start()
    channel = open_channel(server.address, TLSFiles(ca=pki / "ca.crt"), insecure=False)
    try:
        yield federation, pb_grpc.ConsoleStub(channel)
    finally:
        channel.close()
        server.stop(grace=0.5)


def _kinds(events: list[pb.RunEvent]) -> list[str]:
    return [str(e.WhichOneof("kind")) for e in events]


def test_get_run_shows_plan_budget_status_and_eta(live: tuple[Federation, pb_grpc.ConsoleStub],
                                                  tokens: dict[str, str]) -> None:
    federation, stub = live
    federation.round(1)

    run = stub.GetRun(pb.GetRunRequest(), metadata=bearer(tokens["viewer"]), timeout=5)

    assert run.run_id == "run-console" and run.status == pb.RUN_STATUS_TRAINING and not run.read_only
    assert (run.planned_rounds, run.completed_rounds) == (ROUNDS, 1)
    assert json.loads(run.plan_json)["noise_multiplier"] == 1.2 and run.config["num-rounds"] == str(ROUNDS)
    assert [(b.level, b.target_epsilon, b.accountant) for b in run.budgets] == [("record", 3.0, "rdp")]
    assert run.eta_seconds == pytest.approx(1.5 * (ROUNDS - 1), rel=0.01)


def test_late_watcher_gets_the_history_then_live_events(live: tuple[Federation, pb_grpc.ConsoleStub],
                                                        tokens: dict[str, str]) -> None:
    federation, stub = live
    federation.round(1)
    federation.round(2)
    stream = stub.WatchRun(pb.WatchRunRequest(), metadata=bearer(tokens["viewer"]), timeout=20)

    history = [next(stream) for _ in range(7)]
    federation.round(3)
    live_events = [next(stream), next(stream)]

    assert _kinds(history) == ["run_started", "phase_changed", "round_started", "round_finished",
                               "round_started", "round_finished", "history_end"]
    assert [e.sequence for e in history[:-1]] == [1, 2, 3, 4, 5, 6] and history[-1].history_end.events == 6
    assert _kinds(live_events) == ["round_started", "round_finished"] and live_events[1].sequence == 8
    second = history[5].round_finished
    statuses = {s.site: (s.status, s.reason) for s in second.sites}
    assert statuses["site-b"] == (pb.SITE_STATUS_REFUSED, "parameter 'w' holds non-finite values")
    assert statuses["node-7"][0] == pb.SITE_STATUS_DROPPED
    assert second.mean_noisy_loss == pytest.approx(8.0) and second.duration_seconds == pytest.approx(1.5)
    # The epsilon the event shows is the ledger's, against the budget.
    spent = {(e.site, e.level): (e.spent, e.budget) for e in second.epsilon}
    after_round_2 = federation.ledger.ledger.entries_for("site-a", "record")[1].epsilon
    assert spent[("site-a", "record")] == (pytest.approx(after_round_2), 3.0)
    stream.cancel()


def test_history_only_closes_after_the_marker(live: tuple[Federation, pb_grpc.ConsoleStub],
                                              tokens: dict[str, str]) -> None:
    federation, stub = live
    federation.round(1)
    events = list(stub.WatchRun(pb.WatchRunRequest(history_only=True), metadata=bearer(tokens["viewer"]), timeout=5))
    assert _kinds(events)[-1] == "history_end" and len(events) == 5


def test_list_sites_and_ledger(live: tuple[Federation, pb_grpc.ConsoleStub], tokens: dict[str, str]) -> None:
    federation, stub = live
    federation.round(1)
    federation.round(2)

    sites = {s.name: s for s in stub.ListSites(pb.ListSitesRequest(), metadata=bearer(tokens["viewer"]), timeout=5).sites}
    ledger = stub.GetLedger(pb.GetLedgerRequest(), metadata=bearer(tokens["viewer"]), timeout=5)

    assert set(sites) == {"site-a", "site-b", "node-7"}
    assert sites["site-a"].rounds_participated == 2 and sites["site-a"].status == pb.SITE_STATUS_UPDATED
    assert sites["site-b"].rounds_participated == 1 and sites["site-b"].status == pb.SITE_STATUS_REFUSED
    assert sites["site-a"].last_reply_seconds == 0.5 and sites["site-a"].last_seen.seconds > 0
    assert sites["node-7"].status == pb.SITE_STATUS_DROPPED and not sites["node-7"].HasField("last_reply_seconds")
    document = (federation.monitor.run_dir / "ledger.json").read_bytes()
    assert ledger.document.encode() == document and ledger.sha256 == hashlib.sha256(document).hexdigest()
    assert [(e.site, e.round) for e in ledger.entries] == [("site-a", 1), ("site-b", 1), ("site-a", 2)]
    assert {(s.site, s.spent) for s in ledger.spent} == {
        ("site-a", ledger.entries[2].epsilon), ("site-b", ledger.entries[1].epsilon)}


def test_synthetic_table_streams_after_publication_and_matches_the_signed_manifest(
    live: tuple[Federation, pb_grpc.ConsoleStub], tokens: dict[str, str], tmp_path: Path
) -> None:
    federation, stub = live
    with pytest.raises(grpc.RpcError) as early:
        list(stub.StreamSynthetic(pb.StreamSyntheticRequest(), metadata=bearer(tokens["viewer"]), timeout=5))
    assert early.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "not published" in early.value.details()

    run_dir = federation.monitor.run_dir
    (run_dir / "synthetic.csv").write_text("age,sex\n" + "".join(f"{20 + i % 50},F\n" for i in range(20_000)))
    key = load_or_create_signing_key(tmp_path.parent / f"{tmp_path.name}-key.pem", forbidden_dir=run_dir)
    write_signed_manifest(run_dir, {"rows": 20_000, "run_id": "run-console"}, ["synthetic.csv"], key)

    chunks = list(stub.StreamSynthetic(pb.StreamSyntheticRequest(chunk_bytes=4096),
                                       metadata=bearer(tokens["viewer"]), timeout=10))

    header = chunks[0].header
    data = b"".join(c.data for c in chunks)
    assert len(chunks) > 10 and all(not c.HasField("header") for c in chunks[1:])
    assert [c.offset for c in chunks] == [sum(len(x.data) for x in chunks[:i]) for i in range(len(chunks))]
    assert hashlib.sha256(data).hexdigest() == header.sha256 and header.size_bytes == len(data)
    assert list(header.columns) == ["age", "sex"] and header.rows == 20_000
    # What arrived verifies against the signature that came with it.
    received = tmp_path / "received"
    received.mkdir()
    (received / "synthetic.csv").write_bytes(data)
    (received / "manifest.json").write_text(header.manifest_json)
    (received / "manifest.json.sig").write_text(header.manifest_signature + "\n")
    assert verify_output(received).files_checked == ("synthetic.csv",)


def test_tokens_and_roles(live: tuple[Federation, pb_grpc.ConsoleStub], tokens: dict[str, str]) -> None:
    federation, stub = live
    calls = {
        "GetRun": lambda md: stub.GetRun(pb.GetRunRequest(), metadata=md, timeout=5),
        "ListSites": lambda md: stub.ListSites(pb.ListSitesRequest(), metadata=md, timeout=5),
        "GetLedger": lambda md: stub.GetLedger(pb.GetLedgerRequest(), metadata=md, timeout=5),
        "WatchRun": lambda md: list(stub.WatchRun(pb.WatchRunRequest(history_only=True), metadata=md, timeout=5)),
        "StreamSynthetic": lambda md: list(stub.StreamSynthetic(pb.StreamSyntheticRequest(), metadata=md, timeout=5)),
        "StopRun": lambda md: stub.StopRun(pb.StopRunRequest(reason="test"), metadata=md, timeout=5),
    }
    for name, call in calls.items():
        for metadata, code in ((None, grpc.StatusCode.UNAUTHENTICATED),
                               (bearer("not-a-token"), grpc.StatusCode.UNAUTHENTICATED),
                               ((("authorization", "Basic abc"),), grpc.StatusCode.UNAUTHENTICATED)):
            with pytest.raises(grpc.RpcError) as refused:
                call(metadata)
            assert refused.value.code() == code, name
    with pytest.raises(grpc.RpcError) as viewer:
        calls["StopRun"](bearer(tokens["viewer"]))
    assert viewer.value.code() == grpc.StatusCode.PERMISSION_DENIED and "admin" in viewer.value.details()
    assert federation.monitor.stop_reason() is None

    reply = calls["StopRun"](bearer(tokens["admin"]))

    assert reply.accepted and federation.monitor.stop_reason() == "stop requested: test"
    assert not calls["StopRun"](bearer(tokens["admin"])).accepted  # once is enough
    assert stub.GetRun(pb.GetRunRequest(), metadata=bearer(tokens["viewer"]), timeout=5).stop_requested


def test_mutual_tls_and_plaintext_rules(tmp_path: Path, pki: Path, tokens: dict[str, str | Path]) -> None:
    federation = Federation(tmp_path)
    mutual = TLSFiles(cert=pki / "server.crt", key=pki / "server.key", ca=pki / "ca.crt")
    with ConsoleServer(federation.monitor, address="127.0.0.1:0", tokens=Path(tokens["path"]), tls=mutual) as server:
        anonymous = pb_grpc.ConsoleStub(open_channel(server.address, TLSFiles(ca=pki / "ca.crt"), insecure=False))
        with pytest.raises(grpc.RpcError) as refused:
            anonymous.GetRun(pb.GetRunRequest(), metadata=bearer(str(tokens["viewer"])), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        client = TLSFiles(cert=pki / "client-dash.crt", key=pki / "client-dash.key", ca=pki / "ca.crt")
        stub = pb_grpc.ConsoleStub(open_channel(server.address, client, insecure=False))
        assert stub.GetRun(pb.GetRunRequest(), metadata=bearer(str(tokens["viewer"])), timeout=5).run_id
    for address in ("0.0.0.0:0", "192.0.2.1:0", "example.org:0"):
        with pytest.raises(ConfigError, match="loopback"):
            ConsoleServer(federation.monitor, address=address, tokens=Path(tokens["path"]), tls=None, insecure=True)
    with pytest.raises(ConfigError, match="TLS"):
        ConsoleServer(federation.monitor, address="127.0.0.1:0", tokens=Path(tokens["path"]), tls=None)


def _watch(stub: pb_grpc.ConsoleStub, token: str, joined: threading.Barrier, seen: list[int]) -> None:
    """Follow the run to its end, recording sequence numbers; meet the others once the history is in."""
    for event in stub.WatchRun(pb.WatchRunRequest(), metadata=bearer(token), timeout=60):
        if event.HasField("history_end"):
            joined.wait(timeout=30)
        else:
            seen.append(event.sequence)


def test_fifty_watchers_each_get_every_event_while_the_round_loop_runs(
    live: tuple[Federation, pb_grpc.ConsoleStub], tokens: dict[str, str]
) -> None:
    federation, stub = live
    federation.round(1)
    watchers = 50
    joined = threading.Barrier(watchers + 1)
    seen: list[list[int]] = [[] for _ in range(watchers)]
    threads = [threading.Thread(target=_watch, args=(stub, tokens["viewer"], joined, seen[i]), daemon=True)
               for i in range(watchers)]
    # A watcher that opens its stream and never reads: the round loop must not wait for it.
    stalled = stub.WatchRun(pb.WatchRunRequest(), metadata=bearer(tokens["viewer"]), timeout=60)
    for thread in threads:
        thread.start()
    joined.wait(timeout=30)

    for number in range(2, ROUNDS + 1):
        federation.round(number)
    federation.monitor.ended(pb.RUN_STATUS_FINISHED, "done")
    for thread in threads:
        thread.join(timeout=30)

    total = len(federation.monitor.log.snapshot())
    assert all(s == list(range(1, total + 1)) for s in seen), [len(s) for s in seen]
    assert not any(thread.is_alive() for thread in threads)
    stalled.cancel()
