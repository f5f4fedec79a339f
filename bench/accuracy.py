"""Test accuracy of the default recipe on UCR/UEA data sets, beside published results.

    python bench/accuracy.py                          # ../shared/data, ../shared/data/dev/*, bench/data/*; seeds 0-2
    python bench/accuracy.py DIR [DIR ...] --seeds=2 --extra="--learning_rate=0.001 --dropout=0.3"

Each DIR holds train_set.csv and test_set.csv. Every (data set, seed) runs the whole pipeline
(train_explain.py in a subprocess, one explained sample so explanations stay cheap), reads its
metrics.json and the result goes in a markdown table: test accuracy mean ± sd over seeds,
seconds (train, whole run; means), and the published test accuracies on the same splits.
A data set is named by its directory; the default data ("data") is BasicMotions. bench/data/* are the
extra sets that bench/aeon_sets.py writes (a check on sets the recipe was not developed on); for a set
without a published result the 1NN-DTW column is computed here (bench/dtw_baseline.py, marked *). The
means are given over the sets with published results and over all sets.

--variable also runs every set as real recordings come (variable_length_copy): each row cut to a random
50-100 % of its length (the cells after it left empty), and in a fifth of the rows a few empty cells punched
inside the series (interpolated by the reader, MISSING_VALUES=interpolate), seeded; its accuracy is a column
beside the full-length one, which --variable leaves unchanged.
"""
import argparse
import glob
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd

from dtw_baseline import one_nn_dtw_accuracy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")

# Published test accuracies on the original splits: 1NN-DTW, and the best deep/ROCKET results.
REFERENCES = {
    "BasicMotions": (0.975, 1.00, "FCN/ResNet/InceptionTime/ROCKET 1.00"),
    "GunPoint": (0.907, 1.00, "FCN 1.00, ResNet 0.991, ROCKET 1.00"),
    "ItalyPowerDemand": (0.950, 0.970, "FCN 0.963, ResNet 0.962, ROCKET 0.970"),
    "JapaneseVowels": (0.949, 0.993, "FCN 0.973-0.993, InceptionTime 0.970-0.992"),
}


def dataset_name(directory):
    name = os.path.basename(os.path.normpath(directory))
    return "BasicMotions" if name == "data" else name


def run_pipeline(directory, seed, extra, out):
    """(metrics.json, shape text) of one whole default run on directory's CSVs, written to out."""
    command = [sys.executable, os.path.join(ROOT, "train_explain.py"),
               f"--train_csv_path={os.path.join(directory, 'train_set.csv')}",
               f"--test_csv_path={os.path.join(directory, 'test_set.csv')}",
               f"--output_dir={out}", f"--seed={seed}", "--num_samples_to_explain=1", *extra]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    shape = re.search(r"data: (\d+) training and \d+ test samples, (\d+) channels x (\d+) steps, (\d+) classes",
                      done.stdout)
    return metrics, "{}×{}×{}, {} cl.".format(*shape.groups()) if shape else "?"


GAP_ROWS = 0.2  # share of rows given interior gaps by variable_length_copy
GAPS_PER_CHANNEL = 2  # empty cells punched into each channel of such a row


def variable_length_copy(directory, out, seed=0):
    """out/train_set.csv and out/test_set.csv: directory's files with each row cut to a random 50-100 % of its
    steps (the later cells empty) and GAPS_PER_CHANNEL empty cells inside each channel of GAP_ROWS of the rows
    (never the first or last step, so the row keeps its length). Seeded: the same copy for the same seed."""
    sys.path.insert(0, ROOT)
    from data_loader import read_train

    layout = read_train(os.path.join(directory, "train_set.csv"))
    channels, length = len(layout.channel_names), layout.X.shape[2]
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    for name in ("train_set.csv", "test_set.csv"):
        frame = pd.read_csv(os.path.join(directory, name), dtype={"label": str}, keep_default_na=False)
        values = frame[layout.feature_columns].to_numpy(dtype=np.float64).reshape(len(frame), channels, length)
        for row in values:
            steps = int(rng.integers(math.ceil(0.5 * length), length + 1))
            row[:, steps:] = np.nan
            if rng.random() < GAP_ROWS and steps > 2:
                for channel in row:
                    channel[rng.choice(np.arange(1, steps - 1), min(GAPS_PER_CHANNEL, steps - 2), replace=False)] = np.nan
        frame[layout.feature_columns] = values.reshape(len(frame), -1)
        frame.to_csv(os.path.join(out, name), index=False, na_rep="")


