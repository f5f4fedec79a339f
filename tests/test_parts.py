"""EXPLAIN_ROWS="all": every row explained in parts, shared out over torchrun's processes, written a part at a time
and resumable (hybrid_explain/pipeline/parts.py)."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest
import torch

import train_explain
from conftest import ROOT, run_args, write_series_csvs
from hybrid_explain.model import HybridCNNLSTMAttention, predict_logits
from hybrid_explain.pipeline import parts, stages
from hybrid_explain.pipeline.metrics import schema_problems
from hybrid_explain.pipeline.run_folder import MARKER, PARTS_DIR, OutputFolder

EXPLAIN_ALL = ["--train=False", "--explain_rows=all", "--num_samples_to_explain=1", "--global_explain_rows=0"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}  # one thread, as this test process (conftest)


def script(*args, processes=None, wait=True):
    """train_explain.py in a subprocess, under torchrun with `processes` (None: plain python)."""
    launcher = [] if processes is None else ["-m", "torch.distributed.run", "--standalone",
                                             f"--nproc_per_node={processes}"]
    command = [sys.executable, *launcher, str(ROOT / "train_explain.py"), *map(str, args)]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    return subprocess.run(command, capture_output=True, text=True, timeout=400, env=ENV)


def latest_parts(out) -> dict:
    """Every array of every part of OUTPUT_DIR's latest run, by part file and array name."""
    folder = out / "latest" / PARTS_DIR
    return {(p.name, key): part[key] for p in sorted(folder.glob("part-*.npz")) for part in [np.load(p)]
            for key in part.files}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained model in out/ and a test file of 240 rows: 8 parts of PART_ROWS (32)."""
    folder = tmp_path_factory.mktemp("parts")
    train, test = write_series_csvs(folder, rows_per_class=80)
    out = folder / "out"
    assert train_explain.main(run_args(train, test, out, "--num_samples_to_explain=0")) == 0
    return train, test, out


@pytest.fixture(scope="module")
def one_and_two_processes(trained):
    """The trained model's test file explained by torchrun with 1, then with 2 processes: (results, parts each)."""
    train, test, out = trained
    explained = []
    for processes in (1, 2):
        result = script(*run_args(train, test, out, *EXPLAIN_ALL), processes=processes)
        assert result.returncode == 0, result.stderr[-3000:]
        explained.append((json.loads((out / "metrics.json").read_text()), latest_parts(out)))
    return explained


@pytest.mark.slow
def test_one_and_two_processes_write_the_same_bytes_of_every_array(one_and_two_processes):
    (_, one), (_, two) = one_and_two_processes
    assert one.keys() == two.keys() and len({name for name, _ in one}) == 8
    for key in one:
        assert one[key].dtype == two[key].dtype and one[key].tobytes() == two[key].tobytes(), key


@pytest.mark.slow
def test_two_processes_share_the_rows_and_rank_0_publishes_one_run(one_and_two_processes):
    (_, _), (metrics, arrays) = one_and_two_processes
    section = metrics["explained_in_parts"]
    assert metrics["world_size"] == 2 and section["processes"] == 2
    assert section["rows"] == section["rows_explained_now"] == 240 and section["parts"] == 8
    rows = np.concatenate([arrays[(f"part-{p:06d}.npz", "rows")] for p in range(8)])
    np.testing.assert_array_equal(rows, np.arange(240))


@pytest.mark.slow
def test_a_run_of_every_row_reports_them_and_follows_the_metrics_schema(one_and_two_processes, trained):
    (metrics, _), _ = one_and_two_processes
    out = trained[2]
    assert schema_problems(metrics) == []
    per_class = metrics["explained_in_parts"]["per_predicted_class"]
    assert sum(entry["rows"] for entry in per_class.values()) == 240
    assert all(sum(entry["top_channel"].values()) == entry["rows"] for entry in per_class.values())
    assert len((out / "explained_rows.csv").read_text().splitlines()) == 241
    assert "id='every_row'" in (out / "report.html").read_text() and (out / "explained_rows.png").is_file()


