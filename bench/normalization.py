"""Test accuracy of each normalization, on data sets as they come and with every row rescaled, from training alone.

    python bench/normalization.py ../shared/data ../shared/data/dev/* bench/data/* --seeds=2 --jobs=2
    python bench/normalization.py bench/data/ArrowHead --variants=per_channel,per_series --extra="--epochs=100"

Real recordings come at every amplitude: a quiet sensor beside a loud one, a small appliance beside a heater. The
UCR/UEA sets are z-normalized row by row already, which hides what a normalization does with that. So each data
set is also run as a rescaled copy: every row (all of its channels) multiplied by its own factor 10**u, u uniform
in [-2, 2] (0.01 to 100), seeded. Variants (--variants, comma-separated):

    per_channel             --normalization=per_channel (the training file's per-channel statistics only)
    per_series              --normalization=per_series --amplitude_features=False (the shape alone)
    per_series+amplitude    --normalization=per_series --amplitude_features=True (the shape, and each channel's
                            mean and log std as inputs to the classifier)
    per_series+amplitude-length   as above with --length_feature=False (the length input matters only where
                            the rows differ in length)

Each (set, copy, variant, seed) trains with train_explain's own code (bench/ensembles.trained_logits, one torch
thread per job) and scores the test file; the table gives mean test accuracy over the seeds.
"""
import argparse
import concurrent.futures
import multiprocessing
import os
import shlex
import statistics
import sys
import tempfile

import numpy as np
import pandas as pd

from ensembles import accuracy, trained_logits

VARIANTS = {
    "per_channel": ["--normalization=per_channel"],
    "per_series": ["--normalization=per_series", "--amplitude_features=False"],
    "per_series+amplitude": ["--normalization=per_series", "--amplitude_features=True"],
    "per_series+amplitude-length": ["--normalization=per_series", "--amplitude_features=True",
                                    "--length_feature=False"],
}


def rescaled_copy(directory, out, seed=0):
    """out/train_set.csv and out/test_set.csv: directory's files with every row's values multiplied by 10**u,
    u ~ uniform(-2, 2) per row, seeded (empty cells stay empty)."""
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    for name in ("train_set.csv", "test_set.csv"):
        frame = pd.read_csv(os.path.join(directory, name), dtype={"label": str}, keep_default_na=False,
                            na_values=[""])
        features = [c for c in frame.columns if c != "label"]
        frame[features] = frame[features].to_numpy(dtype=np.float64) * 10.0 ** rng.uniform(-2, 2, (len(frame), 1))
        frame.to_csv(os.path.join(out, name), index=False)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", help="directories with train_set.csv and test_set.csv")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per data set (default 2)")
    parser.add_argument("--first_seed", type=int, default=0, help="the seeds are first_seed .. first_seed + seeds - 1")
    parser.add_argument("--variants", default="per_channel,per_series,per_series+amplitude",
                        help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--copies", default="as_is,rescaled", help="as_is, rescaled or both")
    parser.add_argument("--extra", default="", help='flags for train_explain.py, e.g. "--epochs=100"')
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once (default 1)")
    args = parser.parse_args()
    variants, copies = args.variants.split(","), args.copies.split(",")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    with tempfile.TemporaryDirectory() as scratch:
        sources = {}
        for directory in args.datasets:
            name = os.path.basename(os.path.normpath(directory))
            name = "BasicMotions" if name == "data" else name
            if "as_is" in copies:
                sources[(name, "as_is")] = os.path.abspath(directory)
            if "rescaled" in copies:
                sources[(name, "rescaled")] = rescaled_copy(directory, os.path.join(scratch, name))
        results = {}
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            futures = {pool.submit(trained_logits, path, seed, [*VARIANTS[v], *shlex.split(args.extra)]):
                       (name, copy, v, seed)
                       for (name, copy), path in sources.items() for v in variants for seed in seeds}
            for future in concurrent.futures.as_completed(futures):
                logits, y, seconds = future.result()
                results[futures[future]] = accuracy(logits, y)
                print(f"{' '.join(map(str, futures[future]))}: {results[futures[future]]:.4f} ({seconds:.0f} s)",
                      file=sys.stderr, flush=True)
    header = ["data set"] + [f"{v}, {c.replace('_', ' ')}" for v in variants for c in copies]
    print(f"extra flags: {args.extra or '(none)'}; mean test accuracy over seeds {seeds.start}-{seeds.stop - 1}\n")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for name in dict.fromkeys(name for name, _ in sources):
        cells = [statistics.mean(results[(name, c, v, s)] for s in seeds) for v in variants
                 for c in copies]
        print(f"| {name} | " + " | ".join(f"{a:.3f}" for a in cells) + " |")


if __name__ == "__main__":
    main()
