"""Where and how the live console listens, parsed once from the run config (``console.*`` keys).

``console.address`` empty (the default) means no console. TLS is the default; plaintext needs
``console.insecure = true`` and a loopback address. Every path is on the machine that runs the ServerApp.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.console.transport import TLSFiles, check_plaintext
from shared.errors import ConfigError
from shared.flags import parse_flag

__all__ = ["ConsoleConfig"]


@dataclass(frozen=True)
class ConsoleConfig:
    address: str
    tokens: Path
    tls: TLSFiles | None
    insecure: bool = False

    def __post_init__(self) -> None:
        if self.insecure:
            check_plaintext(self.address, self.insecure, "console.address")
        elif self.tls is None or self.tls.cert is None or self.tls.key is None:
            raise ConfigError(
                "console: TLS is on by default; set console.tls-cert and console.tls-key (make them with "
                "'fedsynth certs DIR --hosts HOST'), or console.insecure=true with a loopback console.address"
            )

    @classmethod
    def from_run_config(cls, rc: dict[str, Any]) -> ConsoleConfig | None:
        address = str(rc.get("console.address", "")).strip()
        if not address:
            return None
        tokens = str(rc.get("console.tokens", "")).strip()
        if not tokens:
            raise ConfigError(
                "console.address is set but console.tokens is not: every call needs a token; make the file with "
                "'fedsynth console token add FILE NAME --role admin' and set console.tokens=\"FILE\""
            )

        def path(key: str) -> Path | None:
            value = str(rc.get(key, "")).strip()
            return Path(value).expanduser().resolve() if value else None

        insecure = parse_flag(rc.get("console.insecure", False), "run config 'console.insecure'")
        tls = None if insecure else TLSFiles(cert=path("console.tls-cert"), key=path("console.tls-key"),
                                             ca=path("console.tls-ca"))
        return cls(address=address, tokens=Path(tokens).expanduser().resolve(), tls=tls, insecure=insecure)
