"""The console's generated stubs are what the pinned generator makes from protos/ (what CI checks)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STUBS = ("console_pb2.py", "console_pb2.pyi", "console_pb2_grpc.py")


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("protos_generate", ROOT / "protos" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_stubs_match_a_fresh_generation() -> None:
    result = subprocess.run([sys.executable, "protos/generate.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_the_check_fails_on_a_stale_stub(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    committed = tmp_path / "shared" / "console" / "v1"
    committed.mkdir(parents=True)
    for name in STUBS:
        shutil.copy(ROOT / "shared" / "console" / "v1" / name, committed / name)
    stale = committed / "console_pb2_grpc.py"
    stale.write_text(stale.read_text().replace("GRPC_GENERATED_VERSION = '1.80.0'", "GRPC_GENERATED_VERSION = '1.99.0'"))

    assert _generator().check(tmp_path) == 1  # type: ignore[attr-defined]
    assert "console_pb2_grpc.py" in capsys.readouterr().err


def test_stubs_import_beside_flwr_protobuf_runtime() -> None:
    import flwr  # noqa: F401  (flwr pins the protobuf runtime the stubs must load under)
    from shared.console.v1 import console_pb2, console_pb2_grpc

    assert console_pb2.DESCRIPTOR.package == "fedsynth.console.v1"
    assert hasattr(console_pb2_grpc, "ConsoleStub")
