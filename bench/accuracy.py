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

The bake-off columns are the test accuracies of resample 0 (the default train/test split) in the 2023 "bake off
redux" (Middlehurst, Schäfer and Bagnall, "Bake off redux: a review and experimental evaluation of recent time
series classification algorithms", 2024), read at run time from the results files that ship in the tsml-eval
wheel (pip downloads it, no install; --bakeoff_wheel=PATH reads a wheel already here): ResNet, InceptionTime and
H-InceptionTime (ensembles of 5 networks), MR-Hydra, HC2 and 1NN-DTW, for every set they cover ("-" where a
classifier has no result). A summary line compares the mean over the sets with an H-InceptionTime result with
H-InceptionTime's mean on the same sets, and a column gives each set's distance to H-InceptionTime.
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
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from aeon_sets import SETS as AEON_STEMS
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


BAKEOFF = "tsml-eval==0.6.0"
BAKEOFF_RESULTS = "tsml_eval/publications/2023/tsc_bakeoff/results/"
BAKEOFF_CLASSIFIERS = ["ResNet", "InceptionTime", "H-InceptionTime", "MR-Hydra", "HC2", "1NN-DTW"]
BAKEOFF_TARGET = "H-InceptionTime"  # the summary line and the distance column compare with it


def bakeoff_accuracies(wheel=None) -> dict:
    """{classifier: {data set: test accuracy of resample 0}} for BAKEOFF_CLASSIFIERS, from the bake-off's
    <classifier>_accuracy.csv files in the tsml-eval wheel (one row per data set, a column per resample). A
    classifier's file may sit in several folders (its family's and best/, which adds the equal-length versions
    of unequal sets such as PickupGestureWiimoteZ_eq); their rows are merged."""
    with tempfile.TemporaryDirectory() as folder:
        if wheel is None:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", folder, BAKEOFF],
                           check=True)
            wheel = next(Path(folder).glob("tsml_eval-*.whl"))
        archive = zipfile.ZipFile(wheel)
        results = {name: {} for name in BAKEOFF_CLASSIFIERS}
        for path in archive.namelist():
            classifier = os.path.basename(path).removesuffix("_accuracy.csv")
            if path.startswith(BAKEOFF_RESULTS) and path.endswith("_accuracy.csv") and classifier in results:
                lines = archive.read(path).decode().splitlines()
                if lines[0].split(",")[:2] != ["Resamples:", "0"]:
                    sys.exit(f"{wheel}: {path} does not start with the resample columns 'Resamples:,0,...'")
                for line in lines[1:]:
                    dataset, resample0 = line.split(",")[:2]
                    results[classifier][dataset] = float(resample0)
    missing = [name for name, table in results.items() if not table]
    if missing:
        sys.exit(f"{wheel}: no bake-off results for {', '.join(missing)} under {BAKEOFF_RESULTS}")
    return results


def bakeoff_row(results: dict, name: str) -> dict:
    """{classifier: accuracy} of the data set `name` (its aeon stem, e.g. PickupGestureWiimoteZ_eq, where the
    bake-off has that version); classifiers without a result are left out."""
    stem = AEON_STEMS.get(name, name)
    return {c: table.get(stem, table.get(name)) for c, table in results.items()
            if table.get(stem, table.get(name)) is not None}


