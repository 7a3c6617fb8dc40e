"""Tests for shared.manifest: signing, verification failures, and key handling."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.errors import ConfigError, VerificationError
from shared.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    file_digest,
    fingerprint,
    load_or_create_signing_key,
    public_key_bytes,
    verify_output,
    write_signed_manifest,
)


@pytest.fixture()
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture()
def signed(tmp_path: Path, key: Ed25519PrivateKey) -> Path:
    """An output directory with two data files and a signed manifest."""
    out = tmp_path / "out"
    (out / "report").mkdir(parents=True)
    (out / "synthetic.csv").write_text("age,income\n34,<=50K\n51,>50K\n")
    (out / "report" / "quality.json").write_text('{"score": 0.9}')
    write_signed_manifest(
        out,
        {"label": "SYNTHETIC", "epsilon": {"record": 1.0}, "accountant": "rdp"},
        ["synthetic.csv", "report/quality.json"],
        key,
    )
    return out


def test_sign_and_verify(signed: Path, key: Ed25519PrivateKey) -> None:
    # Execute
    report = verify_output(signed, public_key=public_key_bytes(key))
    # Assert
    assert report.ok and report.pinned
    assert report.fingerprint == fingerprint(public_key_bytes(key))
    assert set(report.files_checked) == {"synthetic.csv", "report/quality.json"}
    content = json.loads((signed / MANIFEST_NAME).read_text())
    assert content["label"] == "SYNTHETIC"
    assert content["files"]["synthetic.csv"] == {
        "sha256": file_digest(signed / "synthetic.csv"),
        "bytes": (signed / "synthetic.csv").stat().st_size,
    }
    assert content["signer"]["algorithm"] == "Ed25519"


def test_manifest_is_canonical_json(signed: Path) -> None:
    text = (signed / MANIFEST_NAME).read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_unpinned_verification_says_so(signed: Path) -> None:
    report = verify_output(signed)
    assert report.ok and not report.pinned


def test_one_altered_byte_in_a_data_file_is_named(signed: Path) -> None:
    # Prepare: same size, one byte changed.
    path = signed / "synthetic.csv"
    data = bytearray(path.read_bytes())
    data[-2] ^= 0x01
    path.write_bytes(bytes(data))
    # Execute / Assert
    with pytest.raises(VerificationError, match=r"^synthetic\.csv: sha256 does not match"):
        verify_output(signed)


def test_resized_file_is_named(signed: Path) -> None:
    with (signed / "report" / "quality.json").open("a") as handle:
        handle.write(" ")
    with pytest.raises(VerificationError, match=r"^report/quality\.json: size"):
        verify_output(signed)


def test_altered_manifest_fails_the_signature(signed: Path) -> None:
    path = signed / MANIFEST_NAME
    path.write_text(path.read_text().replace('"record": 1.0', '"record": 0.1'))
    with pytest.raises(VerificationError, match="signature is not valid"):
        verify_output(signed)


def test_deleted_file_is_named(signed: Path) -> None:
    (signed / "report" / "quality.json").unlink()
    with pytest.raises(VerificationError, match=r"^report/quality\.json: listed in the manifest but missing"):
        verify_output(signed)


@pytest.mark.parametrize("name", [MANIFEST_NAME, SIGNATURE_NAME])
def test_missing_manifest_or_signature_is_named(signed: Path, name: str) -> None:
    (signed / name).unlink()
    with pytest.raises(VerificationError, match=f"^{name}: missing"):
        verify_output(signed)


def test_a_different_pinned_key_fails(signed: Path) -> None:
    other = public_key_bytes(Ed25519PrivateKey.generate())
    with pytest.raises(VerificationError, match="not the pinned key"):
        verify_output(signed, public_key=other)


def test_resigning_with_another_key_fails_against_the_pinned_key(
    signed: Path, key: Ed25519PrivateKey
) -> None:
    # An attacker alters the data and re-signs with their own key: only pinning catches it.
    (signed / "synthetic.csv").write_text("age,income\n99,>50K\n")
    content = json.loads((signed / MANIFEST_NAME).read_text())
    del content["files"], content["signer"]
    write_signed_manifest(signed, content, ["synthetic.csv"], Ed25519PrivateKey.generate())
    assert verify_output(signed).ok
    with pytest.raises(VerificationError, match="not the pinned key"):
        verify_output(signed, public_key=public_key_bytes(key))


def test_listed_names_must_stay_inside_the_directory(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    (tmp_path / "secret.txt").write_text("x")
    (tmp_path / "out").mkdir()
    with pytest.raises(ConfigError, match="outside the output directory"):
        write_signed_manifest(tmp_path / "out", {}, ["../secret.txt"], key)
    with pytest.raises(ConfigError, match="not a file"):
        write_signed_manifest(tmp_path / "out", {}, ["absent.csv"], key)


def test_key_is_created_private_and_reused(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "keys" / "nested" / "signing.pem"
    # Execute
    first = load_or_create_signing_key(path, forbidden_dir=tmp_path / "out")
    second = load_or_create_signing_key(path, forbidden_dir=tmp_path / "out")
    # Assert
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_key_bytes(first) == public_key_bytes(second)
    assert [p.name for p in path.parent.iterdir()] == ["signing.pem"]  # no temp file left


def test_key_inside_the_signed_directory_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="inside"):
        load_or_create_signing_key(out / "sub" / "key.pem", forbidden_dir=out)
    assert not out.exists()


def test_a_non_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text("not a key")
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        load_or_create_signing_key(path)


def test_reserved_manifest_keys_are_refused(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    with pytest.raises(ConfigError, match="filled in by the signer"):
        write_signed_manifest(tmp_path, {"files": {}}, [], key)
