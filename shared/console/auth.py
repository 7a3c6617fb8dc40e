"""How a console caller proves who it is: a bearer token in the call metadata, mapped to a role.

Tokens are random secrets handed to each caller; the server keeps only their SHA-256 (server.console.tokens),
so a leaked token file grants nothing. Roles are ordered: an admin may do everything a viewer may.
"""

from __future__ import annotations

__all__ = ["ADMIN", "METADATA_KEY", "ROLES", "VIEWER", "bearer", "token_from_metadata"]

METADATA_KEY = "authorization"
VIEWER = "viewer"
ADMIN = "admin"
# Ordered by power: a role may call every method that needs a role at or below it.
ROLES = (VIEWER, ADMIN)
_SCHEME = "Bearer "


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """The call metadata carrying ``token``."""
    return ((METADATA_KEY, _SCHEME + token),)


def token_from_metadata(metadata: object) -> str | None:
    """The bearer token in gRPC invocation metadata (pairs of key and value), or None."""
    for key, value in metadata or ():  # type: ignore[attr-defined]
        if key == METADATA_KEY and isinstance(value, str) and value.startswith(_SCHEME):
            token = value[len(_SCHEME):].strip()
            return token or None
    return None
