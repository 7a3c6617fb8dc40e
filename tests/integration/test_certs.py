"""Tests for server.certs and the TLS half of shared.console.transport: real files, real gRPC handshakes.

The servers run gRPC's standard Health service on port 0 (the kernel picks a free port); every call has a
timeout, so a broken handshake fails the test instead of hanging it.
"""

from __future__ import annotations

import argparse
import ipaddress
import stat
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from server.certs import add_certs_arguments, make_consortium_certs, run_certs
from shared.console.transport import TLSFiles, open_channel, server_credentials
from shared.errors import ConfigError

CALL_TIMEOUT_S = 5.0
HOSTS = ("localhost", "127.0.0.1", "::1")


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- Files, extensions, reuse -------------------------------------------------------------------------


def test_writes_a_ca_server_and_clients_with_private_keys_0600(tmp_path: Path) -> None:
    out = tmp_path / "certs"

    written = make_consortium_certs(out, HOSTS, clients=["dashboard", "site.a_1"])

    assert written.ca_created
    assert sorted(p.name for p in out.iterdir()) == [
        "ca.crt", "ca.key", "client-dashboard.crt", "client-dashboard.key", "client-site.a_1.crt",
        "client-site.a_1.key", "server.crt", "server.key",
    ]
    assert _mode(out) == 0o700
    for key in out.glob("*.key"):
        assert _mode(key) == 0o600, key
    for cert in out.glob("*.crt"):
        assert _mode(cert) == 0o644, cert
    assert written.server is not None and written.server.cert == out / "server.crt"
    assert set(written.clients) == {"dashboard", "site.a_1"}