def mean_sd(values) -> str:
    """"mean ± sd" of a set's accuracies over seeds (sd 0 for one seed), as every accuracy table writes it."""
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.3f}"


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
    parser.add_argument("--bakeoff_wheel", help=f"a {BAKEOFF} wheel already downloaded (default: pip downloads it)")
    args = parser.parse_args()
    bakeoff = bakeoff_accuracies(args.bakeoff_wheel)
    datasets = args.datasets or ([SHARED] + sorted(glob.glob(os.path.join(SHARED, "dev", "*", "")))
                                 + sorted(glob.glob(os.path.join(ROOT, "bench", "data", "*", ""))))
    extra = shlex.split(args.extra)

    rows, means = [], {"acc": [], "published_acc": [], "dtw": [], "best": [], "bakeoff_acc": [], "target": []}
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
            variable_text = [mean_sd(variable)]
        dtw, best, published = REFERENCES.get(name, (None, None, "-"))
        scores = bakeoff_row(bakeoff, name)
        means["acc"].append(mean)
        if dtw is not None:
            means["published_acc"].append(mean)
            means["dtw"].append(dtw)
            means["best"].append(best)
            dtw_text = f"{dtw:.3f}"
        elif "1NN-DTW" in scores:
            dtw = scores["1NN-DTW"]
            dtw_text = f"{dtw:.3f}‡"
        else:
            dtw = one_nn_dtw_accuracy(os.path.abspath(directory))
            dtw_text = f"{dtw:.3f}*"
        if BAKEOFF_TARGET in scores:
            means["bakeoff_acc"].append(mean)
            means["target"].append(scores[BAKEOFF_TARGET])
        rows.append([name, shape, f"{mean:.3f} ± {sd:.3f}", *variable_text,
                     "/".join(str(m["best_epoch"]) for m in runs),
                     f"{statistics.mean(m['timings_s']['train'] for m in runs):.0f}",
                     f"{statistics.mean(m['timings_s']['total'] for m in runs):.0f}",
                     dtw_text, published, "yes" if mean >= dtw else f"no ({mean - dtw:+.3f})",
                     *[f"{scores[c]:.3f}" if c in scores else "-" for c in BAKEOFF_CLASSIFIERS],
                     f"{mean - scores[BAKEOFF_TARGET]:+.3f}" if BAKEOFF_TARGET in scores else "-"])
    variable_column = [""] if args.variable else []
    bakeoff_columns = [""] * (len(BAKEOFF_CLASSIFIERS) + 1)
    if means["dtw"]:
        rows.append([f"**mean of the {len(means['dtw'])} sets with published results**", "",
                     f"{statistics.mean(means['published_acc']):.3f}", *variable_column, "", "", "",
                     f"{statistics.mean(means['dtw']):.3f}", f"best per set: {statistics.mean(means['best']):.3f}", "",
                     *bakeoff_columns])
    if means["target"]:
        target = [""] * len(BAKEOFF_CLASSIFIERS)
        target[BAKEOFF_CLASSIFIERS.index(BAKEOFF_TARGET)] = f"{statistics.mean(means['target']):.3f}"
        rows.append([f"**mean of the {len(means['target'])} sets with bake-off results**", "",
                     f"{statistics.mean(means['bakeoff_acc']):.3f}", *variable_column, "", "", "", "", "", "",
                     *target, f"{statistics.mean(means['bakeoff_acc']) - statistics.mean(means['target']):+.3f}"])
    if len(means["acc"]) > max(len(means["dtw"]), len(means["target"])):
        rows.append([f"**mean of all {len(means['acc'])} sets**", "", f"{statistics.mean(means['acc']):.3f}",
                     *([f"{statistics.mean(means['variable']):.3f}"] if args.variable else []), "", "", "", "", "", "",
                     *bakeoff_columns])

    header = ["data set", "shape (train rows×channels×length, classes)", f"test accuracy (mean ± sd, {args.seeds} seeds)",
              *(["cut to 50-100 % + gaps (mean ± sd)"] if args.variable else []), "best epoch per seed", "train s",
              "total s", "1NN-DTW", "published", "beats 1NN-DTW", *[f"{c} (bake-off)" for c in BAKEOFF_CLASSIFIERS],
              f"minus {BAKEOFF_TARGET}"]
    print(f"extra flags: {args.extra or '(none: default constants)'}\n")
    print(markdown_table(header, rows))
    print(f"\nBake-off columns: test accuracy of resample 0 (the default split) in {BAKEOFF_RESULTS} of {BAKEOFF} "
          "(Middlehurst, Schäfer and Bagnall 2024, \"Bake off redux\"); InceptionTime and H-InceptionTime are "
          "ensembles of 5 networks. 1NN-DTW: published; ‡ from the bake-off; * computed by bench/dtw_baseline.py.")
    if means["target"]:
        print(f"Mean over the {len(means['target'])} sets with a {BAKEOFF_TARGET} result: "
              f"{statistics.mean(means['bakeoff_acc']):.3f} against {BAKEOFF_TARGET}'s "
              f"{statistics.mean(means['target']):.3f} "
              f"({statistics.mean(means['bakeoff_acc']) - statistics.mean(means['target']):+.3f}).")


if __name__ == "__main__":
    main()
