#!/usr/bin/env bash
# Three hospitals share one synthetic diabetes130 table; the privacy unit is the PATIENT, not the encounter.
#
#   examples/hospital-consortium/run.sh [OUT]          (default OUT: fedsynth-hospital-consortium)
#
# Every patient's encounters stay at one hospital (dealt non-IID by admission source), each hospital uses at
# most K encounters per patient, DP-SGD samples and clips whole patients, and every epsilon is per patient.
# Settings can be changed through the environment: PATIENTS (0 = all 71,518), ROUNDS, LOCAL_STEPS, EPSILON,
# K (max encounters per patient), EVAL_NOISE (noise multiplier of the evaluation release), SEED; PYTHON and
# FEDSYNTH name the interpreter and the fedsynth command.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-fedsynth-hospital-consortium}
python=${PYTHON:-python3}
fedsynth=${FEDSYNTH:-fedsynth}
patients=${PATIENTS:-20000}
rounds=${ROUNDS:-30}
steps=${LOCAL_STEPS:-10}
epsilon=${EPSILON:-3}
k=${K:-3}
eval_noise=${EVAL_NOISE:-5}
seed=${SEED:-1}

# The simulation's input: one table holding every hospital's rows (a real consortium never has one).
mkdir -p "$out/input"
"$python" "$here/prepare.py" --source "$repo/data/diabetes130/diabetic_data_clean.csv.gz" \
    --out "$out/input/diabetes130.csv" --patients "$patients" --seed "$seed"
# What each hospital would run on its own table before joining.
"$fedsynth" schema check --schema "$here/schema.json" --data "$out/input/diabetes130.csv"
"$fedsynth" demo --data "$out/input/diabetes130.csv" --schema "$here/schema.json" --out "$out" --force \
    --sites 3 --split non-iid --split-by admission_source_id --seed "$seed" \
    --epsilon "$epsilon" --max-rows-per-unit "$k" --rounds "$rounds" --local-steps "$steps" \
    --eval-noise "$eval_noise"
"$fedsynth" verify "$out"
"$fedsynth" ledger verify "$out/ledger.json"
