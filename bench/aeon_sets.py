"""More UCR/UEA data sets for bench/accuracy.py, from the ones the aeon package ships in its wheel.

    python bench/aeon_sets.py                 # -> bench/data/<name>/train_set.csv, test_set.csv
    python bench/accuracy.py ../shared/data ../shared/data/dev/* bench/data/*

A check that the default recipe generalizes beyond the four development sets: ArrowHead (36 training
rows x 251 steps), OSULeaf (200 x 427), ACSF1 (100 x 1,460), PickupGestureWiimoteZ (50 x 361, aeon's
equal-length version) and UnitTest (20 x 24), on their original train/test splits; and the original unequal-length
forms of JapaneseVowels (7-29 steps) and PickupGestureWiimoteZ (29-361 steps) as *_unequal (a row's cells after
its end are empty). pip downloads the
wheel (no install); the .ts files are rewritten in this project's CSV layout.
"""
import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

AEON = "aeon==1.6.0"
SETS = {"ArrowHead": "ArrowHead", "OSULeaf": "OSULeaf", "ACSF1": "ACSF1",
        "PickupGestureWiimoteZ": "PickupGestureWiimoteZ_eq", "UnitTest": "UnitTest"}
# The original, unequal-length forms of two sets (aeon's *_eq versions pad or resample them): folder -> (aeon
# folder, file stem). JapaneseVowels' equal-length form is ../shared/data/dev/JapaneseVowels.
UNEQUAL_SETS = {"JapaneseVowels_unequal": ("JapaneseVowels", "JapaneseVowels"),
                "PickupGestureWiimoteZ_unequal": ("PickupGestureWiimoteZ", "PickupGestureWiimoteZ")}


def read_ts(text):
    """(series (N, C, L), labels) from a sktime/aeon .ts file: one case per line, channels split by ':',
    the class label last. Cases of different lengths are padded with NaN after their end (empty cells in the CSV)."""
    series, labels, in_data = [], [], False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.lower().startswith("@data"):
            in_data = True
        elif in_data:
            *channels, label = line.split(":")
            series.append([[float(v) for v in channel.split(",")] for channel in channels])
            labels.append(label)
    longest = max(len(channel) for case in series for channel in case)
    padded = np.full((len(series), len(series[0]), longest), np.nan)
    for i, case in enumerate(series):
        for c, channel in enumerate(case):
            padded[i, c, :len(channel)] = channel
    return padded, labels


def write_csv(series, labels, path):
    n, channels, length = series.shape
    columns = ([f"ch{c}_t{t}" for c in range(channels) for t in range(length)] if channels > 1
               else [f"t{t}" for t in range(length)])
    frame = pd.DataFrame(series.reshape(n, -1), columns=columns)
    frame.insert(0, "label", labels)
    frame.to_csv(path, index=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).parent / "data"), help="folder for the data sets")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", folder, AEON], check=True)
        wheel = zipfile.ZipFile(next(Path(folder).glob("aeon-*.whl")))
        sources = {name: (name, stem) for name, stem in SETS.items()} | UNEQUAL_SETS
        for name, (folder_name, stem) in sources.items():
            target = Path(args.out) / name
            target.mkdir(parents=True, exist_ok=True)
            splits = {csv_name: read_ts(wheel.read(f"aeon/datasets/data/{folder_name}/{stem}_{split}.ts").decode())
                      for split, csv_name in (("TRAIN", "train_set.csv"), ("TEST", "test_set.csv"))}
            width = max(series.shape[2] for series, _ in splits.values())  # both files need the same columns
            for csv_name, (series, labels) in splits.items():
                series = np.pad(series, ((0, 0), (0, 0), (0, width - series.shape[2])), constant_values=np.nan)
                write_csv(series, labels, target / csv_name)
            print(f"{target}: {series.shape[0]} test rows, {series.shape[1]} channel(s) x {series.shape[2]} steps")


if __name__ == "__main__":
    main()
