"""Test accuracy of one network and of ensembles, from the training phase alone (no explanations).

    python bench/ensembles.py bench/data/ArrowHead bench/data/ACSF1 --seeds=3 --size=3 --jobs=2
    python bench/ensembles.py bench/data/ArrowHead --seeds=3 --size=1 --extra="--conv_front_end=inception"

For every data set (a directory with train_set.csv and test_set.csv) and seed 0 .. N-1 it trains, with
train_explain's own training code and constants (as --extra overrides them), one network and, with --size=K > 1,
an ENSEMBLE_SIZE=K model, and scores the test file. The table gives per set: the single networks' accuracy (mean
± sd over seeds); the mean accuracy over every K of the single networks averaged afterwards (networks trained
apart, their logits averaged: what ENSEMBLE_SIZE=K should match); the ENSEMBLE_SIZE=K models' accuracy (mean ±
sd); training seconds of each. --jobs runs that many trainings at once, one torch thread each (the seconds are
then those of a shared machine). A check of candidates, not a benchmark of the whole run: bench/accuracy.py
runs the pipeline.
"""
import argparse
import concurrent.futures
import itertools
import multiprocessing
import os
import shlex
import statistics
import sys
import time

import numpy as np

from accuracy import mean_sd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def trained_logits(directory, seed, extra):
    """(test logits (N, K) as an array, test labels, training seconds) of one model trained on directory."""
    sys.path.insert(0, ROOT)
    import torch

    import train_explain as te

    torch.set_num_threads(1)
    config = te.config_from_args([*extra, f"--seed={seed}"])
    train, test = te.read_train_test(os.path.join(directory, "train_set.csv"), os.path.join(directory, "test_set.csv"))
    normalization = te.fit_normalization(train.X, train.filled)
    train_x = torch.from_numpy(te.normalize(train.X, normalization, train.lengths))
    torch.manual_seed(seed)
    model = te.build_model(te.model_hyperparameters(config.model, train))
    fit = te.CustomDataset(train_x, train.y, train.lengths)
    none = te.CustomDataset(train_x[:0], train.y[:0])
    started = time.perf_counter()
    resume = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"bench_ensembles_{os.getpid()}.pt")
    state = te.train_model(model, fit, none, config.training, resume, log=lambda message: None)[1]
    seconds = time.perf_counter() - started
    os.remove(resume)
    model.load_state_dict(state)
    test_x = te.normalize(test.X, normalization, test.lengths)
    return te.predict_logits(model, test_x, lengths=test.lengths).numpy(), test.y, seconds


def accuracy(logits, y) -> float:
    return float((logits.argmax(1) == y).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", help="directories with train_set.csv and test_set.csv")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 per data set (default 3)")
    parser.add_argument("--size", type=int, default=3, help="networks per ensemble (1: single networks only)")
    parser.add_argument("--extra", default="", help='flags for train_explain.py, e.g. "--epochs=100"')
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once (default 1)")
    args = parser.parse_args()
    extra = shlex.split(args.extra)
    tasks = {(directory, seed, 1): extra for directory in args.datasets for seed in range(args.seeds)}
    if args.size > 1:
        tasks.update({(directory, seed, args.size): [*extra, f"--ensemble_size={args.size}"]
                      for directory in args.datasets for seed in range(args.seeds)})
    results = {}
    context = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: torch threads set there
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = {pool.submit(trained_logits, os.path.abspath(d), seed, flags): (d, seed, size)
                   for (d, seed, size), flags in tasks.items()}
        for future in concurrent.futures.as_completed(futures):
            key = futures[future]
            results[key] = future.result()
            print(f"{os.path.basename(os.path.normpath(key[0]))} seed {key[1]} size {key[2]}: accuracy "
                  f"{accuracy(*results[key][:2]):.4f}, train {results[key][2]:.0f} s", file=sys.stderr, flush=True)

    k = args.size
    header = ["data set", f"one network ({args.seeds} seeds)", "train s"]
    if k > 1:
        header += [f"mean of {k} networks trained apart (all {k}-subsets of the seeds)",
                   f"ENSEMBLE_SIZE={k} ({args.seeds} seeds)", "train s"]
    rows = []
    for directory in args.datasets:
        single = [results[(directory, seed, 1)] for seed in range(args.seeds)]
        y = single[0][1]
        row = [os.path.basename(os.path.normpath(directory)), mean_sd([accuracy(l, y) for l, _, _ in single]),
               f"{statistics.mean(s for _, _, s in single):.0f}"]
        if k > 1:
            apart = [accuracy(np.mean([single[i][0] for i in subset], axis=0), y)
                     for subset in itertools.combinations(range(args.seeds), k)]
            together = [results[(directory, seed, k)] for seed in range(args.seeds)]
            row += [f"{statistics.mean(apart):.3f}" if apart else "-",
                    mean_sd([accuracy(l, y) for l, _, _ in together]), f"{statistics.mean(s for _, _, s in together):.0f}"]
        rows.append(row)
    print(f"extra flags: {args.extra or '(none: default constants)'}\n")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
