"""Console tokens: each caller's random token maps to a role; the file holds only SHA-256 digests."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from server.console.tokens import TokenStore, add_token
from shared.errors import ConfigError


def test_tokens_map_to_roles_and_only_digests_are_stored(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    admin = add_token(path, "alice", "admin")
    viewer = add_token(path, "bob", "viewer")

    store = TokenStore.load(path)

    assert store.caller(admin) is not None and store.caller(admin).role == "admin"  # type: ignore[union-attr]
    assert store.caller(viewer).name == "bob"  # type: ignore[union-attr]
    assert store.caller("guess") is None and store.caller(admin + "x") is None
    text = path.read_text()
    assert admin not in text and viewer not in text and len(admin) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_names_and_roles_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    add_token(path, "alice", "viewer")
    with pytest.raises(ConfigError, match="already has a token named 'alice'"):
        add_token(path, "alice", "admin")
    with pytest.raises(ConfigError, match="role"):
        add_token(path, "carol", "root")
    with pytest.raises(ConfigError, match="token name"):
        add_token(path, "../evil", "viewer")


@pytest.mark.parametrize("content, problem", [
    ("not json", "unreadable"),
    (json.dumps({"format": "other", "tokens": []}), "is not a fedsynth-console-tokens/1 file"),
    (json.dumps({"format": "fedsynth-console-tokens/1", "tokens": []}), "holds no token"),
    (json.dumps({"format": "fedsynth-console-tokens/1", "tokens": [{"name": "a", "role": "god", "sha256": "0" * 64}]}),
     "'role' must be one of"),
    (json.dumps({"format": "fedsynth-console-tokens/1", "tokens": [{"name": "a", "role": "admin", "sha256": "xyz"}]}),
     "'sha256' must be 64"),
])
def test_a_broken_tokens_file_is_named_and_explained(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=problem) as error:
        TokenStore.load(path)
    assert str(path) in str(error.value)


def test_a_missing_tokens_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fedsynth console token add"):
        TokenStore.load(tmp_path / "absent.json")