def run_once(directory, seed, extra):
    with tempfile.TemporaryDirectory(prefix="bench_accuracy_") as out:
        return run_pipeline(directory, seed, extra, out)


def markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*", help="directories with train_set.csv and test_set.csv")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 per data set (default 3)")
    parser.add_argument("--extra", default="", help='flags passed to train_explain.py, e.g. "--epochs=50"')
    parser.add_argument("--variable", action="store_true",
                        help="also run each set cut to random lengths with gaps (variable_length_copy)")
    args = parser.parse_args()
    datasets = args.datasets or ([SHARED] + sorted(glob.glob(os.path.join(SHARED, "dev", "*", "")))
                                 + sorted(glob.glob(os.path.join(ROOT, "bench", "data", "*", ""))))
    extra = shlex.split(args.extra)

    rows, means = [], {"acc": [], "published_acc": [], "dtw": [], "best": []}
    for directory in datasets:
        name = dataset_name(directory)
        runs = []
        for seed in range(args.seeds):
            metrics, shape = run_once(os.path.abspath(directory), seed, extra)
            runs.append(metrics)
            print(f"{name} seed {seed}: accuracy {metrics['test_accuracy']:.4f}, best epoch {metrics['best_epoch']}, "
                  f"train {metrics['timings_s']['train']:.1f} s, total {metrics['timings_s']['total']:.1f} s",
                  file=sys.stderr, flush=True)
        acc = [m["test_accuracy"] for m in runs]
        mean, sd = statistics.mean(acc), statistics.stdev(acc) if len(acc) > 1 else 0.0
        variable_text = []
        if args.variable:
            with tempfile.TemporaryDirectory(prefix="bench_variable_") as copy:
                variable = []
                for seed in range(args.seeds):
                    variable_length_copy(os.path.abspath(directory), copy, seed)
                    variable.append(run_once(copy, seed, extra)[0]["test_accuracy"])
                    print(f"{name} seed {seed}, cut and gapped: accuracy {variable[-1]:.4f}", file=sys.stderr, flush=True)
            means.setdefault("variable", []).append(statistics.mean(variable))
            variable_text = [f"{statistics.mean(variable):.3f} ± "
                             f"{statistics.stdev(variable) if len(variable) > 1 else 0.0:.3f}"]
        dtw, best, published = REFERENCES.get(name, (None, None, "-"))
        means["acc"].append(mean)
        if dtw is not None:
            means["published_acc"].append(mean)
            means["dtw"].append(dtw)
            means["best"].append(best)
            dtw_text = f"{dtw:.3f}"
        else:
            dtw = one_nn_dtw_accuracy(os.path.abspath(directory))
            dtw_text = f"{dtw:.3f}*"
        rows.append([name, shape, f"{mean:.3f} ± {sd:.3f}", *variable_text,
                     "/".join(str(m["best_epoch"]) for m in runs),
                     f"{statistics.mean(m['timings_s']['train'] for m in runs):.0f}",
                     f"{statistics.mean(m['timings_s']['total'] for m in runs):.0f}",
                     dtw_text, published, "yes" if mean >= dtw else f"no ({mean - dtw:+.3f})"])
    variable_column = [""] if args.variable else []
    if means["dtw"]:
        rows.append([f"**mean of the {len(means['dtw'])} sets with published results**", "",
                     f"{statistics.mean(means['published_acc']):.3f}", *variable_column, "", "", "",
                     f"{statistics.mean(means['dtw']):.3f}", f"best per set: {statistics.mean(means['best']):.3f}", ""])
    if len(means["dtw"]) < len(means["acc"]):
        rows.append([f"**mean of all {len(means['acc'])} sets**", "", f"{statistics.mean(means['acc']):.3f}",
                     *([f"{statistics.mean(means['variable']):.3f}"] if args.variable else []), "", "", "", "", "", ""])

    header = ["data set", "shape (train rows×channels×length, classes)", f"test accuracy (mean ± sd, {args.seeds} seeds)",
              *(["cut to 50-100 % + gaps (mean ± sd)"] if args.variable else []), "best epoch per seed", "train s", "total s", "1NN-DTW", "published", "beats 1NN-DTW"]
    print(f"extra flags: {args.extra or '(none: default constants)'}\n")
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
