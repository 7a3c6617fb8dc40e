#!/usr/bin/env bash
# deploy/container/trial-init.sh SITE...: prepare compose.yaml's one-host trial (the `init` service runs it
# once, as root, before anything else starts).
#
# A trial shortcut, not how a consortium works: here one container makes every site's key pair and deals one
# table to the sites. In a real deployment each site makes its own key (fedsynth node-key) and keeps its own
# table, and only the .pub crosses to the coordinator (deploy/README.md).
#
# Reads /trial/input/table.csv and /etc/fedsynth/schema.json (bind mounts). Writes the consortium PKI to
# /etc/fedsynth/pki (certificate for the host name `superlink`, and 127.0.0.1 for the SuperLink's own
# ServerApp), each site's volume /trial/sites/SITE (table.csv, ca.crt, keys/), and the coordinator's flwr
# connection `trial` to /trial/coordinator/flwr-home/config.toml. Everything ends owned by the image's
# fedsynth user.
set -euo pipefail

me=trial-init.sh
die() { echo "$me: $*" >&2; exit 2; }
[ $# -ge 2 ] || die "usage: $0 SITE SITE [SITE...]"
# Container paths (compose.yaml); overridable to try the script on a host.
PKI=${TRIAL_PKI:-/etc/fedsynth/pki}
ROOT=${TRIAL_ROOT:-/trial}
SCHEMA=${TRIAL_SCHEMA_PATH:-/etc/fedsynth/schema.json}
TABLE=$ROOT/input/table.csv
COORDINATOR=$ROOT/coordinator
SUPERLINK_ADDRESS=${SUPERLINK_ADDRESS:-superlink:9092}
OWNER=${OWNER:-fedsynth:fedsynth}

if [ -e "$PKI/.trial-initialised" ]; then
  echo "$me: already initialised (to start over: docker compose -f deploy/container/compose.yaml down --volumes)"
  exit 0
fi
[ ! -e "$PKI/ca.crt" ] || die "$PKI holds a CA from an unfinished initialisation; run: docker compose -f deploy/container/compose.yaml down --volumes"
[ -r "$TABLE" ] || die "no table at $TABLE: set TRIAL_TABLE to a CSV on the host (default: data/adult/adult_train.csv)"
[ -r "$SCHEMA" ] || die "no schema at $SCHEMA: set TRIAL_SCHEMA to the table's schema.json on the host"
for site in "$@"; do [ -d "$ROOT/sites/$site" ] || die "no volume mounted at $ROOT/sites/$site (compose.yaml)"; done

fedsynth certs "$PKI" --hosts superlink 127.0.0.1 localhost >/dev/null
tables=$(mktemp -d)
fedsynth split "$TABLE" --schema "$SCHEMA" --sites $# --out "$tables"
i=0
for site in "$@"; do
  home=$ROOT/sites/$site
  fedsynth node-key "$home/keys" "$site" >/dev/null
  cp "$home/keys/supernode-$site.key.pub" "$PKI/"   # what a site sends the coordinator
  cp "$PKI/ca.crt" "$home/ca.crt"                    # what the coordinator sends a site
  mv "$tables/site-$i.csv" "$home/table.csv"
  # The sites mount their volume read only, where a failing row could not be quarantined at training time.
  fedsynth schema check --schema "$SCHEMA" --data "$home/table.csv" --quarantine "$tables/quarantine.csv" >/dev/null \
    || die "$TABLE has rows that fail $SCHEMA (fedsynth schema check); clean it first"
  chown -R "$OWNER" "$home"
  i=$((i + 1))
done
rm -rf "$tables"

mkdir -p "$COORDINATOR/flwr-home"
cat >"$COORDINATOR/flwr-home/config.toml" <<TOML
[superlink]
default = "trial"

[superlink.trial]
address = "$SUPERLINK_ADDRESS"
root-certificates = "$PKI/ca.crt"
TOML
chown -R "$OWNER" "$PKI" "$COORDINATOR"
touch "$PKI/.trial-initialised"
echo "$me: PKI, $# site volumes and the coordinator's connection 'trial' are ready"
