"""A trained model on new data: an unlabelled file with its columns in another order is predicted and explained
with the checkpoint's own layout, without the training file; predictions.csv in every run; the Python API."""
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

import train_explain
from conftest import ROOT, run_args

pytestmark = pytest.mark.slow  # every test here runs the whole pipeline

CHECKPOINT = "saved_model_hybrid_explained.pth"


@pytest.fixture(scope="module")
def unlabelled_run(trained_run, tmp_path_factory):
    """The trained run's test rows without the label column, columns shuffled, scored with --train=False in a copy
    of its output folder, with a training CSV path that does not exist (the checkpoint is enough)."""
    out, _, test = trained_run
    folder = tmp_path_factory.mktemp("unlabelled")
    frame = pd.read_csv(test).drop(columns="label")
    columns = list(frame.columns)
    np.random.default_rng(0).shuffle(columns)
    new = folder / "new.csv"
    frame[columns].to_csv(new, index=False)
    copy = folder / "out"
    shutil.copytree(out, copy, symlinks=True)
    assert train_explain.main(run_args(folder / "no_such_training_file.csv", new, copy, "--train=False")) == 0
    return copy, new, out


def test_every_run_writes_predictions_with_the_true_class_when_there_are_labels(trained_run):
    out, _, test = trained_run
    predictions = pd.read_csv(out / "predictions.csv")
    labels = pd.read_csv(test)["label"]
    assert list(predictions.columns) == ["row", "predicted", "class_0", "class_1", "class_2", "true", "correct"]
    trust = pd.read_csv(out / "trust.csv", keep_default_na=False)
    assert list(trust.columns) == ["row", "prediction_set", "ood_score", "out_of_distribution"]
    assert trust["row"].tolist() == predictions["row"].tolist()
    assert predictions["row"].tolist() == list(range(len(labels)))
    assert (predictions["true"] == labels).all()
    assert (predictions["correct"] == (predictions["true"] == predictions["predicted"])).all()
    np.testing.assert_allclose(predictions[["class_0", "class_1", "class_2"]].sum(axis=1), 1, atol=1e-5)


def test_an_unlabelled_shuffled_copy_gets_the_labelled_runs_predictions_row_for_row(unlabelled_run):
    copy, _, out = unlabelled_run
    labelled = pd.read_csv(out / "predictions.csv")
    unlabelled = pd.read_csv(copy / "predictions.csv")
    assert list(unlabelled.columns) == ["row", "predicted", "class_0", "class_1", "class_2"]
    assert (unlabelled["predicted"] == labelled["predicted"]).all()
    np.testing.assert_allclose(unlabelled[["class_0", "class_1", "class_2"]], labelled[["class_0", "class_1", "class_2"]],
                               atol=1e-6)


def test_an_unlabelled_run_explains_and_says_it_has_no_labels(unlabelled_run):
    copy = unlabelled_run[0]
    metrics = json.loads((copy / "metrics.json").read_text())
    assert metrics["labelled"] is False and metrics["test_accuracy"] is None
    assert all("true" not in e for e in metrics["explained"]) and (copy / "shap_sample_0.png").is_file()
    assert (copy / "attributions.npz").is_file() and "misclassified" not in metrics["attributions"]
    assert not (copy / "confusion_matrix.png").exists() and not (copy / "classification_report.txt").exists()
    assert sum(metrics["predictions"]["predicted_class_counts"].values()) == metrics["predictions"]["rows"]


def test_the_unlabelled_report_shows_predictions_and_no_accuracy(unlabelled_run):
    page = (unlabelled_run[0] / "report.html").read_text()
    assert "test accuracy" not in page and "no labels" in page
    assert "<section id='predictions'>" in page and "The least confident rows" in page


@pytest.mark.slow
def test_an_unlabelled_reports_section_numbers_count_the_sections_shown_without_a_gap(unlabelled_run):
    from test_report import section_numbers

    numbers, shown = section_numbers((unlabelled_run[0] / "report.html").read_text())
    assert "evaluation" not in shown and "misclassified" not in shown
    assert numbers == list(range(1, len(shown) + 1))


def test_explain_rows_takes_row_numbers_or_the_least_confident(unlabelled_run, tmp_path):
    copy, new, _ = unlabelled_run
    out = tmp_path / "out"
    shutil.copytree(copy, out, symlinks=True)
    assert train_explain.main(run_args(new, new, out, "--train=False", "--explain_rows=5,0")) == 0
    assert [e["row"] for e in json.loads((out / "metrics.json").read_text())["explained"]] == [5, 0]
    assert train_explain.main(run_args(new, new, out, "--train=False", "--explain_rows=least_confident")) == 0
    explained = json.loads((out / "metrics.json").read_text())["explained"]
    confidence = pd.read_csv(out / "predictions.csv")[["class_0", "class_1", "class_2"]].max(axis=1)
    assert sorted(e["row"] for e in explained) == sorted(confidence.nsmallest(len(explained)).index.tolist())


