#!/usr/bin/env bash
# deploy/local/up.sh N OUTDIR: a real fedsynth deployment on this machine's loopback, end to end.
#
# It runs what a consortium runs across machines, as separate processes: one `flower-superlink` with TLS and
# SuperNode authentication, N `fedsynth-supernode`s (Flower's SuperNode with a warm task runtime; one per site, each with its own key, its own table, its
# own ledger and cap), `flwr run` of this app, a check that the run really finished (Flower's status and the
# signed outputs, not just an exit code), and then it stops every process it started, whatever happened.
#
# Environment (all optional):
#   FEDSYNTH_BIN   folder holding fedsynth, fedsynth-supernode, flower-superlink, flwr (default: REPO/.venv/bin)
#   DATA, SCHEMA   the table dealt to the sites and its schema (default: bundled Adult)
#   ROUNDS=3  EPSILON=3.0  MAX_EPSILON=10.0  ROWS=0 (synthetic rows; 0 = as many as the input)
#   RUN_CONFIG     extra `--run-config` overrides, e.g. 'train.local-steps=2 train.hidden=32'
#
# Writes under OUTDIR: pki/ (CA, SuperLink certificate, SuperNode key pairs), sites/site-N/ (each site's table,
# ledger and received outputs), run/ (the coordinator's outputs), logs/, flwr-home/ (the CLI's connection).
set -euo pipefail

usage() { echo "usage: $0 N OUTDIR   (N >= 2 sites)" >&2; exit 2; }
[ $# -eq 2 ] || usage
N=$1
OUT=$2
[[ "$N" =~ ^[0-9]+$ ]] && [ "$N" -ge 2 ] || usage
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${FEDSYNTH_BIN:-$REPO/.venv/bin}
DATA=${DATA:-$REPO/data/adult/adult_train.csv}
SCHEMA=${SCHEMA:-$REPO/data/adult/schema.json}
ROUNDS=${ROUNDS:-3}
EPSILON=${EPSILON:-3.0}
MAX_EPSILON=${MAX_EPSILON:-10.0}
ROWS=${ROWS:-0}
for tool in fedsynth fedsynth-supernode flower-superlink flwr python; do
  [ -x "$BIN/$tool" ] || { echo "up.sh: $BIN/$tool is missing; install fedsynth (README) or set FEDSYNTH_BIN" >&2; exit 2; }
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ -e "$OUT/run/manifest.json" ] || [ -e "$OUT/sites" ]; then
  echo "up.sh: $OUT already holds a deployment; choose an empty OUTDIR (site ledgers are never overwritten)" >&2
  exit 2
fi
mkdir -p "$OUT/logs" "$OUT/flwr-home"

# Sites are often offline, and an unpinned dependency would pull CUDA wheels: never install at run time.
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 FLWR_DISABLE_UPDATE_CHECK=1
# FLWR_SUPEREXEC_TASK_POLL_INTERVAL is left alone: each site's SuperNode wakes its task runtime when it makes a
# task (client/task_wakeup.py), and the SuperLink's SuperExec, which only launches the ServerApp once a run,
# keeps Flower's 1 s (at 0.1 s it was a fifth of the SuperLink's requests; benchmarks/README.md).
# Flower forks its app processes; a forked OpenBLAS thread pool can spin forever.
export OPENBLAS_NUM_THREADS=1 PYTHONUNBUFFERED=1
export FLWR_HOME="$OUT/flwr-home" PATH="$BIN:$PATH"

PIDS=()
stop_all() {
  # Every process was started as the leader of its own session: signal whole groups (apps, SuperExecs).
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
}
trap stop_all EXIT
trap 'exit 130' INT TERM

start() {  # start NAME COMMAND...: a new session (process group) logging to logs/NAME.log
  local name=$1; shift
  setsid "$@" >"$OUT/logs/$name.log" 2>&1 < /dev/null &
  PIDS+=("$!")
  echo "$!" >"$OUT/logs/$name.pid"
}

free_port() { "$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for() {  # wait_for SECONDS DESCRIPTION LOG COMMAND...: poll COMMAND until it succeeds
  local seconds=$1 what=$2 log=$3; shift 3
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then echo "up.sh: $what did not happen within ${seconds}s; see $log" >&2; exit 1; fi
    sleep 0.5
  done
}

