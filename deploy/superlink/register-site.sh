#!/usr/bin/env bash
# deploy/superlink/register-site.sh SITE KEY.pub [CONNECTION]: admit one site's SuperNode to the SuperLink.
#
# The coordinator runs this once per site with the public key the site sent (made at the site with
# `fedsynth node-key DIR SITE`; the private key never leaves the site). It checks that the file is an ECDSA
# public key in OpenSSH format (and not, by mistake, a private key), prints its SHA256 fingerprint to confirm
# with the site over a second channel (the site runs `ssh-keygen -lf supernode-SITE.key.pub`), and registers
# it with `flwr supernode register` under the name SITE. A key already registered is not an error (exit 0), so
# the script can be rerun.
#
# CONNECTION is a SuperLink connection in $FLWR_HOME/config.toml (default: $FLWR_CONNECTION, else the file's
# default). Environment: FEDSYNTH_BIN (where flwr is; default: the flwr on PATH), FLWR_HOME (default ~/.flwr).
set -euo pipefail

me=register-site.sh
die() { echo "$me: $*" >&2; exit 2; }

[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: $0 SITE KEY.pub [CONNECTION]"
site=$1
key=$2
connection=${3:-${FLWR_CONNECTION:-}}
if [ -n "${FEDSYNTH_BIN:-}" ]; then flwr=$FEDSYNTH_BIN/flwr; else flwr=$(command -v flwr || true); fi
[ -n "$flwr" ] && [ -x "$flwr" ] || die "flwr is not on PATH: install fedsynth (deploy/README.md) or set FEDSYNTH_BIN"

[[ "$site" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] \
  || die "SITE='$site': use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
[ -f "$key" ] && [ -r "$key" ] || die "cannot read the public key $key"
if grep -q "PRIVATE KEY" "$key"; then
  die "$key is a PRIVATE key: it must never leave the site. Ask the site for supernode-$site.key.pub instead (and have it make a new pair with fedsynth node-key --force, since this one was exposed)"
fi
[ "$(grep -c . "$key")" -eq 1 ] || die "$key should hold exactly one line (an OpenSSH public key)"
read -r algorithm blob _ <"$key" || true
[[ "$algorithm" =~ ^ecdsa-sha2-nistp(256|384|521)$ ]] \
  || die "$key is a '$algorithm' key; Flower admits ECDSA keys on a NIST curve in OpenSSH format (fedsynth node-key makes them)"
# The fingerprint ssh-keygen -lf shows: SHA256 of the key blob, base64 without padding.
python=$(dirname "$flwr")/python
[ -x "$python" ] || python=python3
fingerprint=$("$python" -c 'import base64, hashlib, sys
print(base64.b64encode(hashlib.sha256(base64.b64decode(sys.argv[1], validate=True)).digest()).decode().rstrip("="))' \
  "$blob" 2>/dev/null) || fingerprint=""
[ -n "$fingerprint" ] || die "$key: the key data is not valid base64"

export FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1
echo "$me: registering $site ($algorithm SHA256:$fingerprint); confirm this fingerprint with the site" >&2
args=(supernode register "$key")
[ -z "$connection" ] || args+=("$connection")
args+=(--name "$site")
if ! output=$("$flwr" "${args[@]}" 2>&1); then
  if grep -q "Public key already in use" <<<"$output"; then
    echo "$me: $site: this public key is already registered; nothing to do" >&2
    exit 0
  fi
  echo "$output" >&2
  die "flwr supernode register failed for $site (is the SuperLink up, and is the connection '${connection:-default}' in ${FLWR_HOME:-~/.flwr}/config.toml right?)"
fi
echo "$output"
grep -q "registered successfully" <<<"$output" || die "flwr did not confirm the registration of $site (see above)"
