"""Scoring new data with --train=False: throughput and peak memory on synthetic files of 10,000 and 100,000 rows.

    python bench/scoring.py                  # 6 channels x 100 steps, like the default data
    python bench/scoring.py --rows 10000 50000 --channels 1 --length 500

Trains the default model for 2 epochs on 120 synthetic rows (the pipeline, into a temporary OUTPUT_DIR), then
runs `--train=False` on an unlabelled file of each size in one child process each, explaining one row without
the attribution suite, and prints per file: the CSV's size, the seconds of the scoring phase and the whole run,
rows scored per second, and the child's peak RSS (ru_maxrss). The file is read in parts of stages.CHUNK_ROWS
rows, so the peak should not grow with the file: the ratio of the largest file's peak to the smallest's says it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def synthetic(rows, channels, length, seed, labelled):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, rows)
    X = rng.normal(size=(rows, channels, length)).astype(np.float32)
    X[np.arange(rows), 0, (y + 1) * length // 4] += 3.0
    frame = pd.DataFrame(X.reshape(rows, -1), columns=[f"c{c}_t{t}" for c in range(channels) for t in range(length)])
    if labelled:
        frame["label"] = [f"k{k}" for k in y]
    return frame


def run(args):
    """(seconds, peak RSS in MiB) of one child process of the pipeline."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(ROOT / "train_explain.py"), *args], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"train_explain.py {' '.join(args)} failed: {stderr.strip()}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--channels", type=int, default=6)
    parser.add_argument("--length", type=int, default=100)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for part, seed in (("train", 0), ("test", 1)):
            synthetic(120, options.channels, options.length, seed, True).to_csv(folder / f"{part}.csv", index=False)
        out = folder / "out"
        run([f"--train_csv_path={folder / 'train.csv'}", f"--test_csv_path={folder / 'test.csv'}",
             f"--output_dir={out}", "--epochs=2", "--num_samples_to_explain=1", "--attribution_methods="])
        print("| rows | CSV MB | scoring s | run s | rows/s | peak RSS MiB |\n|---|---|---|---|---|---|")
        peaks = []
        for rows in options.rows:
            new = folder / f"new_{rows}.csv"
            synthetic(rows, options.channels, options.length, 2, False).to_csv(new, index=False)
            seconds, peak = run([f"--test_csv_path={new}", f"--output_dir={out}", "--train=False",
                                 "--num_samples_to_explain=1", "--attribution_methods=", "--keep_runs=1"])
            scoring = json.loads((out / "metrics.json").read_text())["timings_s"]["evaluate"]
            peaks.append(peak)
            print(f"| {rows:,} | {new.stat().st_size / 1e6:,.0f} | {scoring:.1f} | {seconds:.1f} | "
                  f"{rows / scoring:,.0f} | {peak:,.0f} |")
            new.unlink()
        print(f"\npeak RSS of {options.rows[-1]:,} rows / {options.rows[0]:,} rows: {peaks[-1] / peaks[0]:.2f}")


if __name__ == "__main__":
    main()
