"""1-nearest-neighbour with dynamic time warping: the classic baseline, computed on any data set folder.

    python bench/dtw_baseline.py bench/data/*         # test accuracy of 1NN-DTW per folder

For the sets without a published number in bench/accuracy.py. Unconstrained DTW (no warping window)
with the squared difference as the cost of matching two steps, summed over channels (dependent DTW),
on the values as they are in the CSVs; the nearest training series gives the label. All test x
training pairs advance through the DP table together (vectorized over pairs), so the seconds grow
with length squared: measured 70 s for ACSF1 (100 x 100 pairs, 1,460 steps) and 28 s for OSULeaf
(242 x 200 pairs, 427 steps) on 2 cores.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data_loader import read_train_test  # noqa: E402


def dtw_distances(test, train):
    """(n_test, n_train) DTW distances between (n, C, L) series."""
    a = test.transpose(2, 0, 1)[:, :, None, :].astype(np.float32)   # (L, n_test, 1, C)
    b = train.transpose(2, 0, 1)[:, None, :, :].astype(np.float32)  # (L, 1, n_train, C)
    length = a.shape[0]
    previous = np.full((length + 1, a.shape[1], b.shape[2]), np.inf, dtype=np.float32)
    previous[0] = 0.0
    for i in range(length):
        cost = ((a[i] - b) ** 2).sum(axis=-1)  # (L, n_test, n_train): step i of test against every step of train
        current = np.full_like(previous, np.inf)
        for j in range(length):
            current[j + 1] = cost[j] + np.minimum(np.minimum(previous[j], previous[j + 1]), current[j])
        previous = current
    return previous[length]


def one_nn_dtw_accuracy(folder) -> float:
    train, test = read_train_test(os.path.join(folder, "train_set.csv"), os.path.join(folder, "test_set.csv"))
    nearest = dtw_distances(test.X, train.X).argmin(axis=1)
    return float((train.y[nearest] == test.y).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", help="folders with train_set.csv and test_set.csv")
    args = parser.parse_args()
    print("| data set | 1NN-DTW test accuracy | seconds |\n|---|---|---|")
    for folder in args.datasets:
        start = time.perf_counter()
        accuracy = one_nn_dtw_accuracy(folder)
        print(f"| {os.path.basename(os.path.normpath(folder))} | {accuracy:.3f} | {time.perf_counter() - start:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
