"""torchrun: the same script trains data-parallel on CPU with gloo, and rank 0 alone writes outputs."""
import json
import os
import subprocess
import sys

import pytest
import torch

import train_explain
from conftest import ROOT, run_args, write_series_csvs

pytestmark = pytest.mark.slow  # every test here runs the whole pipeline

# A validation split, so rank 0's validation score is broadcast and every rank stops at the same epoch.
ARGS = ["--epochs=40", "--val_fraction=0.25", "--num_samples_to_explain=1", "--shap_method=deep"]
# Both runs of the fixture distil (DISTILL): under torchrun rank 0 fits the teacher and sends its probabilities.
DISTILL = ["--baseline=minirocket", "--distill=True"]


def torchrun(script, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), *map(str, args)], capture_output=True, text=True, timeout=400, env=env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    train, test = write_series_csvs(folder, rows_per_class=16)
    result = torchrun(ROOT / "train_explain.py", *run_args(train, test, folder / "ddp", *ARGS, *DISTILL))
    assert train_explain.main(run_args(train, test, folder / "single", *ARGS, *DISTILL)) == 0
    return folder, result


def test_torchrun_with_two_processes_exits_0_and_records_world_size_2(runs):
    folder, result = runs
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((folder / "ddp" / "metrics.json").read_text())["world_size"] == 2


def test_torchrun_writes_one_set_of_outputs(runs):
    folder, result = runs
    assert result.stdout.count("outputs in ") == 1
    assert sorted(p.name for p in folder.iterdir() if not p.suffix) == ["ddp", "single"]


def test_torchrun_accuracy_is_within_a_few_points_of_one_process(runs):
    folder, _ = runs
    ddp = json.loads((folder / "ddp" / "metrics.json").read_text())["test_accuracy"]
    single = json.loads((folder / "single" / "metrics.json").read_text())["test_accuracy"]
    assert abs(ddp - single) <= 0.1


def test_a_checkpoint_from_torchrun_loads_in_one_process(runs):
    folder, _ = runs
    model, checkpoint = train_explain.load_model(folder / "ddp" / train_explain.CHECKPOINT_NAME)
    assert not any(key.startswith("module.") for key in checkpoint["model_state_dict"])


def test_a_distilled_torchrun_records_the_same_teacher_as_one_process(runs):
    folder, _ = runs
    records = [load_model_record(folder / run) for run in ("ddp", "single")]
    assert records[0] == records[1] and records[0]["teacher"] == "minirocket"
    assert 0 < records[0]["teacher_out_of_fold_accuracy"] <= 1


TEACHER_SCRIPT = """
import sys, torch, torch.distributed as dist
from hybrid_explain.distillation import Teacher, broadcast_teacher
dist.init_process_group("gloo")
rank = dist.get_rank()
mine = Teacher(torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]]), 2.0, 0.5) if rank == 0 else None
torch.save(broadcast_teacher(mine, (3, 2), 2.0, 0.5, dist, torch.device("cpu")).probabilities, sys.argv[1] + f"/{rank}.pt")
"""


def test_every_process_learns_rank_0s_teacher_probabilities(tmp_path):
    (tmp_path / "teach.py").write_text(TEACHER_SCRIPT)
    result = torchrun(tmp_path / "teach.py", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]])
    assert all(torch.equal(torch.load(tmp_path / f"{rank}.pt"), expected) for rank in (0, 1))


def load_model_record(run):
    """checkpoint["distillation"] of a run's folder, checked against its metrics.json."""
    _, checkpoint = train_explain.load_model(run / train_explain.CHECKPOINT_NAME)
    assert json.loads((run / "metrics.json").read_text())["distillation"] == checkpoint["distillation"]
    return checkpoint["distillation"]


def test_a_failing_rank_fails_the_whole_run_with_its_error(tmp_path):
    train, test = write_series_csvs(tmp_path)
    result = torchrun(ROOT / "tests" / "rank_that_fails.py", *run_args(train, test, tmp_path / "out", *ARGS))
    assert result.returncode != 0
    assert "planted failure on rank 1" in result.stderr + result.stdout
    assert not (tmp_path / "out").exists() or list((tmp_path / "out" / "runs").iterdir()) == []  # no run, not even a partial one
