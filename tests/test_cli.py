"""The command line: --help, overrides, and bad input ending in one `error:` line with exit status 2."""
import subprocess
import sys

import pytest

import train_explain
from conftest import ROOT, run_args


def run_script(*args):
    return subprocess.run([sys.executable, str(ROOT / "train_explain.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def snapshot(folder):
    """The files a reader sees at the top of OUTPUT_DIR (the latest run's, through their links)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}


@pytest.mark.slow
def test_help_lists_every_constant_with_its_default():
    result = run_script("--help")
    assert result.returncode == 0
    for name in train_explain.CONSTANT_NAMES:
        assert f"--{name.lower()} " in result.stdout


def test_overrides_take_both_flag_forms_and_keep_the_default_type():
    config = train_explain.config_from_args(["--epochs=7", "--learning_rate", "1", "--output_dir=runs/x",
                                             "--train=False"])
    assert config.training.epochs == 7 and config.training.learning_rate == 1.0
    assert isinstance(config.training.learning_rate, float)
    assert config.outputs.output_dir == "runs/x" and config.outputs.train is False


@pytest.mark.slow
@pytest.mark.parametrize("args, words", [
    (["--no_such_constant=1"], "unknown flag --no_such_constant"),
    (["--epochs=ten"], "--epochs=ten is not a int"),
    (["--epochs=2.5"], "is a float, expected a int"),
    (["--batch_size=0"], "BATCH_SIZE is 0"),
    (["--attention_heads=3"], "does not divide"),
    (["--device=tpu"], "DEVICE is 'tpu'"),
    (["--kernel_size=4"], "odd"),
    (["stray"], "unexpected argument"),
    (["--epoch=3"], "unknown flag --epoch; did you mean --epochs?"),
    (["--attribution_methods=saliency,gradcm"], "gradcm, which are not methods"),
])
def test_a_bad_flag_is_one_error_line_and_exit_status_2(args, words):
    result = run_script(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and words in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.slow
def test_bad_data_keeps_the_earlier_run_whole(trained_run, tmp_path):
    out, train, _ = trained_run
    before = snapshot(out)
    broken = tmp_path / "broken.csv"
    broken.write_text("label,a_t0,a_t1\nx,1,oops\ny,2,3\n")
    result = run_script(*run_args(train, broken, out))
    assert result.returncode == 2 and result.stderr.startswith("error: ") and "broken.csv" in result.stderr
    assert snapshot(out) == before


@pytest.mark.slow
def test_a_missing_checkpoint_with_train_false_is_a_clear_error(trained_run, tmp_path):
    _, train, test = trained_run
    result = run_script(*run_args(train, test, tmp_path / "empty", "--train=False"))
    assert result.returncode == 2 and "no checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_exact_shap_with_too_many_players_fails_before_training(tmp_path, capsys):
    from conftest import write_series_csvs

    train, test = write_series_csvs(tmp_path)
    assert train_explain.main(run_args(train, test, tmp_path / "out", "--shap_method=exact")) == 2
    assert "2^players" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_attribution_methods_runs_exactly_the_methods_named(tmp_path):
    import numpy as np

    from conftest import write_series_csvs

    train, test = write_series_csvs(tmp_path)
    out = tmp_path / "out"
    assert train_explain.main(run_args(train, test, out, "--attribution_methods=saliency,shap")) == 0
    with np.load(out / "attributions.npz") as maps:
        assert sorted(maps.files) == ["saliency", "shap"]
    import json

    assert sorted(json.loads((out / "metrics.json").read_text())["attributions"]["methods"]) == ["saliency", "shap"]
