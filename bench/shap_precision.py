"""How far the default SHAP values lie from converged ones, on the default data (6 channels x 100 steps, 40
training rows: 60 players, 40 background rows, 80 permutations).

    python bench/shap_precision.py                   # ~25 minutes on 2 busy CPU cores (load 3-4)
    python bench/shap_precision.py --replicates=3 --estimators=default,owen    # quicker

Trains the default model through the pipeline (`train_explain.main`, its default EPOCHS, no attribution suite),
then for each estimator computes its values for the run's explained samples with --replicates independent seeds.
The spread of the replicates gives each estimate's distance to its own converged values (the values of the same
estimator with an unlimited budget): error = sqrt(sum of the values' variances over the replicates) / ||mean
values|| (relative L2, all inputs and classes), without a long reference run; for an unbiased estimator this is
what a reference of infinitely many permutations would measure. Printed per estimator: model rows per sample,
seconds per sample, the median and range over the samples of that error, and the median ratio of the estimator's
own `estimated_rel_error` to it (1 = honest).
"""
import argparse
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from hybrid_explain.explainers import shapley  # noqa: E402
import train_explain  # noqa: E402
from hybrid_explain.checkpoint import load_model  # noqa: E402


def flat_estimator(windows, scale=1, split=1):
    """(values (N, C, L, K), estimated errors (N,), model rows per sample) of interventional_shap."""
    def estimate(model, x, background, seed):
        groups = shapley.player_groups(x.shape[1], x.shape[2], windows)
        players = int(groups.max()) + 1
        permutations = scale * shapley.default_permutations(players, x.shape[2])
        values, error = shapley.interventional_shap(model, x, background, groups, num_permutations=permutations,
                                                    seed=seed, return_error=True, split=split)
        pairs = math.ceil(permutations / len(background))
        return values, error, 2 * pairs * len(background) * (players - 1)
    return estimate


def owen_estimator(windows):
    """Owen values of channel unions of windows (a walk takes the channels in random order), at the default budget."""
    def estimate(model, x, background, seed):
        groups = shapley.player_groups(x.shape[1], x.shape[2], windows)
        players = int(groups.max()) + 1
        permutations = shapley.default_permutations(players, x.shape[2])
        blocks = np.arange(players) // windows
        groups_t = torch.from_numpy(groups).long()
        values, errors = [], []
        with torch.inference_mode():
            for i in range(len(x)):
                phi, se = (part.numpy() for part in shapley._permutation_player_values(
                    model, x[i:i + 1], background, groups_t, permutations, seed, 1024, blocks))
                sizes = np.bincount(groups.reshape(-1))
                values.append(phi[:, groups] / sizes[groups][None, :, :, None])
                errors.append(shapley.relative_standard_error(phi, se, sizes))
        pairs = math.ceil(permutations / len(background))
        return np.concatenate(values), np.concatenate(errors), 2 * pairs * len(background) * (players - 1)
    return estimate


# name -> (what it is, estimator)
ESTIMATORS = {
    "default": ("Shapley values, 10 windows per channel, coarse to fine (the default; here nothing is split)",
                flat_estimator(10, split=5)),
    "budget4": ("the same at 4x the default permutations (whole pairs per row)", flat_estimator(10, scale=4)),
    "owen": ("Owen values, channels > 10 windows, the default budget", owen_estimator(10)),
    "windows25": ("Shapley values, 25 windows per channel, the default budget", flat_estimator(25)),
}


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicates", type=int, default=4, help="independent seeds per estimator")
    parser.add_argument("--estimators", default=",".join(ESTIMATORS), help="comma-separated names of ESTIMATORS")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="shap_precision_") as folder:
        status = train_explain.main([f"--output_dir={folder}", "--attribution_methods=", "--global_explain_rows=0",
                                     "--shap_method=deep"])
        if status != 0:
            raise SystemExit(f"the pipeline failed with status {status}")
        model, checkpoint = load_model(os.path.join(folder, "saved_model_hybrid_explained.pth"))
        explained = np.load(os.path.join(folder, "shap_values.npz"))
        x, background = torch.from_numpy(explained["inputs"]).float(), torch.from_numpy(explained["background"]).float()
    torch.set_num_threads(min(2, os.cpu_count()))
    print(f"\n{len(x)} samples, {x.shape[1]} channels x {x.shape[2]} steps, {len(background)} background rows, "
          f"{args.replicates} replicates; load average {os.getloadavg()[0]:.1f}\n")
    print("| estimator | model rows / sample | s / sample | error to converged (median) | range | "
          "estimated / measured (median) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.estimators.split(","):
        start = time.perf_counter()
        label, estimator = ESTIMATORS[name]
        runs = [estimator(model, x, background, seed) for seed in range(args.replicates)]
        seconds = (time.perf_counter() - start) / args.replicates / len(x)
        values = np.stack([r[0] for r in runs]).reshape(args.replicates, len(x), -1)
        error = np.sqrt(values.var(axis=0, ddof=1).sum(axis=1)) / np.linalg.norm(values.mean(axis=0), axis=1)
        estimated = np.median(np.stack([r[1] for r in runs]), axis=0)
        print(f"| {label} | {runs[0][2]:,} | {seconds:.2f} | {np.median(error):.3f} | {error.min():.3f}-"
              f"{error.max():.3f} | {np.median(estimated / error):.2f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
