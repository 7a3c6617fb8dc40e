"""Signed manifests: a verifiable record of what an output directory holds and how it was made.

The server writes ``manifest.json`` (run facts supplied by the caller, plus the sha256 and size of every
published file and the signer's public key) and ``manifest.json.sig``, an Ed25519 signature over the exact
bytes of ``manifest.json``. An analyst checks a directory with :func:`verify_output`, ideally with the
coordinator's public key pinned: the key embedded in the manifest only proves the files match *some*
signer, since whoever altered the files could also re-sign them with a key of their own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.atomic import atomic_write_bytes
from shared.errors import ConfigError, VerificationError

__all__ = [
    "MANIFEST_NAME",
    "SIGNATURE_NAME",
    "VerificationReport",
    "file_digest",
    "fingerprint",
    "load_or_create_signing_key",
    "public_key_bytes",
    "verify_output",
    "write_signed_manifest",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.json.sig"
_CHUNK = 1 << 20


# Files of a signed output travel to sites as ConfigRecord entries named "file:<name>".
DELIVERY_PREFIX = "file:"

@dataclass(frozen=True)
class VerificationReport:
    """What :func:`verify_output` established. ``pinned`` is False when only the embedded key was used."""

    ok: bool
    fingerprint: str
    pinned: bool
    files_checked: tuple[str, ...]


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte Ed25519 public key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(raw_public_key: bytes) -> str:
    """sha256 hex of the raw public key (show the first 16 characters to people)."""
    return hashlib.sha256(raw_public_key).hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 hex of a file, read in chunks so large tables do not fill memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_or_create_signing_key(
    path: str | os.PathLike[str], *, forbidden_dir: str | os.PathLike[str] | None = None
) -> Ed25519PrivateKey:
    """Load the Ed25519 key at ``path``, creating it (PEM, PKCS8, mode 0600) if it does not exist.

    ``forbidden_dir`` is the directory the key will sign: a key inside it would be published with the
    data, and anyone could then forge a manifest.
    """
    target = Path(path)
    if forbidden_dir is not None and _is_inside(target, Path(forbidden_dir)):
        raise ConfigError(
            f"signing key {target} lies inside {forbidden_dir}, the directory it signs, so it would be "
            "published with the data; keep the key outside the output directory"
        )
    if not target.exists():
        _create_key_file(target)
    return _load_key(target)


def _is_inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def _create_key_file(target: Path) -> None:
    """Write a fresh key without ever exposing it and without clobbering a concurrently created one."""
    _make_private_dirs(target.parent)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, target)  # fails if another process created the key first: then we load theirs
        logger.info("created signing key %s", target)
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def _make_private_dirs(directory: Path) -> None:
    """Create missing parents with mode 0700 (explicitly, since mkdir's mode is masked by umask)."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    for created in reversed(missing):
        created.mkdir(mode=0o700, exist_ok=True)
        os.chmod(created, 0o700)


def _load_key(target: Path) -> Ed25519PrivateKey:
    mode = stat.S_IMODE(target.stat().st_mode)
    if mode & 0o077:
        logger.warning("signing key %s is readable by others (mode %o); chmod 600 it", target, mode)
    try:
        key = serialization.load_pem_private_key(target.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"signing key {target} is not an unencrypted PEM private key ({exc}); "
            "point to the right file or move it aside to create a new key"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"signing key {target} is a {type(key).__name__}, expected an Ed25519 key")
    return key


def write_signed_manifest(
    out_dir: str | os.PathLike[str],
    manifest: Mapping[str, Any],
    files: Sequence[str],
    key: Ed25519PrivateKey,
) -> Path:
    """Record ``files`` (names relative to ``out_dir``) in ``manifest``, sign it, return its path."""
    root = Path(out_dir)
    reserved = {"files", "signer"} & set(manifest)
    if reserved:
        raise ConfigError(f"manifest keys {sorted(reserved)} are filled in by the signer; remove them")
    raw_key = public_key_bytes(key)
    content = dict(manifest)
    content["files"] = {name: _describe(root, name) for name in files}
    content["signer"] = {
        "algorithm": "Ed25519",
        "public_key": base64.b64encode(raw_key).decode("ascii"),
        "fingerprint": fingerprint(raw_key),
    }
    data = _canonical(content)
    manifest_path = root / MANIFEST_NAME
    atomic_write_bytes(manifest_path, data)
    # Written second: a crash in between leaves a manifest whose signature fails, never a false pass.
    signature = base64.b64encode(key.sign(data)) + b"\n"
    atomic_write_bytes(root / SIGNATURE_NAME, signature)
    return manifest_path


def _canonical(content: Mapping[str, Any]) -> bytes:
    try:
        return (json.dumps(content, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("ascii")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"manifest content is not plain JSON data: {exc}") from exc


def _describe(root: Path, name: str) -> dict[str, Any]:
    path = _member(root, name, ConfigError)
    if name in (MANIFEST_NAME, SIGNATURE_NAME):
        raise ConfigError(f"{name} cannot list itself among the signed files")
    if not path.is_file():
        raise ConfigError(f"{name}: not a file in {root}; write it before signing the manifest")
    return {"sha256": file_digest(path), "bytes": path.stat().st_size}


def _member(root: Path, name: str, error: type[Exception]) -> Path:
    """``root / name``, refusing names that leave ``root`` (absolute, ``..``, symlinks out)."""
    if not isinstance(name, str) or not name or Path(name).is_absolute():
        raise error(f"{name!r}: listed file names must be relative to the output directory")
    path = root / name
    if not _is_inside(path, root):
        raise error(f"{name}: lies outside the output directory {root}")
    return path


def verify_output(
    out_dir: str | os.PathLike[str], *, public_key: bytes | None = None
) -> VerificationReport:
    """Check the signature of ``out_dir/manifest.json`` and every file it lists.

    With ``public_key`` (raw 32 bytes) the signature must come from that key; without it the embedded
    key is used and the report says ``pinned=False``. Raises VerificationError naming what failed.
    """
    if public_key is not None and (not isinstance(public_key, bytes) or len(public_key) != 32):
        raise ConfigError("the pinned public key must be the raw 32-byte Ed25519 key")
    root = Path(out_dir)
    data = _read_required(root / MANIFEST_NAME)
    signature = _decode_signature(_read_required(root / SIGNATURE_NAME))
    content = _parse_manifest(data)
    embedded = _embedded_key(content)
    if public_key is not None and public_key != embedded:
        raise VerificationError(
            f"{MANIFEST_NAME}: signed by key {fingerprint(embedded)[:16]}, not the pinned key "
            f"{fingerprint(public_key)[:16]}; this output does not come from the expected signer"
        )
    try:
        Ed25519PublicKey.from_public_bytes(embedded).verify(signature, data)
    except InvalidSignature as exc:
        raise VerificationError(
            f"{MANIFEST_NAME}: signature is not valid (the manifest was altered after signing)"
        ) from exc
    checked = tuple(_check_file(root, name, entry) for name, entry in _listed_files(content).items())
    if public_key is None:
        logger.info("verified %s with its embedded key only; pin the signer's key", root)
    return VerificationReport(True, fingerprint(embedded), public_key is not None, checked)


def _read_required(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise VerificationError(f"{path.name}: missing from {path.parent}") from exc


def _decode_signature(raw: bytes) -> bytes:
    try:
        return base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError(f"{SIGNATURE_NAME}: not a base64 signature") from exc


def _parse_manifest(data: bytes) -> dict[str, Any]:
    try:
        content = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VerificationError(f"{MANIFEST_NAME}: not valid JSON ({exc})") from exc
    if not isinstance(content, dict):
        raise VerificationError(f"{MANIFEST_NAME}: expected a JSON object")
    return content


def _embedded_key(content: Mapping[str, Any]) -> bytes:
    problem = f"{MANIFEST_NAME}: no valid Ed25519 'signer' entry"
    signer = content.get("signer")
    if not isinstance(signer, dict) or signer.get("algorithm") != "Ed25519":
        raise VerificationError(problem)
    try:
        raw = base64.b64decode(signer.get("public_key", ""), validate=True)
    except (TypeError, binascii.Error, ValueError) as exc:
        raise VerificationError(problem) from exc
    if len(raw) != 32:
        raise VerificationError(problem)
    return raw


def _listed_files(content: Mapping[str, Any]) -> dict[str, Any]:
    files = content.get("files")
    if not isinstance(files, dict):
        raise VerificationError(f"{MANIFEST_NAME}: no 'files' table")
    return files


def _check_file(root: Path, name: str, entry: Any) -> str:
    path = _member(root, name, VerificationError)
    if not isinstance(entry, dict) or not {"sha256", "bytes"} <= set(entry):
        raise VerificationError(f"{name}: manifest entry lacks sha256 or bytes")
    if not path.is_file():
        raise VerificationError(f"{name}: listed in the manifest but missing from {root}")
    if path.stat().st_size != entry["bytes"]:
        raise VerificationError(
            f"{name}: size {path.stat().st_size} does not match the manifest's {entry['bytes']} "
            "(the file was altered after signing)"
        )
    if file_digest(path) != entry["sha256"]:
        raise VerificationError(
            f"{name}: sha256 does not match the manifest (the file was altered after signing)"
        )
    return name


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    """Read a signer's public key to pin: a PEM public key, base64 text of the raw key, or the 32 raw bytes."""
    data = Path(path).read_bytes()
    if data.lstrip().startswith(b"-----BEGIN PUBLIC KEY-----"):
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"{path}: not an Ed25519 public key")
        return public_key_bytes(key)
    if len(data) == 32:
        return data
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"{path}: expected an Ed25519 public key (PEM, base64 or 32 raw bytes)")
    return raw