@pytest.mark.slow
def test_a_run_killed_between_parts_resumes_from_the_parts_written(one_and_two_processes, trained):
    train, test, out = trained
    process = script(*run_args(train, test, out, *EXPLAIN_ALL), wait=False)
    deadline = time.time() + 120
    while not list((out / "runs").glob(f"*.partial/{PARTS_DIR}/part-000000.npz")) and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed between parts"

    assert train_explain.main(run_args(train, test, out, *EXPLAIN_ALL, "--resume=True")) == 0
    section = json.loads((out / "metrics.json").read_text())["explained_in_parts"]
    assert 0 < section["rows"] - section["rows_explained_now"] < 240  # some parts kept, the rest explained now
    (_, straight), _ = one_and_two_processes
    resumed = latest_parts(out)
    assert resumed.keys() == straight.keys()
    assert all(resumed[key].tobytes() == straight[key].tobytes() for key in straight)
    assert not list((out / "runs").glob("*.partial"))


@pytest.mark.slow
def test_explain_rows_first_n_explains_the_first_n_rows(trained):
    train, test, out = trained
    args = [a for a in EXPLAIN_ALL if not a.startswith("--explain_rows")]
    assert train_explain.main(run_args(train, test, out, *args, "--explain_rows=first:40")) == 0
    rows = np.concatenate([a for (_, key), a in sorted(latest_parts(out).items()) if key == "rows"])
    np.testing.assert_array_equal(rows, np.arange(40))


@pytest.mark.parametrize("rule", ["first:0", "first:ten", "first:"])
def test_a_malformed_first_n_is_a_one_line_error(rule, tmp_path, capsys):
    train, test = write_series_csvs(tmp_path)
    assert train_explain.main(run_args(train, test, tmp_path / "out", f"--explain_rows={rule}")) == 2
    assert capsys.readouterr().err.startswith("error: EXPLAIN_ROWS")


# -----------------------------------------------------------------------------
# The parts on a tiny model, without a run
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = HybridCNNLSTMAttention(2, 32, 2, cnn_channels=4, lstm_hidden_size=4, attention_heads=2).eval()
    config = dataclasses.replace(train_explain.config_from_args([]).explain, shap_segments_per_channel=2,
                                 shap_permutations=2, shap_subwindows=1, ig_steps=4, counterfactual_budget=50)

    def run_of(rows: int) -> stages.RunContext:
        x = torch.randn(rows, 2, 32, generator=torch.Generator().manual_seed(rows))
        probabilities = torch.softmax(predict_logits(model, x), 1).numpy()
        y = np.arange(rows) % 2
        scored = stages.Samples(x, np.arange(rows), y, probabilities.argmax(1), probabilities, ["a", "b"], ["u", "v"])
        return stages.RunContext(model, config, scored, scored.subset([]), x[:3], None, (x, y, None))
    return run_of


def test_memory_stays_flat_in_the_rows_explained(tiny, tmp_path):
    peaks = []
    for rows in (2 * parts.PART_ROWS, 8 * parts.PART_ROWS):
        run, folder = tiny(rows), tmp_path / str(rows)
        tracemalloc.start()
        parts.explain_in_parts(run, np.arange(rows), ["saliency", "integrated_gradients"], str(folder), log=print)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert len(list(folder.glob("part-*.npz"))) == rows // parts.PART_ROWS
    assert peaks[1] <= 1.2 * peaks[0], peaks


def test_a_part_being_written_when_the_run_stopped_is_removed_and_explained_again(tiny, tmp_path):
    run, rows, folder = tiny(2 * parts.PART_ROWS), np.arange(2 * parts.PART_ROWS), tmp_path / PARTS_DIR
    plan = parts.plan_of(run, rows, ["saliency"])
    assert parts.parts_done(str(folder), plan) == set()
    (folder / "part-000000.npz").write_bytes(b"a whole part")
    (folder / ".part-000001.npz.4242.tmp").write_bytes(b"half a pa")
    assert parts.parts_done(str(folder), plan) == {0}
    assert sorted(p.name for p in folder.iterdir()) == ["part-000000.npz", "plan.json"]


