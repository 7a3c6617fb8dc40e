"""The console's run-config keys: off by default, TLS unless explicitly insecure on loopback, tokens required."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.console.config import ConsoleConfig
from shared.errors import ConfigError


def test_no_address_means_no_console() -> None:
    assert ConsoleConfig.from_run_config({}) is None
    assert ConsoleConfig.from_run_config({"console.address": " "}) is None


def test_an_address_needs_a_tokens_file() -> None:
    with pytest.raises(ConfigError, match="console.tokens"):
        ConsoleConfig.from_run_config({"console.address": "127.0.0.1:5000", "console.insecure": True})


def test_tls_is_the_default_and_needs_a_certificate(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="console.tls-cert"):
        ConsoleConfig.from_run_config({"console.address": "0.0.0.0:5000", "console.tokens": str(tmp_path / "t")})
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    cert.write_text("x")
    key.write_text("y")
    config = ConsoleConfig.from_run_config({
        "console.address": "0.0.0.0:5000", "console.tokens": str(tmp_path / "t"),
        "console.tls-cert": str(cert), "console.tls-key": str(key),
    })
    assert config is not None and config.tls is not None and config.tls.cert == cert and not config.insecure


@pytest.mark.parametrize("insecure", [True, "true"])
def test_plaintext_only_on_loopback(tmp_path: Path, insecure: object) -> None:
    base = {"console.tokens": str(tmp_path / "t"), "console.insecure": insecure}
    config = ConsoleConfig.from_run_config({**base, "console.address": "127.0.0.1:5000"})
    assert config is not None and config.insecure and config.tls is None
    with pytest.raises(ConfigError, match="loopback"):
        ConsoleConfig.from_run_config({**base, "console.address": "10.0.0.5:5000"})


def test_a_mistyped_flag_is_an_error_not_a_silent_false(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="console.insecure' must be true or false"):
        ConsoleConfig.from_run_config({"console.address": "127.0.0.1:5000", "console.tokens": str(tmp_path / "t"),
                                       "console.insecure": "ture"})
