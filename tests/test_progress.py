"""A run says what it is doing: its threads and drawing processes when it starts, and progress lines in each
long phase while that phase runs, as plain lines when the output is a file or a pipe (not a terminal)."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from hybrid_explain.figures import drawing
from conftest import ROOT, run_args, write_series_csvs

PROGRESS_LINE = re.compile(r"^(SHAP|attribution suite): \d+/\d+ (samples|steps) \(\d+ s\)$")


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """The lines of a short run written to a pipe, each with whether the run had published its outputs when the
    line was read (a line kept in a buffer until the end would arrive after the publication)."""
    folder = tmp_path_factory.mktemp("progress")
    train, test = write_series_csvs(folder)
    # a pipe as block-buffered as a file, and the automatic threads whatever the environment running the tests
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONUNBUFFERED", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    args = run_args(train, test, folder / "out", "--epochs=1", "--progress_seconds=0", "--drawing_processes=1")
    process = subprocess.Popen([sys.executable, str(ROOT / "train_explain.py"), *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env, cwd=folder)
    lines = [(line.rstrip("\n"), (folder / "out" / "latest").exists()) for line in process.stdout]
    assert process.wait() == 0, "\n".join(line for line, _ in lines)
    return lines


@pytest.mark.slow
def test_progress_lines_arrive_while_the_explanations_run(logged_run):
    progress = [(line, published) for line, published in logged_run if PROGRESS_LINE.match(line)]
    assert {line.split(":")[0] for line, _ in progress} == {"SHAP", "attribution suite"}
    assert not any(published for _, published in progress)
    assert not any("\r" in line for line, _ in logged_run)


@pytest.mark.slow
def test_the_log_says_the_threads_wait_policy_and_drawing_processes(logged_run):
    assert any(line.startswith("resources: torch threads 1 for training, ") and "(automatic;" in line
               and "OpenMP wait policy PASSIVE" in line and "figures drawn in this process" in line
               for line, _ in logged_run)


def test_threads_follow_the_constant_then_the_environment(monkeypatch):
    from hybrid_explain.pipeline import threads

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    assert threads.torch_threads(0, 8) == (1, 1, "automatic")  # spinning OpenMP threads: one
    monkeypatch.setenv("OMP_WAIT_POLICY", "passive")
    assert threads.torch_threads(0, 8) == (1, 8, "automatic")  # sleeping ones: every core for the explanations
    assert threads.torch_threads(3, 8) == (3, 3, "THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.torch_threads(0, 2) == (2, 2, "OMP_NUM_THREADS")


def test_a_figure_that_fails_in_a_drawing_process_fails_the_wait(tmp_path):
    from hybrid_explain.figures import drawing
    from hybrid_explain.figures import summary_figures

    with drawing.workers(2):
        summary_figures.confusion_matrix_figure(np.eye(2, dtype=int), ["a", "b"], str(tmp_path / "cm.png"))
        summary_figures.confusion_matrix_figure(np.eye(2, dtype=int), ["a", "b"], str(tmp_path / "missing" / "cm.png"))
        with pytest.raises(FileNotFoundError):
            drawing.wait()
    assert (tmp_path / "cm.png").stat().st_size > 1000


@drawing.in_background
def saved_array(values, path):
    np.save(path, np.asarray(values))


def test_a_queued_figure_shows_its_arguments_as_they_were_at_the_call(tmp_path):
    values = torch.arange(1000, dtype=torch.float32)
    with drawing.workers(2):
        saved_array(values, str(tmp_path / "a.npy"))
        values.fill_(-1.0)  # the run goes on with its buffers
        drawing.wait()
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.arange(1000, dtype=np.float32))


def test_reading_a_large_csv_says_its_bytes_as_they_are_read(tmp_path):
    """A file of several megabytes is read in parts, each part's bytes told to the progress, up to the file's size."""
    import data_loader

    train, _ = write_series_csvs(tmp_path, channels=4, length=250, rows_per_class=100)
    told = []

    class Recorder:
        def __init__(self, description, total, unit):
            told.append((description, total, unit))

        def __enter__(self):
            return lambda count=1: told.append(count)

        def __exit__(self, *exc):
            pass

    table = data_loader.read_train(train, progress=Recorder)
    (description, total, unit), counts = told[0], told[1:]
    assert (description, total, unit) == ("reading train.csv", train.stat().st_size, "byte")
    assert len([c for c in counts if c]) > 1 and sum(counts) == total
    assert table.X.shape == (300, 4, 250)