def test_certificates_carry_the_right_extensions(tmp_path: Path) -> None:
    written = make_consortium_certs(tmp_path, ["console.example.org", *HOSTS], clients=["dashboard"])
    ca, server = _load(written.ca.cert), _load(tmp_path / "server.crt")
    client = _load(tmp_path / "client-dashboard.crt")

    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["console.example.org", "localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert list(server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dashboard"
    for leaf in (server, client):
        leaf.verify_directly_issued_by(ca)
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_reuses_the_ca_to_add_a_client_later(tmp_path: Path) -> None:
    first = make_consortium_certs(tmp_path, HOSTS)
    ca_before = first.ca.cert.read_bytes(), first.ca.key.read_bytes()

    second = make_consortium_certs(tmp_path, [], clients=["late-site"])

    assert not second.ca_created and second.server is None
    assert (first.ca.cert.read_bytes(), first.ca.key.read_bytes()) == ca_before
    _load(tmp_path / "client-late-site.crt").verify_directly_issued_by(_load(first.ca.cert))


def test_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    make_consortium_certs(tmp_path, HOSTS)
    server_before = (tmp_path / "server.crt").read_bytes()

    with pytest.raises(ConfigError, match=r"server.crt already exists; pass --force"):
        make_consortium_certs(tmp_path, HOSTS, clients=["new"])
    assert not (tmp_path / "client-new.crt").exists()  # a refused run writes nothing

    make_consortium_certs(tmp_path, HOSTS, force=True)
    assert (tmp_path / "server.crt").read_bytes() != server_before


@pytest.mark.parametrize(
    ("hosts", "clients", "match"),
    [
        (HOSTS, ["../evil"], r"--client '../evil': a client name has 1 to 64 letters"),
        (HOSTS, ["a b"], r"--client 'a b'"),
        (["0.0.0.0"], [], r"--hosts: 0.0.0.0 is a wildcard listening address"),
        (["bad host"], [], r"--hosts: 'bad host' is neither an IP address nor a host name"),
    ],
)
def test_bad_names_are_refused_before_anything_is_written(
    tmp_path: Path, hosts: tuple[str, ...], clients: list[str], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        make_consortium_certs(tmp_path / "out", hosts, clients)
    assert not (tmp_path / "out").exists()


def test_half_a_ca_is_an_error(tmp_path: Path) -> None:
    make_consortium_certs(tmp_path, HOSTS)
    (tmp_path / "ca.crt").unlink()
    with pytest.raises(ConfigError, match=r"ca.key exists but .*ca.crt does not"):
        make_consortium_certs(tmp_path, [], clients=["x"])


def test_cli_defaults_to_loopback_hosts_then_keeps_the_server_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    add_certs_arguments(parser)

    assert run_certs(parser.parse_args([str(tmp_path), "--client", "dashboard"])) == 0
    printed = capsys.readouterr().out
    assert f"--tls-cert {tmp_path / 'server.crt'} --tls-key {tmp_path / 'server.key'}" in printed
    assert f"--tls-ca {tmp_path / 'ca.crt'}" in printed and "client-dashboard.crt" in printed
    server_before = (tmp_path / "server.crt").read_bytes()

    assert run_certs(parser.parse_args([str(tmp_path), "--client", "site-b", "--days", "30"])) == 0
    assert "reused CA" in capsys.readouterr().out
    assert (tmp_path / "server.crt").read_bytes() == server_before
    assert (tmp_path / "client-site-b.crt").exists()


def test_a_key_from_another_certificate_is_named(tmp_path: Path) -> None:
    make_consortium_certs(tmp_path, HOSTS, clients=["a"])
    with pytest.raises(ConfigError, match=r"--tls-key .*client-a.key does not belong to --tls-cert .*server.crt"):
        server_credentials(TLSFiles(cert=tmp_path / "server.crt", key=tmp_path / "client-a.key"))


def test_a_broken_key_is_reported_without_its_content(tmp_path: Path) -> None:
    make_consortium_certs(tmp_path, HOSTS)
    body = "c2VjcmV0LWtleS1tYXRlcmlhbA=="
    (tmp_path / "server.key").write_text(f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="is not an unencrypted PEM private key") as info:
        server_credentials(TLSFiles(cert=tmp_path / "server.crt", key=tmp_path / "server.key"))
    assert body not in str(info.value)


# ---- Real TLS handshakes ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    make_consortium_certs(out, HOSTS, clients=["dashboard"])
    return out


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("other")
    make_consortium_certs(out, HOSTS, clients=["intruder"])
    return out


@contextmanager
def _health_server(credentials: grpc.ServerCredentials | None) -> Iterator[int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    assert port != 0
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


def _check(address: str, tls: TLSFiles | None, *, insecure: bool = False) -> int:
    with open_channel(address, tls, insecure) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)
    return int(reply.status)


def _refusal(address: str, tls: TLSFiles) -> tuple[grpc.StatusCode, str]:
    """The status code and details of a call that must fail."""
    with pytest.raises(grpc.RpcError) as info:
        _check(address, tls)
    return info.value.code(), info.value.details()  # type: ignore[attr-defined]


def test_tls_with_the_ca_verifies_by_ip_and_by_name(certs: Path) -> None:
    credentials = server_credentials(TLSFiles(cert=certs / "server.crt", key=certs / "server.key"))
    with _health_server(credentials) as port:
        for address in (f"127.0.0.1:{port}", f"localhost:{port}"):
            assert _check(address, TLSFiles(ca=certs / "ca.crt")) == health_pb2.HealthCheckResponse.SERVING


def test_a_client_trusting_another_ca_is_refused(certs: Path, other_ca: Path) -> None:
    credentials = server_credentials(TLSFiles(cert=certs / "server.crt", key=certs / "server.key"))
    with _health_server(credentials) as port:
        code, details = _refusal(f"127.0.0.1:{port}", TLSFiles(ca=other_ca / "ca.crt"))
    assert code == grpc.StatusCode.UNAVAILABLE and "CERTIFICATE_VERIFY_FAILED" in details


def test_an_address_missing_from_the_sans_is_refused(tmp_path: Path) -> None:
    make_consortium_certs(tmp_path, ["localhost"])  # no IP address SAN
    credentials = server_credentials(TLSFiles(cert=tmp_path / "server.crt", key=tmp_path / "server.key"))
    with _health_server(credentials) as port:
        code, details = _refusal(f"127.0.0.1:{port}", TLSFiles(ca=tmp_path / "ca.crt"))
    assert code == grpc.StatusCode.UNAVAILABLE and "Hostname Verification" in details


def test_mutual_tls_needs_a_client_certificate_from_the_ca(certs: Path, other_ca: Path) -> None:
    credentials = server_credentials(
        TLSFiles(cert=certs / "server.crt", key=certs / "server.key", ca=certs / "ca.crt")
    )
    with _health_server(credentials) as port:
        address = f"127.0.0.1:{port}"
        # The client only sees the server close the socket; the dashboard's success below shows why.
        assert _refusal(address, TLSFiles(ca=certs / "ca.crt"))[0] == grpc.StatusCode.UNAVAILABLE
        intruder = TLSFiles(
            cert=other_ca / "client-intruder.crt", key=other_ca / "client-intruder.key", ca=certs / "ca.crt"
        )
        assert _refusal(address, intruder)[0] == grpc.StatusCode.UNAVAILABLE
        dashboard = TLSFiles(
            cert=certs / "client-dashboard.crt", key=certs / "client-dashboard.key", ca=certs / "ca.crt"
        )
        assert _check(address, dashboard) == health_pb2.HealthCheckResponse.SERVING


def test_plaintext_on_loopback_works() -> None:
    with _health_server(None) as port:
        assert _check(f"127.0.0.1:{port}", None, insecure=True) == health_pb2.HealthCheckResponse.SERVING
