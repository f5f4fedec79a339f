"""Nothing outside OUTPUT_DIR is ever touched, no run is ever lost, every input has a bound (issue 32), whatever
a hostile or unlucky user leaves in OUTPUT_DIR (links, copies, their own files, a clock that jumps) or gives as
data, settings or a checkpoint; run as a user would, in subprocesses. The tests of OUTPUT_DIR check the folder
around it before and after (paths, sizes, times, bytes, links not followed)."""
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import data_loader
import train_explain
from conftest import ROOT
from conftest import run_args as full_run_args
from hybrid_explain.checkpoint import load_model
from hybrid_explain.config import SETTING_RANGES
from hybrid_explain.pipeline.run_folder import MARKER

QUICK = ["--epochs=1", "--num_samples_to_explain=1", "--global_explain_rows=0", "--attribution_methods="]


def run_args(train, test, out, *extra):
    return full_run_args(train, test, out, *QUICK, *extra)


def run_script(*args, cwd=None, env=None):
    result = subprocess.run([sys.executable, str(ROOT / "train_explain.py"), *map(str, args)], capture_output=True,
                            text=True, timeout=300, cwd=cwd,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})
    return result.returncode, result.stdout, result.stderr


def one_error_line(stderr):
    return stderr.startswith("error: ") and stderr.count("\n") == 1 and "Traceback" not in stderr


def snapshot(folder, skip=None):
    """Every entry under folder (but under skip): its type, size, modification time and bytes or link target."""
    state = {}
    for parent, folders, files in os.walk(folder):  # does not follow links
        for name in folders + files:
            path = Path(parent) / name
            if skip is not None and (path == skip or skip in path.parents):
                continue
            info = path.lstat()
            content = (os.readlink(path) if stat.S_ISLNK(info.st_mode)
                       else path.read_bytes() if stat.S_ISREG(info.st_mode) else None)
            state[str(path.relative_to(folder))] = (stat.S_IFMT(info.st_mode), info.st_size, info.st_mtime_ns, content)
    return state


@pytest.fixture(scope="module")
def data(script_data):
    return script_data


@pytest.fixture(scope="module")
def published(published_run):
    """An OUTPUT_DIR holding one complete run, copied by each test (conftest's, shared with test_outputs.py)."""
    return published_run


@pytest.fixture
def surroundings(published, tmp_path):
    """(a folder holding OUTPUT_DIR, a copy of the published OUTPUT_DIR in it, and a user's folder beside it)."""
    out = tmp_path / "out"
    shutil.copytree(published, out, symlinks=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "thesis.tex").write_text("years of work")
    (elsewhere / "resume_state.pth").write_bytes(b"not ours")
    return tmp_path, out, elsewhere


def complete_runs(out):
    return sorted(p.name for p in (out / "runs").iterdir() if not p.name.endswith(".partial"))


def latest(out):
    return os.path.basename(os.readlink(out / "latest"))


# 1. A link the program did not make is never followed to delete, write or truncate
@pytest.mark.slow
def test_a_partial_run_that_is_a_link_to_another_folder_is_left_alone(data, surroundings):
    folder, out, elsewhere = surroundings
    (out / "runs" / "20200101-000000-1.partial").symlink_to(elsewhere, target_is_directory=True)
    before = snapshot(folder, skip=out)
    code, stdout, stderr = run_script(*run_args(*data, out))
    assert code == 0, stderr
    assert snapshot(folder, skip=out) == before
    assert "left runs/20200101-000000-1.partial as it is" in stdout


@pytest.mark.slow
def test_a_lock_that_is_a_link_to_another_file_is_one_error_line_and_the_file_stays(data, surroundings):
    folder, out, elsewhere = surroundings
    (out / ".lock").unlink()
    (out / ".lock").symlink_to(elsewhere / "thesis.tex")
    before = snapshot(folder)
    code, stdout, stderr = run_script(*run_args(*data, out))
    assert code == 2 and one_error_line(stderr) and ".lock is a link" in stderr, stderr
    assert snapshot(folder) == before


