"""CTGAN's centralized fit and sampling speed on a table, as the reference for ``python -m benchmarks``.

Runs in the baseline virtualenv (``.venv-bench``; see benchmarks/README.md: the ``ctgan`` package wants
pandas < 3, which fedsynth's environment does not have), started by ``benchmarks/versus_ctgan.py`` in the same
benchmark run, and prints one JSON object. CTGAN is the package as published: non-private, its transformer
fitted on the raw rows, every hyperparameter its default except ``epochs`` (300 by default) and one torch
thread, the same as a fedsynth site (``shared/device.py``).

    .venv-bench/bin/python benchmarks/ctgan_speed.py --table data/adult/adult_train.csv \
        --schema data/adult/schema.json --epochs 300 --sample-rows 100000
"""

from __future__ import annotations

import argparse
import json
import time

import pandas as pd
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--sample-rows", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from ctgan import CTGAN

    schema = json.loads(open(args.schema).read())
    columns = [c for c in schema["columns"] if not c.get("derived_from")]
    names = [c["name"] for c in columns]
    discrete = [c["name"] for c in columns if c["type"] == "categorical"]
    frame = pd.read_csv(args.table, dtype={name: "string" for name in discrete})[names]
    for name in discrete:
        frame[name] = frame[name].fillna("(missing)").astype(str)
    for column in columns:
        if column["type"] != "categorical":
            frame[column["name"]] = pd.to_numeric(frame[column["name"]]).astype(float)

    from ctgan.data_transformer import DataTransformer

    # CTGAN.fit starts by fitting this transformer; timed alone so that a short fit (--quick) can be projected
    # to the full number of epochs: transformer + epochs x (fit - transformer) / fitted epochs.
    began = time.perf_counter()
    DataTransformer().fit(frame, discrete)
    transformer_s = time.perf_counter() - began
    model = CTGAN(epochs=args.epochs)
    began = time.perf_counter()
    model.fit(frame, discrete)
    fit_s = time.perf_counter() - began

    model.sample(1_000)  # warm-up
    timings = []
    for _ in range(3):  # the median of three, as fedsynth's side (benchmarks/versus_ctgan.py)
        began = time.perf_counter()
        sample = model.sample(args.sample_rows)
        timings.append(time.perf_counter() - began)
        assert isinstance(sample, pd.DataFrame) and len(sample) == args.sample_rows
    sample_s = sorted(timings)[1]
    print(json.dumps({
        "ctgan_version": __import__("ctgan").__version__, "rows": len(frame), "epochs": args.epochs,
        "fit_s": fit_s, "transformer_fit_s": transformer_s, "sample_rows": args.sample_rows,
        "sample_s": sample_s, "sample_rows_per_s": args.sample_rows / sample_s,
    }))


if __name__ == "__main__":
    main()
