"""Nothing lost, nothing cryptic: interruption, resumption, damaged checkpoints, bad input mid-way."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import train_explain
from conftest import ROOT, run_args, write_series_csvs

pytestmark = pytest.mark.slow  # every test here runs the whole pipeline

RESUME_ARGS = ["--epochs=40", "--early_stopping_patience=100", "--num_samples_to_explain=1"]


def snapshot(folder):
    """The files a reader sees at the top of OUTPUT_DIR (the latest run's, through their links)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


def resume_states(out):
    return list((out / "runs").glob(f"*.partial/{train_explain.RESUME_NAME}"))


def weights(folder):
    return torch.load(folder / train_explain.CHECKPOINT_NAME, weights_only=True)["model_state_dict"]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A finished run in out/, then a second run into out/ stopped by SIGINT during training."""
    folder = tmp_path_factory.mktemp("interrupt")
    train, test = write_series_csvs(folder, rows_per_class=60)
    out = folder / "out"
    assert train_explain.main(run_args(train, test, out, "--epochs=2")) == 0
    before = snapshot(out)
    # One thread, as in this test process (conftest): the resumed half must compute with the same kernels.
    process = subprocess.Popen([sys.executable, str(ROOT / "train_explain.py"), *run_args(train, test, out, *RESUME_ARGS)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while not resume_states(out) and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    return folder, train, test, out, before, process.returncode, stderr


def test_ctrl_c_during_training_exits_130_with_a_message(interrupted):
    *_, returncode, stderr = interrupted
    assert returncode == 130
    assert "interrupted" in stderr and "--resume=True" in stderr and "Traceback" not in stderr


def test_ctrl_c_leaves_the_earlier_runs_files_byte_for_byte(interrupted):
    _, _, _, out, before, _, _ = interrupted
    assert snapshot(out) == before
    assert not [p for p in out.parent.iterdir() if "staging" in p.name]


def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(interrupted):
    folder, train, test, out, _, _, _ = interrupted
    assert train_explain.main(run_args(train, test, out, *RESUME_ARGS, "--resume=True")) == 0
    assert train_explain.main(run_args(train, test, folder / "straight", *RESUME_ARGS)) == 0
    resumed, straight = weights(out), weights(folder / "straight")
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
    assert not resume_states(out) and not list((out / "runs").glob("*.partial"))


def test_resume_without_an_interrupted_run_is_a_clear_error(tmp_path, capsys):
    train, test = write_series_csvs(tmp_path)
    assert train_explain.main(run_args(train, test, tmp_path / "out", "--resume=True")) == 2
    assert "no interrupted run" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other_data"])
def test_a_damaged_or_mismatched_checkpoint_is_a_clear_error(trained_run, tmp_path, capsys, damage):
    out, train, test = trained_run
    reuse = tmp_path / "reuse"
    reuse.mkdir()
    good = (out / train_explain.CHECKPOINT_NAME).read_bytes()
    if damage == "other_data":
        train, test = write_series_csvs(tmp_path, channels=3)
        (reuse / train_explain.CHECKPOINT_NAME).write_bytes(good)
    else:
        (reuse / train_explain.CHECKPOINT_NAME).write_bytes(good[: len(good) // 2] if damage == "truncated"
                                                            else b"not a checkpoint at all")
    assert train_explain.main(run_args(train, test, reuse, "--train=False")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    # other data: the new file's columns are not the checkpoint's layout (--train=False reads only the checkpoint)
    assert ("feature columns differ from" if damage == "other_data" else "damaged") in err


def test_a_loss_that_becomes_nan_stops_with_the_likely_cause(tmp_path, capsys):
    train, test = write_series_csvs(tmp_path)
    assert train_explain.main(run_args(train, test, tmp_path / "out", "--learning_rate=1e30",
                                       "--warmup_epochs=0")) == 2
    assert "learning rate" in capsys.readouterr().err
    assert not (tmp_path / "out" / train_explain.CHECKPOINT_NAME).exists()


@pytest.mark.parametrize("content, words", [
    ("", "empty"),
    ("label,a_t0,a_t1\n", "no data rows"),
    ("label;a_t0;a_t1\nx;1;2\ny;3;4\n", "semicolons"),
    ("a_t0,a_t1\n1,2\n3,4\n", "label"),
    ("label,a_t0,a_t1\nx,,\ny,3,4\n", "missing"),  # a row without any value (a trailing empty only shortens it)
    ("label,a_t0,a_t1\nx,1,inf\ny,3,4\n", "infinite"),
    ("label,a_t0,a_t0\nx,1,2\ny,3,4\n", "twice"),
])
def test_bad_training_csv_is_one_error_line_and_the_earlier_run_stays_whole(trained_run, tmp_path, capsys, content, words):
    out = trained_run[0]
    before = snapshot(out)
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    assert train_explain.main(run_args(bad, bad, out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "bad.csv" in err and words in err.lower()
    assert snapshot(out) == before
