#!/usr/bin/env bash
# Five simulated sites holding different mixtures of Adult (non-IID by `relationship`), epsilon 1 per site.
set -euo pipefail
out=${1:-fedsynth-adult-non-iid}
fedsynth demo --out "$out" --sites 5 --split non-iid --split-by relationship --epsilon 1 --force
fedsynth verify "$out"
