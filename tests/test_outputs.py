"""A run's outputs survive anything, run as a user would (subprocesses, real signals, real files): versioned
runs published in one atomic switch, a lock per OUTPUT_DIR, SIGTERM and SIGKILL, write failures, hostile
checkpoints and unbounded settings. One test per way an earlier version lost files or broke the error rule."""
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import train_explain
from conftest import ROOT
from hybrid_explain.pipeline.run_folder import MARKER, OutputFolder
from conftest import run_args as full_run_args

CHECKPOINT = "saved_model_hybrid_explained.pth"
LONG = ["--epochs=400", "--early_stopping_patience=1000"]


def run_args(*args):
    """The tests' fast settings, without the attribution suite: these tests are about files, not maps."""
    return full_run_args(*args[:3], "--attribution_methods=", *args[3:])


def start(*args, **kwargs):
    return subprocess.Popen([sys.executable, str(ROOT / "train_explain.py"), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}, **kwargs)


def run_script(*args, **kwargs):
    process = start(*args, **kwargs)
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


def one_error_line(stderr):
    return stderr.startswith("error: ") and stderr.count("\n") == 1 and "Traceback" not in stderr


def wait_for(condition, seconds=120):
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def partial_runs(out):
    return sorted((out / "runs").glob("*.partial"))


def complete_runs(out):
    return sorted(p for p in (out / "runs").iterdir() if not p.name.endswith(".partial"))


