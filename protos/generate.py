"""Generate the console's Python stubs from ``protos/``, or check that the committed ones are current.

    python protos/generate.py           # write shared/console/v1/console_pb2{.py,.pyi,_grpc.py}
    python protos/generate.py --check   # regenerate into a temporary folder; exit 1 on any difference

The generator is pinned (``grpcio-tools==GENERATOR_VERSION`` in pyproject's test extras): flwr pins the
protobuf runtime below 7, and a newer grpcio-tools writes protobuf-7 code that refuses to import beside it.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
GENERATOR_VERSION = "1.80.0"
SOURCES = ("shared/console/v1/console.proto",)
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def generate(out: Path) -> list[Path]:
    """Run protoc for every source into ``out``; return the files written, relative to ``out``."""
    installed = version("grpcio-tools")
    if installed != GENERATOR_VERSION:
        raise SystemExit(
            f"protos/generate.py: grpcio-tools {installed} is installed, the stubs are made with "
            f"{GENERATOR_VERSION}; run: pip install grpcio-tools=={GENERATOR_VERSION}"
        )
    from grpc_tools import protoc  # noqa: PLC0415 (a test-time dependency only)
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    written: list[Path] = []
    for source in SOURCES:
        args = [
            "grpc_tools.protoc", f"-I{PROTOS}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}",
            f"--grpc_python_out={out}", str(PROTOS / source),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protos/generate.py: protoc failed on {source}")
        stem = source.removesuffix(".proto")
        written.extend(Path(stem + suffix) for suffix in SUFFIXES)
    return written


def check(root: Path = ROOT) -> int:
    """Regenerate into a temporary folder and compare byte for byte with the stubs committed under ``root``."""
    with tempfile.TemporaryDirectory() as tmp:
        stale = []
        for relative in generate(Path(tmp)):
            fresh = (Path(tmp) / relative).read_text()
            committed = root / relative
            current = committed.read_text() if committed.exists() else ""
            if fresh != current:
                stale.append(str(relative))
                sys.stdout.writelines(difflib.unified_diff(
                    current.splitlines(True), fresh.splitlines(True), f"committed/{relative}", f"generated/{relative}"
                ))
    if stale:
        print(f"\nstale generated code: {', '.join(stale)}; run: python protos/generate.py", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail on any difference instead of writing")
    if parser.parse_args().check:
        return check()
    for relative in generate(ROOT):
        print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
