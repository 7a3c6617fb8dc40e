#!/usr/bin/env bash
# deploy/superlink/run-superlink.sh [ENV_FILE]: start the coordinator's Flower SuperLink for fedsynth.
#
# One HTTPS port serves Flower's Fleet API (the sites' SuperNodes), Control API (`flwr run`, `flwr ls`,
# `flwr supernode register`) and Runtime API (the ServerApp, which the SuperLink starts as a subprocess and
# which dials the same port). TLS and SuperNode authentication are always on: only SuperNodes whose public key
# was registered (register-site.sh) are admitted. State (runs, registered keys) persists in a SQLite database.
#
# Settings come from ENV_FILE (plain KEY=value lines, see superlink.env.example) or, with no argument, from
# the environment (systemd's EnvironmentFile=, docker compose's env_file:). Required:
#   SUPERLINK_PORT   the port sites and the flwr CLI dial
#   TLS_CA_CERT      ca.crt of the consortium CA (fedsynth certs)
#   TLS_CERT         server.crt: must name every host sites dial AND the address the SuperLink's own
#                    ServerApp dials (127.0.0.1 when SUPERLINK_HOST is 0.0.0.0)
#   TLS_KEY          server.key
#   STATE_DIR        writable folder for the database and Flower's app cache (FLWR_HOME)
# Optional: SUPERLINK_HOST (0.0.0.0), SUPERLINK_DATABASE ($STATE_DIR/superlink.db), FLWR_HOME
# ($STATE_DIR/flwr-home), FEDSYNTH_BIN (/opt/fedsynth/venv/bin), SUPERLINK_LOG_FILE (none: stderr),
# HEALTH_ADDRESS (none; a plaintext gRPC health service, e.g. 127.0.0.1:9098).
set -euo pipefail

me=run-superlink.sh
die() { echo "$me: $*" >&2; exit 2; }

[ $# -le 1 ] || die "usage: $0 [ENV_FILE]"
if [ $# -eq 1 ]; then
  [ -r "$1" ] || die "cannot read the env file $1"
  set -a
  # shellcheck disable=SC1090
  . "$1"
  set +a
fi

: "${SUPERLINK_PORT:?is not set: the HTTPS port sites and the flwr CLI dial, e.g. 9092 (see superlink.env.example)}"
: "${TLS_CA_CERT:?is not set: the consortium CA certificate, ca.crt from fedsynth certs}"
: "${TLS_CERT:?is not set: the SuperLink certificate, server.crt from fedsynth certs}"
: "${TLS_KEY:?is not set: the SuperLink private key, server.key from fedsynth certs}"
: "${STATE_DIR:?is not set: a writable folder for the SuperLink database and app cache, e.g. /var/lib/fedsynth}"
SUPERLINK_HOST=${SUPERLINK_HOST:-0.0.0.0}
SUPERLINK_DATABASE=${SUPERLINK_DATABASE:-$STATE_DIR/superlink.db}
FEDSYNTH_BIN=${FEDSYNTH_BIN:-/opt/fedsynth/venv/bin}
SUPERLINK_LOG_FILE=${SUPERLINK_LOG_FILE:-}
HEALTH_ADDRESS=${HEALTH_ADDRESS:-}

# The Kubernetes templates mark the values a consortium must supply: refuse to start with one left in place.
for var in SUPERLINK_PORT SUPERLINK_HOST TLS_CA_CERT TLS_CERT TLS_KEY STATE_DIR SUPERLINK_DATABASE \
  FLWR_HOME FEDSYNTH_BIN SUPERLINK_LOG_FILE HEALTH_ADDRESS; do
  case ${!var:-} in *REPLACE_ME*) die "$var=${!var} still holds the template marker REPLACE_ME: put your own value there" ;; esac
done
[[ "$SUPERLINK_PORT" =~ ^[0-9]+$ ]] && [ "$SUPERLINK_PORT" -ge 1 ] && [ "$SUPERLINK_PORT" -le 65535 ] \
  || die "SUPERLINK_PORT must be a port number, got '$SUPERLINK_PORT'"
for var in TLS_CA_CERT TLS_CERT TLS_KEY; do
  [ -r "${!var}" ] || die "$var=${!var} is not a readable file"
done
for tool in flower-superlink flower-superexec flwr-serverapp python; do
  [ -x "$FEDSYNTH_BIN/$tool" ] || die "$FEDSYNTH_BIN/$tool is missing: install fedsynth there (deploy/README.md) or set FEDSYNTH_BIN"
done
mkdir -p "$STATE_DIR" "$(dirname "$SUPERLINK_DATABASE")"
[ -w "$STATE_DIR" ] || die "STATE_DIR=$STATE_DIR is not writable by $(id -un)"
if [ -n "$(find -L "$TLS_KEY" -perm /007 2>/dev/null)" ]; then
  echo "$me: warning: TLS_KEY=$TLS_KEY is readable by others; chmod 600 it (or 640, group fedsynth)" >&2
fi

# The SuperLink starts its ServerApp as a subprocess that dials the SuperLink over TLS at the bind address
# (0.0.0.0 becomes 127.0.0.1): a certificate naming only the public host fails every run, late and obscurely.
dial=$SUPERLINK_HOST
case $dial in 0.0.0.0) dial=127.0.0.1 ;; ::|"[::]") dial=::1 ;; esac
"$FEDSYNTH_BIN/python" - "$TLS_CERT" "$dial" <<'PY' || exit 2
import datetime, ipaddress, sys
from cryptography import x509

