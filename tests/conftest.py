"""Shared fixtures: small synthetic CSV pairs in the project's format, one short trained run, and one published
OUTPUT_DIR made by the script in a subprocess."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The test models are tiny: one thread is faster than two and never waits for a busy core.
torch.set_num_threads(1)


def write_series_csvs(folder, channels=2, length=24, classes=3, rows_per_class=8, seed=0):
    """Train and test CSVs where class k has a bump on channel k % channels at a class-specific place."""
    rng = np.random.default_rng(seed)
    paths = []
    for part in ("train", "test"):
        n = rows_per_class * classes
        y = np.repeat(np.arange(classes), rows_per_class)
        X = rng.normal(0, 0.3, size=(n, channels, length))
        for i, k in enumerate(y):
            centre = int((k + 1) * length / (classes + 1))
            X[i, k % channels, max(0, centre - 2):centre + 2] += 3.0
        names = [f"ch{c}_t{t}" for c in range(channels) for t in range(length)]
        frame = pd.DataFrame(X.reshape(n, -1), columns=names)
        frame["label"] = [f"class_{k}" for k in y]
        path = Path(folder) / f"{part}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    return paths


FAST = ["--epochs=3", "--num_samples_to_explain=2", "--num_shap_background_samples=8", "--shap_permutations=2",
        "--cnn_channels=8", "--lstm_hidden_size=8", "--attention_heads=2",
        "--baseline="]  # no MiniRocket beside the tests' runs: tests/test_baseline.py runs it


def run_args(train, test, output_dir, *extra):
    return [f"--train_csv_path={train}", f"--test_csv_path={test}", f"--output_dir={output_dir}", *FAST, *extra]


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One short pipeline run on synthetic data; returns its output folder and CSV paths."""
    import train_explain

    folder = tmp_path_factory.mktemp("run")
    train, test = write_series_csvs(folder)
    assert train_explain.main(run_args(train, test, folder / "out")) == 0
    return folder / "out", train, test


@pytest.fixture(scope="session")
def script_data(tmp_path_factory):
    """The train and test CSVs the script's subprocess tests (test_outputs.py, test_safety.py) run on."""
    return write_series_csvs(tmp_path_factory.mktemp("script_data"))


@pytest.fixture(scope="session")
def published_run(script_data, tmp_path_factory):
    """An OUTPUT_DIR holding one complete run of the script in a subprocess, as a user makes it (2 epochs, 2
    explained samples, no attribution suite or global section): one run for both files' tests, which copy it."""
    out = tmp_path_factory.mktemp("published") / "out"
    args = run_args(*script_data, out, "--attribution_methods=", "--global_explain_rows=0", "--epochs=2",
                    "--num_samples_to_explain=2")
    result = subprocess.run([sys.executable, str(ROOT / "train_explain.py"), *map(str, args)], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    return out
