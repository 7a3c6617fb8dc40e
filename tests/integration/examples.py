"""Running an example's one command the way a user does: its run.sh, the installed fedsynth, a fresh HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_example(script: Path, out: Path, settings: dict[str, object]) -> str:
    """Run ``script OUT`` with ``settings`` as environment variables; return its output, or fail with it."""
    binaries = Path(sys.executable).parent
    env = {
        **os.environ, "HOME": str(out.parent / "home"), "PYTHON": sys.executable,
        "FEDSYNTH": str(binaries / "fedsynth"), "PATH": f"{binaries}{os.pathsep}{os.environ.get('PATH', '')}",
        **{key: str(value) for key, value in settings.items()},
    }
    done = subprocess.run(["bash", str(script), str(out)], env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    return done.stdout