echo "== certificates and keys ($OUT/pki)"
SITES=()
for i in $(seq 0 $((N - 1))); do SITES+=("site-$i"); done
supernode_args=()
for site in "${SITES[@]}"; do supernode_args+=(--supernode "$site"); done
fedsynth certs "$OUT/pki" --hosts 127.0.0.1 localhost "${supernode_args[@]}" >"$OUT/logs/certs.log"

echo "== site tables ($OUT/sites)"
fedsynth split "$DATA" --schema "$SCHEMA" --sites "$N" --out "$OUT/sites/tables"
for site in "${SITES[@]}"; do
  mkdir -p "$OUT/sites/$site"
  mv "$OUT/sites/tables/$site.csv" "$OUT/sites/$site/table.csv"
done
rmdir "$OUT/sites/tables"

echo "== SuperLink (TLS, SuperNode authentication)"
LINK=$(free_port)
start superlink flower-superlink \
  --ssl-ca-certfile "$OUT/pki/ca.crt" --ssl-certfile "$OUT/pki/server.crt" --ssl-keyfile "$OUT/pki/server.key" \
  --enable-supernode-auth --isolation subprocess --database "$OUT/superlink.db" --host 127.0.0.1 --port "$LINK"
cat >"$FLWR_HOME/config.toml" <<TOML
[superlink]
default = "local"

[superlink.local]
address = "127.0.0.1:$LINK"
root-certificates = "$OUT/pki/ca.crt"
TOML
wait_for 60 "the SuperLink starting" "$OUT/logs/superlink.log" flwr ls local

echo "== registering ${#SITES[@]} SuperNode keys"
for site in "${SITES[@]}"; do
  flwr supernode register "$OUT/pki/supernode-$site.key.pub" local >>"$OUT/logs/register.log" 2>&1 \
    || { echo "up.sh: registering $site failed; see $OUT/logs/register.log" >&2; exit 1; }
done

echo "== ${#SITES[@]} SuperNodes"
for site in "${SITES[@]}"; do
  start "supernode-$site" fedsynth-supernode \
    --root-certificates "$OUT/pki/ca.crt" --superlink "127.0.0.1:$LINK" \
    --auth-supernode-private-key "$OUT/pki/supernode-$site.key" --port "$(free_port)" \
    --node-config "site=\"$site\" data-path=\"$OUT/sites/$site/table.csv\" max-epsilon=$MAX_EPSILON schema-path=\"$SCHEMA\" output-dir=\"$OUT/sites/$site/received\""
done
online() { [ "$(flwr supernode ls local --format json | "$BIN/python" -c \
  'import json, sys; print(sum(n.get("status") == "online" for n in json.load(sys.stdin).get("nodes", [])))')" -ge "$N" ]; }
wait_for 120 "all $N SuperNodes coming online" "$OUT/logs" online

echo "== flwr run ($ROUNDS rounds, epsilon $EPSILON per site)"
flwr run "$REPO" local --stream --run-config \
  "schema-path=\"$SCHEMA\" out-dir=\"$OUT/run\" signing-key=\"$OUT/pki/signing-ed25519.pem\" num-rounds=$ROUNDS min-sites=$N dp.target-epsilon=$EPSILON synthetic-rows=$ROWS ${RUN_CONFIG:-}" \
  2>&1 | tee "$OUT/logs/flwr-run.log"

# `flwr run --stream` exits 0 even when the run failed: ask the SuperLink, then check the signed outputs.
status=$(flwr ls local --format json | "$BIN/python" -c \
  'import json, sys; runs = json.load(sys.stdin)["runs"]; print(runs[-1]["status"] if runs else "none")')
if [ "$status" != "finished:completed" ]; then
  echo "up.sh: the run ended as '$status'; see $OUT/logs/flwr-run.log and $OUT/logs/superlink.log" >&2
  exit 1
fi
fedsynth verify "$OUT/run"
for site in "${SITES[@]}"; do
  fedsynth ledger verify "$OUT/sites/$site/table.ledger.json" >/dev/null
done
echo "== done: the run finished, its outputs verify, every site's ledger recomputes; outputs in $OUT/run"
