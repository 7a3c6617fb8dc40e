#!/usr/bin/env bash
# The demo on your own table: first the schema check a site would run, then a 3-site federation.
set -euo pipefail
data=${1:?usage: your_table.sh DATA.csv SCHEMA.json [OUT]}
schema=${2:?usage: your_table.sh DATA.csv SCHEMA.json [OUT]}
out=${3:-fedsynth-your-table}
fedsynth schema check --schema "$schema" --data "$data" || echo "rows that failed are quarantined; the run uses the rest"
fedsynth demo --data "$data" --schema "$schema" --out "$out" --force
