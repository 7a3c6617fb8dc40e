#!/usr/bin/env bash
# deploy/supernode/run-supernode.sh [ENV_FILE]: start one site's Flower SuperNode for fedsynth.
#
# The SuperNode dials out to the coordinator's SuperLink over HTTPS (it listens on nothing reachable from
# outside: its Runtime API is on 127.0.0.1), proves itself with the site's private key, and runs fedsynth's
# ClientApp in a subprocess for each task. The site's table, schema copy, privacy cap, ledger and output folder
# are this node's own settings (its --node-config): the coordinator never sets them.
#
# Settings come from ENV_FILE (plain KEY=value lines, see supernode.env.example) or, with no argument, from
# the environment (systemd's EnvironmentFile=, docker compose's env_file:). Required:
#   SITE               this site's name in the ledgers (letters, digits, '.', '_', '-')
#   DATA_PATH          the site's table (CSV), absolute path; read only
#   SCHEMA_PATH        the site's own copy of the consortium schema; training is refused if the server's differs
#   MAX_EPSILON        the site's hard record-level epsilon cap over all runs, e.g. 5.0
#   OUTPUT_DIR         where delivered synthetic tables go (one folder per run)
#   SUPERLINK_ADDRESS  HOST:PORT of the coordinator's SuperLink
#   TLS_CA_CERT        the consortium's ca.crt (received from the coordinator)
#   NODE_KEY           this site's private key (fedsynth node-key); only its .pub went to the coordinator
# Optional: LEDGER_PATH (default: <table stem>.ledger.json beside the table, which must then be writable),
# QUARANTINE_PATH (where rows failing validation go; default <table stem>.quarantine.csv beside the table),
# TRUST_SECURE_AGGREGATION (true|false, default false: see docs/PRIVACY.md), DEVICE (auto|cpu|cuda),
# LOCAL_EVALUATION (true|false, default true), RUNTIME_PORT (9094, on 127.0.0.1; differs between co-located
# nodes), STATE_DIR (/var/lib/fedsynth, for Flower's app cache FLWR_HOME=$STATE_DIR/flwr-home), FLWR_HOME,
# FEDSYNTH_BIN (/opt/fedsynth/venv/bin), HEALTH_ADDRESS (none; a plaintext gRPC health service).
set -euo pipefail

me=run-supernode.sh
die() { echo "$me: $*" >&2; exit 2; }

