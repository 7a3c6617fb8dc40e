#!/usr/bin/env bash
# Two bank consortia of three banks each, with the rare class oversampled to half of the synthetic table:
# card fraud (the ULB/Worldline subsample, 14.8% fraud) and credit default (Taiwan 2005, 22.1% default).
#
#   examples/bank-fraud/run.sh [OUT]          (default OUT: fedsynth-bank-fraud; about 3 minutes on 2 CPUs)
#
# For each table: a stratified 20% of the real rows is held out (public data, so the report can score the
# synthetic table on real rows no bank trained on), the rest is dealt to three simulated banks, and
# `fedsynth demo` trains the conditional DP VAE (`--generator ctvae`: the decoder takes each row's own class)
# on Flower's simulation engine and draws the pooled table with `--oversample 1=0.5`: each class from the
# generator conditioned on it, post-processing at no privacy cost, recorded in the signed manifest. Then
# `fedsynth report` adds the check on the held-out rows and `fedsynth verify` checks every signed file.
#
# Settings can be changed through the environment: ROWS (keep this many rows of each table, stratified;
# default all), ROUNDS, EPSILON, SHARE (the rare class's share of the synthetic table), EVAL_NOISE (the
# credit-default banks' evaluation release; card fraud has none, see below), SEED,
# TABLES ("card-fraud credit-default" or one of them); PYTHON and FEDSYNTH name the interpreter and the command.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-fedsynth-bank-fraud}
python=${PYTHON:-python3}
fedsynth=${FEDSYNTH:-fedsynth}
rounds=${ROUNDS:-30}
epsilon=${EPSILON:-3}
share=${SHARE:-0.5}
eval_noise=${EVAL_NOISE:-10}
seed=${SEED:-0}
tables=${TABLES:-card-fraud credit-default}

# run TABLE_NAME DATA.csv SCHEMA.json [more fedsynth demo options]
run() {
    local name=$1 table=$2 schema=$3
    shift 3
    "$python" "$here/bank_fraud.py" split "$table" "$schema" "$out/input/$name" --seed "$seed" ${ROWS:+--rows "$ROWS"}
    "$fedsynth" demo --data "$out/input/$name/banks.csv" --schema "$schema" --out "$out/$name" --force \
        --sites 3 --seed "$seed" --generator ctvae --oversample "1=$share" \
        --epsilon "$epsilon" --rounds "$rounds" "$@"
    "$fedsynth" report "$out/$name" \
        --reference-train "$out/input/$name/banks.csv" --reference-holdout "$out/input/$name/holdout.csv"
    "$fedsynth" verify "$out/$name"
}

for name in $tables; do
    case $name in
        # 2,668 rows: about 710 training rows per bank. A small network and a large sample rate keep the
        # DP noise from drowning the little each bank has (measured: examples/bank-fraud/README.md). A bank's
        # hold-out (about 180 rows) is too small for the federated evaluation release (its noise would be about
        # 58 rows per cell), so none is made and all the budget trains; the reference check scores the table.
        card-fraud) run card-fraud "$repo/data/creditcard_fraud_ulb_subsample/creditcard_fraud_subsample.csv" \
            "$repo/data/creditcard_fraud_ulb_subsample/schema.json" --hidden 64 --sample-rate 0.2 --eval-noise 0 ;;
        credit-default) run credit-default "$repo/data/credit_default_taiwan/credit_default_taiwan.csv" \
            "$repo/data/credit_default_taiwan/schema.json" --eval-noise "$eval_noise" ;;
        *) echo "run.sh: unknown table '$name' in TABLES (card-fraud, credit-default)" >&2; exit 2 ;;
    esac
done
echo
for name in $tables; do
    "$python" "$here/bank_fraud.py" summary "$out/$name"
done