def error_of(capsys, *args):
    assert train_explain.main(list(map(str, args))) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    return err


@pytest.mark.parametrize("change, words", [
    (lambda f: f.drop(columns="ch0_t3"), "missing 'ch0_t3'"),
    (lambda f: f.assign(extra=1.0), "extra 'extra'"),
    (lambda f: f.assign(ch2_t0=1.0), "extra 'ch2_t0'"),  # another channel
    (lambda f: f.assign(ch0_t24=1.0, ch1_t24=1.0), "extra"),  # another length
])
def test_new_data_with_other_columns_is_one_line_naming_the_file_and_columns(unlabelled_run, tmp_path, capsys,
                                                                              change, words):
    copy, new, _ = unlabelled_run
    bad = tmp_path / "bad.csv"
    change(pd.read_csv(new)).to_csv(bad, index=False)
    err = error_of(capsys, *run_args(new, bad, copy, "--train=False"))
    assert "bad.csv" in err and words in err


def test_an_unlabelled_training_file_is_one_line_naming_the_label_column(unlabelled_run, tmp_path, capsys):
    _, new, _ = unlabelled_run
    err = error_of(capsys, *run_args(new, new, tmp_path / "out"))
    assert "new.csv" in err and "'label'" in err


def test_explain_rows_out_of_range_is_one_line_naming_the_flag(unlabelled_run, capsys):
    copy, new, _ = unlabelled_run
    err = error_of(capsys, *run_args(new, new, copy, "--train=False", "--explain_rows=3,999"))
    assert "EXPLAIN_ROWS" in err and "999" in err


def test_the_api_gives_the_same_probabilities_from_a_dataframe_a_path_and_an_array(unlabelled_run):
    copy, new, _ = unlabelled_run
    checkpoint_path = copy / CHECKPOINT
    frame = pd.read_csv(new)  # float64
    from_path = train_explain.predict(checkpoint_path, new)
    from_frame = train_explain.predict(checkpoint_path, frame)
    model, checkpoint = train_explain.load_model(checkpoint_path)
    array = frame[checkpoint["feature_columns"]].to_numpy(np.float32).reshape(len(frame), 2, -1)
    from_array = train_explain.predict((model, checkpoint), array)
    np.testing.assert_allclose(from_frame.probabilities, from_path.probabilities, atol=1e-7)
    np.testing.assert_allclose(from_array.probabilities, from_path.probabilities, atol=1e-6)
    assert from_path.classes == pd.read_csv(copy / "predictions.csv")["predicted"].tolist()


def test_the_readme_snippet_runs_as_written(trained_run, tmp_path, monkeypatch):
    out, _, test = trained_run
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Reusing a trained model"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    (tmp_path / "outputs").symlink_to(out)
    shutil.copy(test, tmp_path / "new.csv")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["logits"].shape == (len(pd.read_csv(test)), 3)


def test_a_file_read_in_parts_gets_the_same_predictions_and_explanations(unlabelled_run, tmp_path, monkeypatch):
    from hybrid_explain.pipeline import stages

    copy, new, _ = unlabelled_run
    out = tmp_path / "out"
    shutil.copytree(copy, out, symlinks=True)
    monkeypatch.setattr(stages, "CHUNK_ROWS", 5)  # 24 rows: five parts, the last one short
    assert train_explain.main(run_args(new, new, out, "--train=False", "--explain_rows=23,4,10")) == 0
    whole, parts = (pd.read_csv(folder / "predictions.csv") for folder in (copy, out))
    pd.testing.assert_frame_equal(whole, parts)
    model, checkpoint = train_explain.load_model(out / CHECKPOINT)
    frame = pd.read_csv(new)
    raw = frame[checkpoint["feature_columns"]].to_numpy(np.float32).reshape(len(frame), 2, -1)[[23, 4, 10]]
    explained = np.load(out / "shap_values.npz")
    np.testing.assert_allclose(explained["inputs"], train_explain.normalize(raw, checkpoint["normalization"]))
    assert explained["indices"].tolist() == [23, 4, 10]


def test_an_unlabelled_run_has_the_global_importance_by_predicted_class(unlabelled_run):
    copy = unlabelled_run[0]
    section = json.loads((copy / "metrics.json").read_text())["global"]
    predicted = pd.read_csv(copy / "predictions.csv")["predicted"].value_counts()
    assert section["classes"] == "predicted" and section["rows"] == len(pd.read_csv(copy / "predictions.csv"))
    assert {name: entry["rows"] for name, entry in section["per_class"].items()} == predicted.to_dict()


def test_without_held_out_rows_the_probabilities_are_uncalibrated_and_every_set_holds_every_class(unlabelled_run):
    copy = unlabelled_run[0]
    trust = json.loads((copy / "metrics.json").read_text())["trust"]
    assert trust["calibration"]["calibrated"] is False and "ece_before" not in trust["calibration"]
    assert (pd.read_csv(copy / "trust.csv")["prediction_set"] == "class_0|class_1|class_2").all()
    assert "uncalibrated" in (copy / "report.html").read_text()