@pytest.mark.slow
def test_a_lock_that_is_a_hard_link_to_another_file_is_one_error_line_and_the_file_stays(data, surroundings):
    folder, out, elsewhere = surroundings
    (out / ".lock").unlink()
    os.link(elsewhere / "thesis.tex", out / ".lock")
    before = snapshot(folder, skip=out)
    code, stdout, stderr = run_script(*run_args(*data, out))
    assert code == 2 and one_error_line(stderr) and "other names" in stderr, stderr
    assert snapshot(folder, skip=out) == before


@pytest.mark.slow
def test_resuming_a_run_whose_folder_holds_a_link_is_one_error_line_and_the_target_stays(data, surroundings):
    folder, out, elsewhere = surroundings
    interrupted = out / "runs" / "20200101-000000-8.partial"
    interrupted.mkdir()
    (interrupted / MARKER).write_text("20200101-000000-8\n")
    (interrupted / "resume_state.pth").write_bytes(b"a resume state")
    (interrupted / "report.html").symlink_to(elsewhere / "thesis.tex")  # the resumed run would write through it
    before = snapshot(folder, skip=out)
    code, stdout, stderr = run_script(*run_args(*data, out, "--resume=True"))
    assert code == 2 and one_error_line(stderr) and "'report.html'" in stderr, stderr
    assert snapshot(folder, skip=out) == before