[ $# -le 1 ] || die "usage: $0 [ENV_FILE]"
if [ $# -eq 1 ]; then
  [ -r "$1" ] || die "cannot read the env file $1"
  set -a
  # shellcheck disable=SC1090
  . "$1"
  set +a
fi

: "${SITE:?is not set: the name of this site in the ledgers, e.g. st-marys (see supernode.env.example)}"
: "${DATA_PATH:?is not set: the absolute path of the table of this site, e.g. /srv/fedsynth/data/table.csv}"
: "${SCHEMA_PATH:?is not set: the local copy of the consortium schema, e.g. /etc/fedsynth/schema.json}"
: "${MAX_EPSILON:?is not set: the record-level epsilon cap over all runs, e.g. 5.0}"
: "${OUTPUT_DIR:?is not set: where delivered synthetic tables go, e.g. /var/lib/fedsynth/received}"
: "${SUPERLINK_ADDRESS:?is not set: the SuperLink of the coordinator as HOST:PORT, e.g. link.example.org:9092}"
: "${TLS_CA_CERT:?is not set: the consortium CA certificate ca.crt, received from the coordinator}"
: "${NODE_KEY:?is not set: the private key from fedsynth node-key, e.g. /etc/fedsynth/keys/supernode-st-marys.key}"
LEDGER_PATH=${LEDGER_PATH:-}
QUARANTINE_PATH=${QUARANTINE_PATH:-}
TRUST_SECURE_AGGREGATION=${TRUST_SECURE_AGGREGATION:-false}
DEVICE=${DEVICE:-}
LOCAL_EVALUATION=${LOCAL_EVALUATION:-}
RUNTIME_PORT=${RUNTIME_PORT:-9094}
STATE_DIR=${STATE_DIR:-/var/lib/fedsynth}
FEDSYNTH_BIN=${FEDSYNTH_BIN:-/opt/fedsynth/venv/bin}
HEALTH_ADDRESS=${HEALTH_ADDRESS:-}

# The Kubernetes templates mark the values a consortium must supply: refuse to start with one left in place.
for var in SITE DATA_PATH SCHEMA_PATH MAX_EPSILON OUTPUT_DIR SUPERLINK_ADDRESS TLS_CA_CERT NODE_KEY LEDGER_PATH \
  QUARANTINE_PATH TRUST_SECURE_AGGREGATION DEVICE LOCAL_EVALUATION RUNTIME_PORT STATE_DIR FLWR_HOME FEDSYNTH_BIN HEALTH_ADDRESS; do
  case ${!var:-} in *REPLACE_ME*) die "$var=${!var} still holds the template marker REPLACE_ME: put your own value there" ;; esac
done
[[ "$SITE" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] \
  || die "SITE='$SITE': use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
[[ "$MAX_EPSILON" =~ ^[0-9]+([.][0-9]+)?$ ]] && [[ ! "$MAX_EPSILON" =~ ^0+([.]0+)?$ ]] \
  || die "MAX_EPSILON must be a positive number such as 5.0, got '$MAX_EPSILON'"
address_re='^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):[0-9]+$'
[[ "$SUPERLINK_ADDRESS" =~ $address_re ]] \
  || die "SUPERLINK_ADDRESS must be HOST:PORT without a scheme, e.g. link.example.org:9092, got '$SUPERLINK_ADDRESS'"
[[ "$RUNTIME_PORT" =~ ^[0-9]+$ ]] || die "RUNTIME_PORT must be a port number, got '$RUNTIME_PORT'"
[[ "$TRUST_SECURE_AGGREGATION" =~ ^(true|false)$ ]] \
  || die "TRUST_SECURE_AGGREGATION must be true or false, got '$TRUST_SECURE_AGGREGATION'"
[ -z "$LOCAL_EVALUATION" ] || [[ "$LOCAL_EVALUATION" =~ ^(true|false)$ ]] \
  || die "LOCAL_EVALUATION must be true or false, got '$LOCAL_EVALUATION'"
[ -z "$DEVICE" ] || [[ "$DEVICE" =~ ^(auto|cpu|cuda)$ ]] || die "DEVICE must be auto, cpu or cuda, got '$DEVICE'"

# The node config is TOML-ish (key="value"): paths must be absolute (the ClientApp runs in another working
# directory) and hold no quote or backslash.
for var in DATA_PATH SCHEMA_PATH OUTPUT_DIR LEDGER_PATH QUARANTINE_PATH TLS_CA_CERT NODE_KEY; do
  value=${!var}
  [ -n "$value" ] || continue
  [[ "$value" == /* ]] || die "$var must be an absolute path, got '$value'"
  case $value in *'"'* | *'\'*) die "$var must not contain a quote or a backslash: '$value'" ;; esac
done
for var in DATA_PATH SCHEMA_PATH TLS_CA_CERT NODE_KEY; do
  [ -f "${!var}" ] && [ -r "${!var}" ] || die "$var=${!var} is not a readable file"
done
[[ "$NODE_KEY" != *.pub ]] || die "NODE_KEY=$NODE_KEY is the public key; give the private key (same name without .pub)"
if [ -n "$(find -L "$NODE_KEY" -perm /007 2>/dev/null)" ]; then
  echo "$me: warning: NODE_KEY=$NODE_KEY is readable by others; chmod 600 it" >&2
fi
grep -q "BEGIN OPENSSH PRIVATE KEY" "$NODE_KEY" \
  || die "NODE_KEY=$NODE_KEY is not an OpenSSH private key (make one with: fedsynth node-key DIR $SITE)"
ledger_dir=$(dirname "${LEDGER_PATH:-$DATA_PATH}")
quarantine_dir=$(dirname "${QUARANTINE_PATH:-$ledger_dir/x}")
mkdir -p "$OUTPUT_DIR" "$ledger_dir" "$quarantine_dir" "$STATE_DIR"
for dir in "$OUTPUT_DIR" "$ledger_dir" "$quarantine_dir" "$STATE_DIR"; do
  [ -w "$dir" ] || die "$dir is not writable by $(id -un) (the ledger, its holdout key, quarantined rows and the outputs are written there)"
done
for tool in fedsynth-supernode flower-supernode flwr-clientapp; do
  [ -x "$FEDSYNTH_BIN/$tool" ] || die "$FEDSYNTH_BIN/$tool is missing: install fedsynth there (deploy/README.md) or set FEDSYNTH_BIN"
done

node_config="site=\"$SITE\" data-path=\"$DATA_PATH\" schema-path=\"$SCHEMA_PATH\" max-epsilon=$MAX_EPSILON"
node_config+=" output-dir=\"$OUTPUT_DIR\" trust-secure-aggregation=$TRUST_SECURE_AGGREGATION"
[ -z "$LEDGER_PATH" ] || node_config+=" ledger-path=\"$LEDGER_PATH\""
[ -z "$QUARANTINE_PATH" ] || node_config+=" quarantine-path=\"$QUARANTINE_PATH\""
[ -z "$DEVICE" ] || node_config+=" device=\"$DEVICE\""
[ -z "$LOCAL_EVALUATION" ] || node_config+=" local-evaluation=$LOCAL_EVALUATION"

# Sites are often offline and pinned: never install dependencies at run time (an unpinned torch would pull
# CUDA wheels). Flower forks its app processes, and a forked OpenBLAS thread pool can spin forever.
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 FLWR_DISABLE_UPDATE_CHECK=1
export OPENBLAS_NUM_THREADS=1 PYTHONUNBUFFERED=1
# FLWR_SUPEREXEC_TASK_POLL_INTERVAL is left to the task runtime: the SuperNode wakes it when a task is made
# (client/task_wakeup.py), and it asks once a second besides; a value set here overrides that fallback.
export FLWR_HOME=${FLWR_HOME:-$STATE_DIR/flwr-home}
# fedsynth-supernode is Flower's SuperNode with a warm task runtime (client/supernode.py): each ClientApp
# task is a fork of a process that has torch and Opacus loaded, instead of a fresh flwr-clientapp.
export PATH="$FEDSYNTH_BIN:$PATH"
mkdir -p "$FLWR_HOME"

extra=()
[ -z "$HEALTH_ADDRESS" ] || extra+=(--health-server-address "$HEALTH_ADDRESS")

echo "$me: site $SITE -> https://$SUPERLINK_ADDRESS, node config: $node_config" >&2
exec "$FEDSYNTH_BIN/fedsynth-supernode" \
  --root-certificates "$TLS_CA_CERT" --superlink "$SUPERLINK_ADDRESS" --auth-supernode-private-key "$NODE_KEY" \
  --host 127.0.0.1 --port "$RUNTIME_PORT" --node-config "$node_config" "${extra[@]}"
