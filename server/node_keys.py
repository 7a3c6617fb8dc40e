"""SuperNode authentication keys: the key pair a site's SuperNode proves itself with to the SuperLink.

Flower's node authentication (``flower-superlink --enable-supernode-auth``) admits only SuperNodes whose
public key the coordinator registered (``flwr supernode register KEY.pub``). The keys are ECDSA on a NIST
curve in OpenSSH format. A site makes its own pair on its own machine and sends only the ``.pub``: the private
key never leaves the site.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.atomic import atomic_write_bytes
from shared.errors import ConfigError

__all__ = ["NodeKey", "make_supernode_key"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class NodeKey:
    private: Path
    public: Path


def make_supernode_key(out_dir: Path, name: str, *, force: bool = False) -> NodeKey:
    """Write ``supernode-NAME.key`` (OpenSSH private key, 0600) and ``supernode-NAME.key.pub`` into ``out_dir``."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"SuperNode name {name!r}: use 1 to 64 letters, digits, '.', '_' or '-', starting with a "
                          "letter or digit")
    key = NodeKey(out_dir / f"supernode-{name}.key", out_dir / f"supernode-{name}.key.pub")
    if not force:
        for path in (key.private, key.public):
            if path.exists():
                raise ConfigError(f"{path} already exists; pass --force to replace it (then register the new "
                                  "public key with the SuperLink again), or choose another folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    private = ec.generate_private_key(ec.SECP384R1())
    atomic_write_bytes(key.private, private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()), mode=0o600)
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    atomic_write_bytes(key.public, public + f" fedsynth-supernode-{name}\n".encode(), mode=0o644)
    return key