def test_parts_of_another_plan_are_not_reused(tiny, tmp_path):
    run, rows, folder = tiny(2 * parts.PART_ROWS), np.arange(2 * parts.PART_ROWS), tmp_path / PARTS_DIR
    parts.parts_done(str(folder), parts.plan_of(run, rows, ["saliency"]))
    (folder / "part-000000.npz").write_bytes(b"a part of the saliency plan")
    assert parts.parts_done(str(folder), parts.plan_of(run, rows, ["saliency", "occlusion"])) == set()
    assert not (folder / "part-000000.npz").exists()


def test_every_row_of_a_part_gets_its_summary(tiny, tmp_path):
    run = tiny(parts.PART_ROWS + 5)
    written = parts.explain_in_parts(run, np.arange(parts.PART_ROWS + 5), ["saliency"], str(tmp_path), log=print)
    assert written["parts"] == 2 and len(written["rows"]) == parts.PART_ROWS + 5
    part = np.load(tmp_path / "part-000001.npz")
    assert part["shap_values"].shape == (5, 2, 32, 2) and part["map_saliency"].shape == (5, 2, 32)
    assert set(written["top_channel"]) <= {0, 1} and written["top_window"].max() < 2


# -----------------------------------------------------------------------------
# The run folder keeps an interrupted run's parts
def interrupted_run_with_parts(root):
    """OUTPUT_DIR with one run that died while explaining: its marker, a part and half a report."""
    with OutputFolder(str(root), log=lambda line: None):  # an OUTPUT_DIR of this program's
        pass
    folder = root / "runs" / "20261202-120000-1.partial"
    (folder / PARTS_DIR).mkdir(parents=True)
    (folder / MARKER).write_text("20261202-120000-1\n")
    (folder / PARTS_DIR / "part-000000.npz").write_bytes(b"part")
    (folder / "report.html").write_text("half a report")
    return folder


def test_a_dead_runs_parts_are_kept_for_resume_and_its_other_files_removed(tmp_path):
    folder = interrupted_run_with_parts(tmp_path)
    with OutputFolder(str(tmp_path), log=lambda line: None) as output:
        assert output.interrupted_runs() == ["20261202-120000-1"]
        assert output.resumable("latest") == "20261202-120000-1"
    assert sorted(p.name for p in folder.iterdir()) == sorted([MARKER, PARTS_DIR])


def test_a_file_this_program_did_not_write_among_the_parts_blocks_resume(tmp_path):
    folder = interrupted_run_with_parts(tmp_path)
    (folder / PARTS_DIR / "notes.txt").write_text("mine")
    with OutputFolder(str(tmp_path), log=lambda line: None) as output:
        with pytest.raises(Exception, match="notes.txt"):
            output.resumable("latest")
    assert (folder / PARTS_DIR / "notes.txt").read_text() == "mine"


# -----------------------------------------------------------------------------
# A new file read in parts
def test_rows_read_part_after_part_equal_the_rows_read_at_random(trained, monkeypatch):
    _, test, out = trained
    monkeypatch.setattr(stages, "CHUNK_ROWS", 50)
    checkpoint = torch.load(out / train_explain.CHECKPOINT_NAME, weights_only=False)
    rows = stages.FileRows(str(test), checkpoint, "label", checkpoint["normalization"], torch.device("cpu"))
    whole = rows[np.arange(240)]
    for index in [np.arange(0, 32), np.arange(32, 64), np.arange(200, 240), np.array([3, 130, 7]), np.arange(60, 90)]:
        np.testing.assert_array_equal(rows[index].numpy(), whole[index].numpy())
