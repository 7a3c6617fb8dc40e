#!/usr/bin/env bash
# The GPU check: the GPU path's tests and the `gpu` benchmark, on a machine with CUDA and no network.
#
#   OUT=/tmp/gpu-out bash benchmarks/gpu_check.sh    # from anywhere; logs and figures go to $OUT
#
# What fedsynth needs beyond the machine's image travels as wheels in .whl/ at the repository root (made where
# pip has a registry; benchmarks/README.md, "GPU check"). benchmarks/gpu_wheels.py picks those the machine lacks or
# has in a version a requirement refuses; they go to a fresh folder on PYTHONPATH, after the repository root (the
# packages server, client, shared and benchmarks import from it, as in a Flower app bundle).
#
# Steps, most important first, each under its own time limit so a stuck one cannot cost the rest:
#   wheels, machine (versions; no CUDA ends the check), gpu-tests (tests/unit/test_gpu_path.py, none may skip),
#   benchmark (python -m benchmarks --only gpu), cpu-tests (the unit tests of the code the GPU path runs).
# $OUT receives gpu_check.log (everything), gpu.json (the figures), gpu-tests.xml and cpu-tests.xml (JUnit).
# Exit status: 0 when every step passed, else 1. Idempotent: every run starts from a fresh wheel folder.

set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
OUT=${OUT:-/tmp/fedsynth-gpu-check}
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-$REPO/.whl}
SITE=${FEDSYNTH_GPU_SITE:-/tmp/fedsynth-gpu-site}
mkdir -p "$OUT"
LOG=$OUT/gpu_check.log
: >"$LOG"
export OUT PYTHON WHEELS SITE PYTHONUNBUFFERED=1 FLWR_TELEMETRY_ENABLED=0
failed=()

# step NAME SECONDS COMMAND...: run it under a time limit, its output to the terminal and the log. A step that is
# a function below runs as `bash -c NAME` (timeout runs programs, not functions; the functions are exported).
step() {
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit}s): $*" | tee -a "$LOG"
    local began=$SECONDS
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - began)) s" | tee -a "$LOG"
    [ "$rc" -eq 0 ] || failed+=("$name")
    return "$rc"
}

install_wheels() {
    rm -rf "$SITE" && mkdir -p "$SITE" || return 1
    # The machine's own packages decide what is chosen, so PYTHONPATH must not point at an earlier run's folder.
    local chosen pick
    chosen=$(env -u PYTHONPATH "$PYTHON" benchmarks/gpu_wheels.py "$WHEELS")
    pick=$?
    [ -n "$chosen" ] || { echo "no wheel chosen from $WHEELS"; return 1; }
    # shellcheck disable=SC2086  # one path a line, no spaces in wheel names
    env -u PYTHONPATH "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" $chosen || return 1
    # Opacus's wheel also ships top-level packages named benchmarks and examples: never let them stand for ours.
    rm -rf "$SITE/benchmarks" "$SITE/examples"
    echo "installed into $SITE:"
    ls "$SITE" | grep -E '\.dist-info$' | sed 's/\.dist-info$//' | tr '\n' ' '
    echo
    return "$pick"  # 1 when a requirement is still missing or mismatched (listed above): the step fails, the check goes on
}

machine() {
    nvidia-smi -L || echo "nvidia-smi: not available"
    "$PYTHON" - <<'EOF'
import platform, sys
import torch
from importlib import metadata

def version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"

print(f"python {platform.python_version()} at {sys.executable}")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
print(", ".join(f"{n} {version(n)}" for n in ("flwr", "opacus", "numpy", "pandas", "pyarrow", "scipy", "grpcio",
                                              "protobuf", "cryptography", "pytest", "hypothesis")))
import client.app, client.trainer, server.sampling, benchmarks.__main__  # noqa: E401,F401 - the import chain
if not torch.cuda.is_available():
    sys.exit("torch sees no CUDA device: the GPU check cannot run here")
print(f"CUDA device: {torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
EOF
}

# pytest ... then refuse a run in which anything was skipped (a GPU test that skips has checked nothing).
gpu_tests() {
    local said rc
    said=$(mktemp)
    "$PYTHON" -m pytest -q -p no:cacheprovider -rA --junitxml "$OUT/gpu-tests.xml" tests/unit/test_gpu_path.py \
        | tee "$said"
    rc=${PIPESTATUS[0]}
    if grep -Eq '[0-9]+ skipped' "$said"; then
        echo "a GPU test was skipped: it checked nothing"
        rc=1
    fi
    rm -f "$said"
    return "$rc"
}

export -f install_wheels machine gpu_tests
step wheels 90 bash -c install_wheels
export PYTHONPATH=$REPO:$SITE
if step machine 60 bash -c machine; then
    step gpu-tests 150 bash -c gpu_tests
    step benchmark 150 "$PYTHON" -m benchmarks --only gpu --json "$OUT/gpu.json"
else
    failed+=("(gpu-tests and benchmark not run)")
fi
step cpu-tests 120 "$PYTHON" -m pytest -q -p no:cacheprovider --junitxml "$OUT/cpu-tests.xml" \
    tests/unit/test_generator.py tests/unit/test_ghost_clipping.py tests/unit/test_units.py \
    tests/unit/test_sampling.py tests/unit/test_slots.py tests/unit/test_ctvae.py tests/unit/test_ctgan.py \
    tests/unit/test_accounting.py tests/unit/test_client_imports.py

if [ ${#failed[@]} -eq 0 ]; then
    echo "GPU CHECK PASSED" | tee -a "$LOG"
    exit 0
fi
echo "GPU CHECK FAILED: ${failed[*]}" | tee -a "$LOG"
exit 1
