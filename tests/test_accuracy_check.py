"""A model that has not learned says so: the test accuracy beside always answering the largest training class, with
a Wilson interval, and a warning in the console, metrics.json and the top of the report. One scoring-only run
(NUM_SAMPLES_TO_EXPLAIN=0) of a model trained on shuffled integer labels serves the pipeline's tests."""
import contextlib
import io
import json
import re

import numpy as np
import pandas as pd
import pytest

from hybrid_explain.metrics import checks
import train_explain
from api import class_values, predict
from conftest import run_args, write_series_csvs

CHECKPOINT = "saved_model_hybrid_explained.pth"
LABELS = {"class_0": 0, "class_1": 1, "class_2": 10}  # 10: sorted as text it would come between 1 and 2


@pytest.fixture(scope="module")
def shuffled_run(tmp_path_factory):
    """Three epochs on training labels shuffled across the rows (nothing to learn), integer labels in both files,
    scored only (NUM_SAMPLES_TO_EXPLAIN=0); returns (output folder, its console output, the test CSV)."""
    folder = tmp_path_factory.mktemp("shuffled")
    train, test = write_series_csvs(folder)
    for path in (train, test):
        frame = pd.read_csv(path)
        frame["label"] = frame["label"].map(LABELS)
        frame.to_csv(path, index=False)
    frame = pd.read_csv(train)
    frame["label"] = np.random.default_rng(0).permutation(frame["label"].to_numpy())
    frame.to_csv(train, index=False)
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        assert train_explain.main(run_args(train, test, folder / "out", "--num_samples_to_explain=0")) == 0
    return folder / "out", console.getvalue(), test


def test_the_wilson_interval_of_8_of_10_is_0_490_to_0_943():
    low, high = checks.wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)


def test_the_wilson_interval_stays_inside_0_and_1_at_no_and_every_success():
    assert checks.wilson_interval(0, 10)[0] == 0.0 and checks.wilson_interval(10, 10)[1] <= 1.0


def test_a_model_that_fits_its_rows_and_beats_the_majority_class_clearly_has_learned():
    y_true = np.repeat([0, 1], 20)
    check = checks.accuracy_check(["a", "b"], [30, 10], 0.95, y_true, y_true)
    assert check["learned"] and not check["warnings"] and check["majority_class"] == "a"
    assert check["majority_rate"] == 0.5 and check["interval_method"] == "wilson"


def test_without_labels_a_low_training_accuracy_still_warns():
    check = checks.accuracy_check(["a", "b"], [20, 20], 0.55)
    assert not check["learned"] and len(check["warnings"]) == 1 and "training accuracy" in check["warnings"][0]
    assert "test_accuracy" not in check


@pytest.mark.slow
def test_a_model_trained_on_shuffled_labels_warns_in_the_console_metrics_and_report(shuffled_run):
    out, console, _ = shuffled_run
    check = json.loads((out / "metrics.json").read_text())["accuracy_check"]
    assert check["learned"] is False and len(check["warnings"]) == 2
    low, high = check["interval_95"]
    assert low <= check["majority_rate"] and low <= check["test_accuracy"] <= high
    last = console.strip().splitlines()[-3:]
    assert last[0].startswith(f"test accuracy {check['test_accuracy']:.3f} (95 % Wilson interval")
    assert last[-1].startswith("warning: ") and "not learned its task" in last[-1] and "--epochs" in last[-1]
    page = (out / "report.html").read_text()
    box = page.index("<div class='alarm'")
    assert box < page.index("<nav>") and "has not learned its task" in page[box:box + 2000]


@pytest.mark.slow
def test_epoch_lines_carry_the_epochs_seconds_and_the_time_left(shuffled_run):
    epochs = [line for line in shuffled_run[1].splitlines() if line.startswith("epoch ")]
    assert epochs and all(re.search(r"\d\.\d\d s, about \d+ s left$", line) for line in epochs)
    assert epochs[-1].endswith("about 0 s left")


@pytest.mark.slow
def test_num_samples_to_explain_0_only_scores_and_says_the_explanations_were_skipped(shuffled_run):
    out, console, _ = shuffled_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert "NUM_SAMPLES_TO_EXPLAIN=0" in metrics["explanations_skipped"] and metrics["explained"] == []
    assert not {"shap", "gradcam", "attention", "attributions", "global", "counterfactuals"} & set(metrics)
    for name in ("predictions.csv", "confusion_matrix.png", "classification_report.txt", "report.html", CHECKPOINT):
        assert (out / name).is_file()
    assert not list(out.glob("*.npz")) and not list(out.glob("*_sample_*.png"))
    page = (out / "report.html").read_text()
    assert "Explanations skipped" in page and "<section id='samples'>" not in page
    assert "explanations skipped" in console


def test_explain_rows_with_num_samples_to_explain_0_is_a_clear_error():
    with pytest.raises(train_explain.ConfigError, match="NUM_SAMPLES_TO_EXPLAIN=0"):
        train_explain.config_from_args(["--num_samples_to_explain=0", "--explain_rows=0,1"])


@pytest.mark.slow
def test_integer_labels_come_back_from_predict_as_the_integers_of_the_file(shuffled_run):
    out, _, test = shuffled_run
    result = predict(out / CHECKPOINT, test)
    assert result.class_names == [0, 1, 10]
    assert all(type(c) is int for c in result.classes) and set(result.classes) <= set(pd.read_csv(test)["label"])


def test_a_checkpoint_of_an_earlier_version_gives_its_class_names_as_strings():
    assert class_values({"class_names": ["0", "1", "10"]}) == ["0", "1", "10"]