path, host = sys.argv[1], sys.argv[2].strip("[]")
try:
    cert = x509.load_pem_x509_certificate(open(path, "rb").read())
except ValueError:
    sys.exit(f"run-superlink.sh: TLS_CERT={path} is not a PEM certificate (a template value left in place?)")
try:
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
except x509.ExtensionNotFound:
    sys.exit(f"run-superlink.sh: {path} has no subject alternative names; reissue it with fedsynth certs")
try:
    named = ipaddress.ip_address(host) in sans.get_values_for_type(x509.IPAddress)
except ValueError:
    named = host.lower() in (n.lower() for n in sans.get_values_for_type(x509.DNSName))
if not named:
    sys.exit(f"run-superlink.sh: TLS_CERT={path} does not name {host}, the address the SuperLink's own ServerApp "
             f"dials; reissue it naming {host} beside the public host: "
             f"fedsynth certs PKI_DIR --hosts link.example.org {host} --force")
if cert.not_valid_after_utc <= datetime.datetime.now(datetime.timezone.utc):
    sys.exit(f"run-superlink.sh: TLS_CERT={path} expired on {cert.not_valid_after_utc:%Y-%m-%d}; reissue it")
PY

# Sites and the coordinator are offline-capable and pinned: never let Flower install dependencies at run time
# (an unpinned torch would pull CUDA wheels). Flower forks its app processes, and a forked OpenBLAS thread
# pool can spin forever.
export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 FLWR_DISABLE_UPDATE_CHECK=1
export OPENBLAS_NUM_THREADS=1 PYTHONUNBUFFERED=1
export FLWR_HOME=${FLWR_HOME:-$STATE_DIR/flwr-home}
# The SuperLink finds flower-superexec and flwr-serverapp on PATH.
export PATH="$FEDSYNTH_BIN:$PATH"
mkdir -p "$FLWR_HOME"

extra=()
[ -z "$SUPERLINK_LOG_FILE" ] || extra+=(--log-file "$SUPERLINK_LOG_FILE")
[ -z "$HEALTH_ADDRESS" ] || extra+=(--health-server-address "$HEALTH_ADDRESS")

echo "$me: SuperLink on https://$SUPERLINK_HOST:$SUPERLINK_PORT (TLS, SuperNode authentication), state in $SUPERLINK_DATABASE" >&2
exec "$FEDSYNTH_BIN/flower-superlink" \
  --ssl-ca-certfile "$TLS_CA_CERT" --ssl-certfile "$TLS_CERT" --ssl-keyfile "$TLS_KEY" \
  --enable-supernode-auth --isolation subprocess --disable-runtime-dependency-installation \
  --database "$SUPERLINK_DATABASE" --host "$SUPERLINK_HOST" --port "$SUPERLINK_PORT" "${extra[@]}"