def assert_whole(run_dir):
    """Every file a run's metrics.json names is in its folder, and its report and checkpoint load. Given
    OUTPUT_DIR, the run its `latest` names."""
    if (run_dir / "latest").exists():
        run_dir = Path(os.path.realpath(run_dir / "latest"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["run"] == run_dir.name
    for i in range(len(metrics["explained"])):
        for stem in ("shap_sample", "gradcam_sample", "attention_sample"):
            assert (run_dir / f"{stem}_{i}.png").is_file(), f"{run_dir.name} lacks {stem}_{i}.png"
    torch.load(run_dir / CHECKPOINT, weights_only=True)
    assert (run_dir / "report.html").read_text().endswith("</html>")


QUICK = ["--epochs=1", "--num_samples_to_explain=1"]


@pytest.fixture(scope="module")
def data(script_data):
    return script_data


@pytest.fixture(scope="module")
def published(published_run):
    """An OUTPUT_DIR holding one complete run of 2 epochs (copied by the tests that need an earlier run; conftest's,
    shared with test_safety.py)."""
    return published_run


def copy_of(published, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(published, out, symlinks=True)
    return out


def files_of(run_dir):
    return {p.name: p.read_bytes() for p in run_dir.iterdir()}


@pytest.fixture(scope="module")
def interrupted(data, tmp_path_factory):
    """An OUTPUT_DIR whose training was stopped with Ctrl-C after its first resume state was saved."""
    out = tmp_path_factory.mktemp("interrupted") / "out"
    process = start(*run_args(*data, out, *LONG))
    wait_for(lambda: any((p / "resume_state.pth").exists() for p in partial_runs(out)) if (out / "runs").is_dir()
             else False)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode == 130
    return out


# 1. OUTPUT_DIR on another filesystem
@pytest.mark.slow
def test_an_output_dir_on_another_filesystem_publishes_and_keeps_the_earlier_run(data, published, tmp_path):
    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on a filesystem other than the test folder's")
    target = other / f"train_explain_test_{os.getpid()}"
    shutil.copytree(published, target, symlinks=True)
    try:
        out = tmp_path / "out"
        out.symlink_to(target)  # as a container volume or a mount point would be reached
        code, _, stderr = run_script(*run_args(*data, out, *QUICK))
        assert code == 0, stderr
        first, second = complete_runs(out)
        assert files_of(first) == files_of(complete_runs(published)[0])
        assert_whole(second)
        assert (out / "shap_sample_0.png").is_file() and not (out / "shap_sample_1.png").exists()
        assert os.path.realpath(out / "metrics.json") == str(second.resolve() / "metrics.json")
    finally:
        shutil.rmtree(target, ignore_errors=True)


# 2. Two runs into one folder
@pytest.mark.slow
def test_a_second_run_into_a_busy_folder_ends_at_once_naming_the_running_process(data, tmp_path):
    train, test = data
    out = tmp_path / "out"
    first = start(*run_args(train, test, out, *LONG))
    try:
        wait_for(lambda: partial_runs(out) if (out / "runs").is_dir() else False)
        code, stdout, stderr = run_script(*run_args(train, test, out, "--epochs=1"))
        assert code == 2 and one_error_line(stderr)
        assert "in use" in stderr and f"process {first.pid}" in stderr
    finally:
        first.kill()
        first.wait()


@pytest.mark.slow
def test_a_lock_left_by_a_killed_run_is_taken_over(data, tmp_path):
    train, test = data
    out = tmp_path / "out"
    first = start(*run_args(train, test, out, *LONG))
    wait_for(lambda: partial_runs(out) if (out / "runs").is_dir() else False)
    first.kill()
    first.wait()
    code, stdout, stderr = run_script(*run_args(train, test, out, "--epochs=1"))
    assert code == 0, stderr
    assert f"took over OUTPUT_DIR from the run of process {first.pid}" in stdout


# 3. Publication in one step: a reader never sees a mix, and kills at any point leave the latest run whole
def fake_run(folder, files):
    """Stage a run whose files all hold its id, and publish it."""
    with folder.staged_run():
        for name in files:
            Path(folder.path(name)).write_text(folder.run_id)
        return folder.publish()


@pytest.mark.slow
def test_a_reader_polling_while_runs_publish_always_sees_one_whole_run(tmp_path):
    """`latest`, resolved once, is always one complete run with all its files; every top-level name, read at any
    moment, is a whole file of a complete run (a reader that needs several files together resolves `latest`)."""
    out = tmp_path / "out"
    problems, seen, stop = [], set(), threading.Event()
    expected = {0: {"a.txt", "b.txt", "d.txt"}, 1: {"a.txt", "b.txt", "c.txt"}}

    def read():
        while not stop.is_set():
            run = Path(os.path.realpath(out / "latest"))
            try:
                contents = {p.name: p.read_text() for p in run.iterdir() if p.name != MARKER}
                top = (out / "a.txt").read_text()
            except FileNotFoundError as exc:
                problems.append(repr(exc))
                continue
            if set(contents.values()) != {run.name} or set(contents) not in expected.values():
                problems.append(contents)
            if not (out / "runs" / top).is_dir() and top not in seen:
                problems.append(f"a.txt names {top}, not a complete run")
            seen.add(run.name)

    with OutputFolder(str(out), keep_runs=200, log=lambda message: None) as folder:  # no pruning here
        fake_run(folder, expected[0])
        reader = threading.Thread(target=read)
        reader.start()
        try:
            for k in range(120):  # runs that write different sets of files
                fake_run(folder, expected[k % 2])
        finally:
            stop.set()
            reader.join()
    assert problems == [] and len(seen) > 10


@pytest.mark.slow
@pytest.mark.parametrize("marker", ["epoch", "test accuracy"])
def test_a_kill_at_any_point_leaves_the_latest_complete_run_whole(data, published, tmp_path, marker):
    out = copy_of(published, tmp_path)
    (run,) = complete_runs(out)
    before = files_of(run)
    process = start(*run_args(*data, out, "--epochs=60", "--num_samples_to_explain=2"))
    for line in process.stdout:
        if line.startswith(marker):
            break
    process.kill()
    process.wait()
    assert complete_runs(out) == [run] and files_of(run) == before
    assert os.path.realpath(out / "latest") == str(run.resolve())
    assert_whole(out)


@pytest.mark.parametrize("step", ["rename", "links", "switch"])
def test_a_crash_during_publication_leaves_the_latest_complete_run_whole(tmp_path, monkeypatch, step):
    """Killed between the steps of publish(): before the rename, while the links are made, before the switch."""
    from hybrid_explain.pipeline import run_folder

    out = tmp_path / "out"
    with OutputFolder(str(out), keep_runs=5, log=lambda message: None) as folder:
        first = os.path.basename(fake_run(folder, ["a.txt", "b.txt"])[0])
        original_rename, original_link = os.rename, run_folder.replace_with_symlink

        def crash_rename(*args):
            raise KeyboardInterrupt

        def crash_link(target, link):
            if step == "links" or target.startswith("runs"):
                raise KeyboardInterrupt
            original_link(target, link)

        if step == "rename":
            monkeypatch.setattr(run_folder.os, "rename", crash_rename)
        else:
            monkeypatch.setattr(run_folder, "replace_with_symlink", crash_link)
        with pytest.raises(KeyboardInterrupt):
            fake_run(folder, ["a.txt", "c.txt"])
        monkeypatch.setattr(run_folder.os, "rename", original_rename)
    assert os.path.basename(os.path.realpath(out / "latest")) == first
    assert {p.name: p.read_text() for p in out.iterdir() if p.is_file() and not p.name.startswith(".")} == \
        {"a.txt": first, "b.txt": first}


def test_without_symlinks_latest_is_a_pointer_file_and_the_top_level_files_are_copies(tmp_path, monkeypatch):
    import errno

    from hybrid_explain.pipeline import run_folder

    def no_symlinks(*args):
        raise OSError(errno.EPERM, "symlinks not supported here")

    monkeypatch.setattr(run_folder.os, "symlink", no_symlinks)
    out = tmp_path / "out"
    with OutputFolder(str(out), keep_runs=5, log=lambda message: None) as folder:
        fake_run(folder, ["a.txt", "b.txt"])
        second = os.path.basename(fake_run(folder, ["a.txt", "c.txt"])[0])
        assert folder.latest() == second
    assert (out / "latest").read_text().strip() == second
    assert {p.name: p.read_text() for p in out.iterdir() if p.is_file() and p.name.endswith(".txt")} == \
        {"a.txt": second, "c.txt": second}


# 4. A quick run does not destroy a long one
@pytest.mark.slow
def test_a_quick_run_after_a_long_one_keeps_the_long_one(data, published, tmp_path):
    out = copy_of(published, tmp_path)
    (first,) = complete_runs(out)
    long_weights = (out / CHECKPOINT).read_bytes()
    code, stdout, _ = run_script(*run_args(*data, out, *QUICK))
    assert code == 0 and f"replaces runs/{first.name} as the latest, which is kept" in stdout
    assert (first / CHECKPOINT).read_bytes() == long_weights
    code, _, _ = run_script(*run_args(*data, out, "--train=False", f"--run={first.name}", *QUICK))
    assert code == 0 and json.loads((out / "metrics.json").read_text())["best_epoch"] == 2
    assert (out / CHECKPOINT).read_bytes() == long_weights


def test_only_the_newest_keep_runs_runs_are_kept(tmp_path):
    out = tmp_path / "out"
    with OutputFolder(str(out), keep_runs=2, log=lambda message: None) as folder:
        published = [fake_run(folder, ["a.txt"])[0] for _ in range(4)]
    assert [p.name for p in complete_runs(out)] == [os.path.basename(p) for p in published[-2:]]


def test_files_of_an_earlier_flat_output_dir_are_kept_in_their_own_run(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / CHECKPOINT).write_bytes(b"weights of an earlier version")
    (out / "report.html").write_text("old report")
    with OutputFolder(str(out), keep_runs=1, log=lambda message: None) as folder:
        for _ in range(2):
            fake_run(folder, ["report.html"])
    assert (out / "runs" / "before-versioning" / CHECKPOINT).read_bytes() == b"weights of an earlier version"
    assert (out / "report.html").read_text() != "old report"


# 5. SIGTERM and SIGKILL
@pytest.mark.slow
def test_sigterm_is_handled_like_ctrl_c_and_keeps_the_resume_state_with_its_run(data, published, tmp_path):
    out = copy_of(published, tmp_path)
    process = start(*run_args(*data, out, *LONG))
    wait_for(lambda: any((p / "resume_state.pth").exists() for p in partial_runs(out)))
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143 and "terminated" in stderr and "Traceback" not in stderr
    (interrupted,) = partial_runs(out)
    assert sorted(p.name for p in interrupted.iterdir()) == [MARKER, "resume_state.pth"]
    state = (interrupted / "resume_state.pth").read_bytes()
    # neither a --train=False run nor a new training run touches it
    assert run_script(*run_args(*data, out, "--train=False", *QUICK))[0] == 0
    assert run_script(*run_args(*data, out, *QUICK))[0] == 0
    assert (interrupted / "resume_state.pth").read_bytes() == state


@pytest.mark.slow
def test_sigkill_leaves_a_staging_folder_that_the_next_run_clears_and_names(data, published, tmp_path):
    out = copy_of(published, tmp_path)
    process = start(*run_args(*data, out, "--epochs=3", "--num_samples_to_explain=2"))
    for line in process.stdout:
        if line.startswith("SHAP ("):
            break
    process.kill()
    process.wait()
    (leftover,) = partial_runs(out)
    code, stdout, _ = run_script(*run_args(*data, out, *QUICK))
    assert code == 0
    assert f"run that died from runs/{leftover.name}" in stdout or f"died: runs/{leftover.name}" in stdout
    assert all(sorted(p.name for p in run.iterdir()) == [MARKER, "resume_state.pth"] for run in partial_runs(out))


# 6. Write failures
@pytest.mark.slow
def test_an_output_dir_that_is_a_file_is_one_error_line_before_training(data, tmp_path):
    train, test = data
    (tmp_path / "out").write_text("not a folder")
    code, stdout, stderr = run_script(*run_args(train, test, tmp_path / "out"))
    assert code == 2 and one_error_line(stderr) and "is a file" in stderr
    assert "epoch" not in stdout


def without_root_privileges():
    """preexec_fn-free: setpriv drops the capabilities that let root ignore file permissions."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0:
        return []
    if not setpriv:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    drop = "-dac_override,-dac_read_search"
    return [setpriv, "--bounding-set", drop, "--inh-caps", drop, "--"]


@pytest.mark.slow
def test_a_read_only_output_dir_is_one_error_line_before_training(data, tmp_path):
    train, test = data
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = subprocess.run([*without_root_privileges(), sys.executable, str(ROOT / "train_explain.py"),
                                 *run_args(train, test, out)], capture_output=True, text=True, timeout=300)
    finally:
        out.chmod(0o755)
    assert result.returncode == 2 and one_error_line(result.stderr), result.stderr
    assert "cannot write into OUTPUT_DIR" in result.stderr and "epoch" not in result.stdout


@pytest.mark.slow
def test_a_write_that_fails_mid_run_is_one_error_line_and_leaves_nothing_partial(data, published, tmp_path):
    train, test = data
    out = copy_of(published, tmp_path)

    def small_files():  # files past 60 kB fail with EFBIG, as a full disk fails with ENOSPC (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    code, _, stderr = run_script(*run_args(train, test, out, "--epochs=2"), preexec_fn=small_files)
    assert code == 2 and one_error_line(stderr) and "could not write" in stderr, stderr
    assert partial_runs(out) == [] and len(complete_runs(out)) == 1
    assert_whole(out)


# 7. Hostile or damaged files that pass weights_only=True
@pytest.mark.slow
@pytest.mark.parametrize("field, value, words", [
    ("lstm_hidden_size", None, "hyperparameters.lstm_hidden_size"),
    ("lstm_hidden_size", "64", "hyperparameters.lstm_hidden_size"),
    ("lstm_hidden_size", 200_000, "hyperparameters.lstm_hidden_size"),
    ("cnn_channels", 4096, "parameters"),
])
def test_a_checkpoint_with_bad_hyperparameters_is_one_line_naming_the_field(trained_run, tmp_path, capsys, field,
                                                                           value, words):
    out, train, test = trained_run
    checkpoint = torch.load(out / CHECKPOINT, weights_only=True)
    if value is None:
        del checkpoint["hyperparameters"][field]
    else:
        checkpoint["hyperparameters"][field] = value
    reuse = tmp_path / "reuse"
    reuse.mkdir()
    torch.save(checkpoint, reuse / CHECKPOINT)
    assert train_explain.main(run_args(train, test, reuse, "--train=False")) == 2  # in-process: same code path
    stderr = capsys.readouterr().err
    assert one_error_line(stderr) and words in stderr, stderr


@pytest.mark.slow
def test_a_pickled_payload_is_refused(trained_run, tmp_path, capsys):
    out, train, test = trained_run
    reuse = tmp_path / "reuse"
    reuse.mkdir()
    torch.save({"model_state_dict": {}, "hyperparameters": {}, "class_names": [], "channel_names": [],
                "normalization": {}, "payload": Path("x")}, reuse / CHECKPOINT)
    assert train_explain.main(run_args(train, test, reuse, "--train=False")) == 2
    stderr = capsys.readouterr().err
    assert one_error_line(stderr) and "not a readable checkpoint" in stderr


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["missing_keys", "wrong_shapes"])
def test_a_damaged_resume_state_is_one_line_naming_the_field(data, interrupted, tmp_path, damage):
    out = copy_of(interrupted, tmp_path)
    (state_path,) = [p / "resume_state.pth" for p in partial_runs(out)]
    state = torch.load(state_path, weights_only=True)
    if damage == "missing_keys":
        del state["optimizer"]
    else:
        state["model_state_dict"]["head.weight"] = torch.zeros(1)
    torch.save(state, state_path)
    code, _, stderr = run_script(*run_args(*data, out, *LONG, "--resume=True"))
    assert code == 2 and one_error_line(stderr), stderr
    assert ("optimizer" if damage == "missing_keys" else "model_state_dict") in stderr


# 8. Unbounded settings and paths that are not files
@pytest.mark.slow
def test_a_setting_that_would_grow_without_bound_is_refused_at_once(data, tmp_path):
    train, test = data
    code, stdout, stderr = run_script(*run_args(train, test, tmp_path / "out", "--shap_permutations=10000000"))
    assert code == 2 and one_error_line(stderr) and "SHAP_PERMUTATIONS" in stderr and "epoch" not in stdout


@pytest.mark.slow
def test_a_fifo_as_a_csv_path_is_named_for_what_it_is(data, tmp_path):
    train, _ = data
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    code, _, stderr = run_script(*run_args(train, fifo, tmp_path / "out"))
    assert code == 2 and one_error_line(stderr) and "named pipe" in stderr
