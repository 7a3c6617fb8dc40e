"""The console's callers: one random token each, with a role; the file keeps only the tokens' SHA-256.

The file (JSON, mode 0600)::

    {"format": "fedsynth-console-tokens/1",
     "tokens": [{"name": "alice", "role": "admin", "sha256": "<hex>"}, ...]}

``fedsynth console token add FILE NAME --role viewer`` makes a token, prints it once and stores its hash:
the server never holds a usable token, and a copied file grants nothing. A token is 32 random bytes, so a
plain SHA-256 is as strong as a slow password hash would be.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from shared.atomic import atomic_write_bytes
from shared.console.auth import ROLES
from shared.errors import ConfigError

__all__ = ["FORMAT", "Caller", "TokenStore", "add_token"]

FORMAT = "fedsynth-console-tokens/1"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Caller:
    """Who made a call, once their token matched."""

    name: str
    role: str


@dataclass(frozen=True)
class _Entry:
    name: str
    role: str
    digest: bytes


class TokenStore:
    """The known callers; ``caller(token)`` compares digests in constant time."""

    def __init__(self, entries: tuple[_Entry, ...], path: Path | None = None) -> None:
        self._entries, self.path = entries, path

    @classmethod
    def load(cls, path: Path) -> TokenStore:
        where = f"console tokens file {path}"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{where} does not exist; make one with 'fedsynth console token add {path} NAME'") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{where} is unreadable ({type(exc).__name__}); recreate it with 'fedsynth console token add'") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("tokens"), list):
            raise ConfigError(f"{where} is not a {FORMAT} file")
        entries = tuple(_parse(item, f"{where}, token {i + 1}") for i, item in enumerate(data["tokens"]))
        if not entries:
            raise ConfigError(f"{where} holds no token: nobody could call the console; add one with 'fedsynth console token add'")
        return cls(entries, path)

    def caller(self, token: str) -> Caller | None:
        digest = _digest(token)
        found = None
        for entry in self._entries:  # every entry is compared, so the time says nothing about which matched
            if hmac.compare_digest(entry.digest, digest):
                found = Caller(entry.name, entry.role)
        return found

    def names(self) -> list[str]:
        return [entry.name for entry in self._entries]


def add_token(path: Path, name: str, role: str) -> str:
    """Append a new caller to the tokens file (created if missing) and return their token, the only copy."""
    if not _NAME.match(name):
        raise ConfigError(f"token name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if role not in ROLES:
        raise ConfigError(f"role {role!r}: must be one of {', '.join(ROLES)}")
    existing = list(TokenStore.load(path)._entries) if path.exists() else []
    if any(entry.name == name for entry in existing):
        raise ConfigError(f"{path} already has a token named {name!r}; pick another name or edit the file to revoke it")
    token = secrets.token_urlsafe(32)
    entries = [*existing, _Entry(name, role, _digest(token))]
    document = {"format": FORMAT, "tokens": [{"name": e.name, "role": e.role, "sha256": e.digest.hex()} for e in entries]}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(document, indent=1) + "\n").encode(), mode=0o600)
    return token


def _parse(item: object, where: str) -> _Entry:
    if not isinstance(item, dict) or set(item) != {"name", "role", "sha256"}:
        raise ConfigError(f"{where}: needs exactly the keys name, role, sha256")
    name, role, digest = item["name"], item["role"], item["sha256"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{where}: 'name' must be 1-64 letters, digits, '.', '_' or '-'")
    if role not in ROLES:
        raise ConfigError(f"{where} ({name}): 'role' must be one of {', '.join(ROLES)}")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ConfigError(f"{where} ({name}): 'sha256' must be 64 lowercase hex digits")
    return _Entry(name, role, bytes.fromhex(digest))


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()
