"""Which of the carried wheels a bare GPU machine needs, for ``benchmarks/gpu_check.sh``.

A GPU machine has no network: what fedsynth needs beyond its image comes as wheels in a folder. A wheel is
installed when the machine lacks its package, or when the machine's version breaks a requirement of fedsynth
(pyproject.toml) or of a wheel being installed (Flower pins protobuf < 7 and typer < 0.21, for instance);
otherwise the machine's own copy is kept, so nothing it ships (torch, numpy, pandas) is shadowed without need.

    python3 benchmarks/gpu_wheels.py .whl > chosen.txt     # the wheel paths to install, one a line

Standard library and ``packaging`` only (pip's own copy where the machine has no other): it runs before anything
is installed. The account of every requirement (kept, carried, or missing) goes to stderr.
"""

from __future__ import annotations

import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pragma: no cover - a machine with pip but no packaging
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef,assignment]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef,assignment]

REPO = Path(__file__).resolve().parents[1]
# Required by the project's metadata but not by the GPU check: Ray (simulation), uv (app builds), the linters and
# the protobuf generator of the test extra.
NOT_NEEDED = {"ray", "uv", "mypy", "grpcio-tools"}


def _wheels(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.glob("*.whl")):
        name = canonicalize_name(path.name.split("-")[0])
        if name in found:
            raise SystemExit(f"{folder}: two wheels of {name} ({found[name].name}, {path.name}); keep one")
        found[name] = path
    return found


def _wheel_version(path: Path) -> str:
    return path.name.split("-")[1]


def _wheel_requires(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        text = archive.read(meta).decode("utf-8")
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]


def _project_requires() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project.get("optional-dependencies", {}).get("test", [])]


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _applicable(lines: list[str], extras: set[str], source: str) -> list[tuple[Requirement, str]]:
    out = []
    for line in lines:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras | {""}):
            out.append((requirement, source))
    return out


def choose(folder: Path) -> tuple[list[Path], list[str]]:
    """The wheels to install, and one line of account per requirement."""
    wheels = _wheels(folder)
    chosen = {name for name in wheels if _installed(name) is None}
    while True:
        requirements = _applicable(_project_requires(), set(), "fedsynth")
        extras: dict[str, set[str]] = {}
        for requirement, _ in requirements:
            extras.setdefault(canonicalize_name(requirement.name), set()).update(requirement.extras)
        for name in sorted(chosen):
            own = _applicable(_wheel_requires(wheels[name]), extras.get(name, set()), name)
            requirements += own
            for requirement, _ in own:
                extras.setdefault(canonicalize_name(requirement.name), set()).update(requirement.extras)
        broken = {
            canonicalize_name(r.name) for r, _ in requirements
            if canonicalize_name(r.name) in wheels and canonicalize_name(r.name) not in chosen
            and not r.specifier.contains(_installed(r.name) or "0", prereleases=True)
        }
        if not broken:
            break
        chosen |= broken
    account = []
    for requirement, source in requirements:
        name = canonicalize_name(requirement.name)
        version = _wheel_version(wheels[name]) if name in chosen else _installed(name)
        where = "carried" if name in chosen else "machine"
        if version is None:
            state = "not needed here" if name in NOT_NEEDED else "MISSING"
        else:
            state = "ok" if requirement.specifier.contains(version, prereleases=True) else "MISMATCH"
        account.append(f"{state:15} {name} {version or '-'} ({where}) for {requirement} [{source}]")
    return [wheels[name] for name in sorted(chosen)], sorted(set(account))


def main(argv: list[str]) -> int:
    folder = Path(argv[1] if len(argv) > 1 else ".whl")
    paths, account = choose(folder)
    print("\n".join(account), file=sys.stderr)
    print("\n".join(str(p) for p in paths))
    return 1 if any(line.startswith(("MISSING", "MISMATCH")) for line in account) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