@pytest.mark.slow
def test_a_runs_folder_that_is_a_link_is_one_error_line_and_nothing_is_written_through_it(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (out / "runs").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (out / ".lock").write_text("")
    before = snapshot(tmp_path, skip=out)
    code, _, stderr = run_script(*run_args(*data, out))
    assert code == 2 and one_error_line(stderr) and "runs is a link or a file" in stderr, stderr
    assert snapshot(tmp_path, skip=out) == before


def test_pruning_removes_only_run_folders_the_program_made(tmp_path):
    """An earlier version's run (no marker) and a link named like a run outlive any number of newer runs."""
    from hybrid_explain.pipeline.run_folder import OutputFolder

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (out / "runs" / "20200101-000000-1").mkdir(parents=True)
    (out / "runs" / "20200101-000000-1" / "metrics.json").write_text("{}")
    (out / ".lock").write_text("")
    elsewhere.mkdir()
    (elsewhere / "thesis.tex").write_text("years of work")
    (out / "runs" / "20200101-000000-2").symlink_to(elsewhere, target_is_directory=True)
    before = snapshot(elsewhere)
    with OutputFolder(str(out), keep_runs=1, log=lambda message: None) as folder:
        for _ in range(3):
            with folder.staged_run():
                Path(folder.path("a.txt")).write_text(folder.run_id)
                newest = os.path.basename(folder.publish()[0])
    assert (out / "runs" / "20200101-000000-1" / "metrics.json").read_text() == "{}"
    assert complete_runs(out) == ["20200101-000000-1", "20200101-000000-2", newest] and latest(out) == newest
    assert snapshot(elsewhere) == before


# 3. A clock or time zone that jumps back never loses the run just made
@pytest.mark.slow
def test_a_run_made_after_the_clock_went_back_is_published_and_kept(data, surroundings):
    _, out, _ = surroundings
    (earlier,) = complete_runs(out)
    # twelve hours behind UTC: this run's id reads as older than the earlier one's
    code, stdout, stderr = run_script(*run_args(*data, out, "--keep_runs=1"), env={"TZ": "UTC+12"})
    assert code == 0, stderr
    (kept,) = complete_runs(out)
    assert kept != earlier and latest(out) == kept and kept < earlier
    assert (out / "metrics.json").is_file()


# 4. OUTPUT_DIR that is not the program's own: one line, and a user's files are never moved
@pytest.mark.slow
@pytest.mark.parametrize("output_dir", ["", ".", "home"])
def test_an_output_dir_that_is_empty_or_the_current_or_home_folder_is_one_error_line(data, tmp_path, output_dir):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    (work / "metrics.json").write_text("{}")  # a name the program also writes
    before = snapshot(work)
    code, stdout, stderr = run_script(*run_args(*data, work if output_dir == "home" else output_dir), cwd=work,
                                      env={"HOME": str(work), "MPLCONFIGDIR": str(tmp_path / "matplotlib")})
    assert code == 2 and one_error_line(stderr) and "OUTPUT_DIR" in stderr, stderr
    assert snapshot(work) == before


@pytest.mark.slow
def test_an_output_dir_holding_a_users_files_is_one_error_line_and_they_stay(data, tmp_path):
    out = tmp_path / "papers"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    (out / "report.html").write_text("a report of mine")
    before = snapshot(tmp_path)
    code, _, stderr = run_script(*run_args(*data, out))
    assert code == 2 and one_error_line(stderr) and "thesis.tex" in stderr, stderr
    assert snapshot(tmp_path) == before


# 9. A copy made by a tool that follows links stays usable
@pytest.mark.slow
def test_a_copy_of_output_dir_made_following_links_is_repaired_and_keeps_its_run(data, published, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(published, out)  # `latest` and the top-level names become real folders and files
    (earlier,) = complete_runs(out)
    before = snapshot(out / "runs" / earlier)
    code, stdout, stderr = run_script(*run_args(*data, out))
    assert code == 0, stderr
    assert "copied following its links" in stdout
    assert (out / "latest").is_symlink() and latest(out) != earlier and (out / "metrics.json").is_symlink()
    assert snapshot(out / "runs" / earlier) == before


# 10. A folder of a user's inside a dead run's folder: left there, and the run goes on
@pytest.mark.slow
def test_a_sub_folder_inside_a_dead_runs_folder_stays_and_later_runs_complete(data, surroundings):
    _, out, _ = surroundings
    dead = out / "runs" / "20200101-000000-7.partial"
    (dead / ".ipynb_checkpoints").mkdir(parents=True)
    (dead / ".ipynb_checkpoints" / "notebook.ipynb").write_text("{}")
    (dead / MARKER).write_text("20200101-000000-7\n")
    (dead / "shap_values.npz").write_bytes(b"left by the dead run")
    for _ in range(2):
        code, stdout, stderr = run_script(*run_args(*data, out))
        assert code == 0, stderr
    assert (dead / ".ipynb_checkpoints" / "notebook.ipynb").read_text() == "{}"
    assert not (dead / "shap_values.npz").exists()


# 5, 6. Every dimension of the input is bounded before the work that grows with it
def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, row)) for row in rows]) + "\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("fault, words", [
    ("classes", "1,001 classes, more than 1,000"),
    ("label", "characters, more than 1,000"),
    ("cell", "more than 131,072 characters"),
    ("column name", "characters, more than 1,000"),
])
def test_data_beyond_a_bound_is_one_error_line_before_training(data, tmp_path, fault, words):
    header, rows = ["label", "t0", "t1"], [[f"c{k % 2}", k, k + 1] for k in range(4)]
    if fault == "classes":
        rows = [[f"c{k}", k, 1] for k in range(1001)]
    elif fault == "label":
        rows[0][0] = "x" * 10_000_000
    elif fault == "cell":
        rows[0][1] = "1" + "0" * 200_000
    else:
        header[1] = "t" * 2_000
    bad = write_csv(tmp_path / "bad.csv", header, rows)
    code, stdout, stderr = run_script(*run_args(bad, bad, tmp_path / "out"))
    assert code == 2 and one_error_line(stderr) and words in stderr, stderr
    assert "epoch" not in stdout


def test_a_file_with_more_values_than_the_bound_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    monkeypatch.setattr(data_loader, "MAX_VALUES", 10)
    bad = write_csv(tmp_path / "bad.csv", ["label", "t0", "t1"], [[f"c{k % 2}", k, k] for k in range(6)])
    with pytest.raises(data_loader.DataError, match="more than 10 values"):
        data_loader.read_train(bad)


def test_more_shap_values_than_the_bound_are_refused_before_training(data, monkeypatch):
    monkeypatch.setattr(train_explain, "MAX_SHAP_VALUES", 100)
    with pytest.raises(train_explain.ConfigError, match="SHAP values"):
        train_explain.check_settings_fit_data(train_explain.config_from_args([]),
                                              data_loader.read_train(data[0]), None)


