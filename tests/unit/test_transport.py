"""Tests for shared.console.transport: strict addresses, the loopback rule for plaintext, TLS file checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.console.transport import (
    TLSFiles,
    channel_credentials,
    check_plaintext,
    is_loopback,
    open_channel,
    server_credentials,
    split_address,
)
from shared.errors import ConfigError


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1:50051", "127.0.0.2:1", "127.255.255.254:65535", "[::1]:50051", "localhost:0", "LocalHost:80",
     "[::ffff:127.0.0.1]:80"],
)
def test_loopback_addresses(address: str) -> None:
    assert is_loopback(address)


@pytest.mark.parametrize(
    "address",
    ["0.0.0.0:50051", "[::]:50051", "10.0.0.1:50051", "8.8.8.8:443", "[2001:db8::1]:80", "[fe80::1%eth0]:80",
     "console.example.org:50051", "localhost.example.org:50051", "my_service:80", "[::ffff:10.0.0.1]:80"],
)
def test_other_addresses_are_not_loopback(address: str) -> None:
    assert not is_loopback(address)


@pytest.mark.parametrize(
    "address",
    ["", "127.0.0.1", "localhost", ":50051", "127.0.0.1:", "::1:50051", "[::1]", "[::1]50051", "[127.0.0.1]:80",
     "[localhost]:80", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:123456", "http://127.0.0.1:80",
     "dns:///localhost:80", " 127.0.0.1:80", "127.0.0.1:80 ", "127.1:80", "127.000.000.001:80",
     "300.0.0.1:80", "-bad.example.org:80", "a..b:80", "host name:80", "127.0.0.1:8o"],
)
def test_malformed_addresses_name_the_form_expected(address: str) -> None:
    with pytest.raises(ConfigError, match=r"is malformed .*expected HOST:PORT"):
        is_loopback(address)


def test_split_address() -> None:
    assert split_address("[::1]:50051") == ("::1", 50051)
    assert split_address("console.example.org:443") == ("console.example.org", 443)
    assert split_address("127.0.0.1:0") == ("127.0.0.1", 0)


def test_plaintext_only_on_loopback() -> None:
    check_plaintext("127.0.0.1:50051", insecure=True, who="console server")
    check_plaintext("[::1]:50051", insecure=True, who="console server")
    check_plaintext("0.0.0.0:50051", insecure=False, who="console server")  # TLS: any address will do

    with pytest.raises(ConfigError) as info:
        check_plaintext("0.0.0.0:50051", insecure=True, who="console server")
    message = str(info.value)
    assert message.startswith("console server: plaintext is allowed only on loopback (127.0.0.1, ::1, localhost)")
    assert "0.0.0.0:50051" in message and "--tls-cert" in message and "fedsynth certs" in message


def test_open_channel_refuses_plaintext_to_another_machine() -> None:
    with pytest.raises(ConfigError, match="dashboard: plaintext is allowed only on loopback"):
        open_channel("console.example.org:50051", None, insecure=True, who="dashboard")


def test_open_channel_refuses_insecure_with_tls_files(tmp_path: Path) -> None:
    ca = _touch(tmp_path / "ca.crt")
    with pytest.raises(ConfigError, match="--insecure and --tls-\\* contradict"):
        open_channel("127.0.0.1:50051", TLSFiles(ca=ca), insecure=True)


def test_open_channel_checks_the_address_first() -> None:
    with pytest.raises(ConfigError, match="is malformed"):
        open_channel("localhost", None, insecure=False)


def test_tls_files_cert_and_key_go_together(tmp_path: Path) -> None:
    cert, key = _touch(tmp_path / "server.crt"), _touch(tmp_path / "server.key")
    with pytest.raises(ConfigError, match="--tls-cert needs --tls-key"):
        TLSFiles(cert=cert)
    with pytest.raises(ConfigError, match="--tls-key needs --tls-cert"):
        TLSFiles(key=key)
    assert TLSFiles(cert=cert, key=key).has_identity
    assert not TLSFiles().has_identity


@pytest.mark.parametrize("flag", ["cert", "key", "ca"])
def test_tls_files_must_exist(tmp_path: Path, flag: str) -> None:
    files = {"cert": _touch(tmp_path / "c.crt"), "key": _touch(tmp_path / "c.key"), "ca": _touch(tmp_path / "ca.crt")}
    files[flag] = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match=f"--tls-{flag} {tmp_path / 'missing.pem'} does not exist"):
        TLSFiles(**files)
    files[flag] = tmp_path
    with pytest.raises(ConfigError, match=f"--tls-{flag} {tmp_path} is not a file"):
        TLSFiles(**files)


def test_server_needs_a_certificate() -> None:
    with pytest.raises(ConfigError, match="pass --tls-cert and --tls-key .*fedsynth certs DIR.*--insecure"):
        server_credentials(TLSFiles())


def test_a_file_without_a_certificate_is_named(tmp_path: Path) -> None:
    cert, key = _touch(tmp_path / "c.crt"), _touch(tmp_path / "c.key")
    cert.write_text("not a certificate")
    with pytest.raises(ConfigError, match="--tls-ca .*holds no PEM certificate"):
        channel_credentials(TLSFiles(ca=cert))
    with pytest.raises(ConfigError, match="--tls-cert .*holds no PEM certificate"):
        server_credentials(TLSFiles(cert=cert, key=key))


def _touch(path: Path) -> Path:
    path.write_text("")
    return path