@pytest.mark.slow  # draws a 1,000-class confusion matrix: seconds
def test_the_confusion_matrix_of_the_largest_number_of_classes_stays_a_bounded_image(tmp_path):
    """It grew with the square of the classes: 1,000 classes drew a 66,000-pixel square (22 GB, issue 32)."""
    import numpy as np
    from PIL import Image

    from hybrid_explain.figures import base, summary_figures

    classes = SETTING_RANGES["num_classes"].high
    summary_figures.confusion_matrix_figure(np.eye(classes, dtype=int), [f"c{k}" for k in range(classes)],
                                  str(tmp_path / "cm.png"))
    with Image.open(tmp_path / "cm.png") as image:
        assert max(image.size) <= (base.MAX_FIGURE_INCHES + 2) * base.DPI


# 7, 8. One range per setting, read by the command line and the checkpoint loader alike
def test_every_numeric_setting_has_a_range_in_the_one_table():
    numeric = [name for name in train_explain.CONSTANT_NAMES
               if type(getattr(train_explain, name)) in (int, float)]
    assert [name for name in numeric if name.lower() not in SETTING_RANGES] == []


@pytest.mark.slow
@pytest.mark.parametrize("flag, name", [
    ("--seed=-1", "SEED"), ("--seed=99999999999999999999999", "SEED"),
    ("--min_pooled_length=20000000", "MIN_POOLED_LENGTH"), ("--max_pooled_length=20000000", "MAX_POOLED_LENGTH"),
    ("--learning_rate=1e999", "LEARNING_RATE"),
])
def test_a_setting_out_of_its_range_is_one_error_line(data, tmp_path, flag, name):
    code, stdout, stderr = run_script(*run_args(*data, tmp_path / "out", flag))
    assert code == 2 and one_error_line(stderr) and stderr.startswith(f"error: {name} is"), stderr


@pytest.mark.slow
def test_a_model_too_large_to_save_is_refused_before_training(data, tmp_path):
    code, stdout, stderr = run_script(*run_args(*data, tmp_path / "out", "--cnn_channels=4096"))
    assert code == 2 and one_error_line(stderr) and "parameters" in stderr and "epoch" not in stdout, stderr


@pytest.mark.slow
def test_the_largest_pooled_lengths_training_accepts_give_a_checkpoint_the_loader_accepts(data, tmp_path):
    out = tmp_path / "out"
    largest = SETTING_RANGES["max_pooled_length"].high
    assert run_script(*run_args(*data, out, f"--min_pooled_length={largest}", f"--max_pooled_length={largest}"))[0] == 0
    code, _, stderr = run_script(*run_args(*data, out, "--train=False"))
    assert code == 0, stderr


@pytest.mark.slow
@pytest.mark.parametrize("field, damage, words", [
    ("normalization", lambda c: c["normalization"].update(mean=["a"] * len(c["normalization"]["mean"])),
     "field normalization"),
    ("epoch", lambda c: c.pop("epoch"), "field epoch"),
    ("background", lambda c: c.update(background=c["background"].long()), "field background"),
    ("weights", lambda c: c["model_state_dict"]["head.weight"].view(-1)[:16].add_(1.0), "checksum"),
])
def test_a_checkpoint_with_a_field_of_the_wrong_type_or_damaged_weights_is_one_error_line(trained_run, tmp_path,
                                                                                         field, damage, words):
    out, train, test = trained_run
    checkpoint = torch.load(out / train_explain.CHECKPOINT_NAME, weights_only=True)
    damage(checkpoint)
    reuse = tmp_path / "reuse"
    reuse.mkdir()
    torch.save(checkpoint, reuse / train_explain.CHECKPOINT_NAME)
    code, stdout, stderr = run_script(*run_args(train, test, reuse, "--train=False"))
    assert code == 2 and one_error_line(stderr) and words in stderr, stderr


@pytest.mark.slow
def test_a_checkpoint_written_before_the_checksum_still_loads(trained_run, tmp_path):
    out, _, _ = trained_run
    checkpoint = torch.load(out / train_explain.CHECKPOINT_NAME, weights_only=True)
    del checkpoint["weights_sha256"]
    torch.save(checkpoint, tmp_path / "old.pth")
    model, loaded = load_model(tmp_path / "old.pth")
    assert "weights_sha256" not in loaded and not model.training
