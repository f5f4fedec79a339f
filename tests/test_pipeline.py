"""End to end: one short run writes every output of the contract, and the checkpoint rebuilds the model."""
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

import train_explain
from conftest import run_args, write_series_csvs

pytestmark = pytest.mark.slow  # every test here runs the whole pipeline

CONTRACT_FILES = ["saved_model_hybrid_explained.pth", "train_results_hybrid_explained.csv",
                  "train_plots_hybrid_explained.eps", "train_plots_hybrid_explained.png", "confusion_matrix.png",
                  "classification_report.txt", "shap_values.npz", "metrics.json", "report.html"]


def test_a_run_writes_every_contract_output(trained_run):
    out, _, _ = trained_run
    assert all((out / name).is_file() for name in CONTRACT_FILES)
    for stem in ("shap_sample_0", "gradcam_sample_1", "attention_sample_0", "shap_summary_bar", "shap_summary_per_class"):
        assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_leaves_no_staging_folder_behind(trained_run):
    out, _, _ = trained_run
    assert [p.name for p in out.parent.iterdir() if "staging" in p.name] == []


def test_training_history_has_one_row_per_epoch_with_the_contract_columns(trained_run):
    history = pd.read_csv(trained_run[0] / "train_results_hybrid_explained.csv")
    assert list(history.columns) == train_explain.HISTORY_COLUMNS
    assert history["epoch"].tolist() == [1, 2, 3]


def test_metrics_hold_accuracy_timings_and_the_measured_shap_additivity(trained_run):
    out = trained_run[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["num_parameters"] > 0
    assert {"load", "train", "evaluate", "shap", "gradcam", "attention", "total"} <= set(metrics["timings_s"])
    z = np.load(out / "shap_values.npz")
    gap = z["outputs"] - z["expected_value"]
    recomputed = np.linalg.norm(z["values"].sum(axis=(1, 2)) - gap, axis=1) / np.linalg.norm(gap, axis=1)
    assert metrics["shap"]["explained_output"] == "logits"
    assert abs(metrics["shap"]["additivity_rel_error_median"] - np.median(recomputed)) < 1e-4


def test_metrics_follow_their_versioned_schema_and_the_checkpoint_its_format(trained_run):
    from hybrid_explain.checkpoint import FORMAT_VERSION
    from hybrid_explain.pipeline.metrics import METRICS_SCHEMA_VERSION, schema_problems

    out = trained_run[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["schema_version"] == METRICS_SCHEMA_VERSION and schema_problems(metrics) == []
    checkpoint = torch.load(out / "saved_model_hybrid_explained.pth", weights_only=True)
    assert checkpoint["format_version"] == FORMAT_VERSION


def test_without_a_validation_split_metrics_are_strict_json_and_the_checkpoint_names_the_last_epoch(trained_run):
    out = trained_run[0]

    def reject(constant):
        raise ValueError(f"{constant} is not JSON")

    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=reject)
    checkpoint = torch.load(out / "saved_model_hybrid_explained.pth", weights_only=True)
    assert metrics["val_accuracy"] is None and checkpoint["val_loss"] is None
    assert checkpoint["epoch"] == metrics["best_epoch"] == 3 and "last epoch" in checkpoint["selected_on"]


def test_shap_npz_has_the_contract_arrays_and_shapes(trained_run):
    z = np.load(trained_run[0] / "shap_values.npz")
    n, c, l, k = z["values"].shape
    assert (n, c, l, k) == (2, 2, 24, 3)
    assert z["inputs"].shape == (n, c, l) and z["background"].shape[1:] == (c, l)
    # the rows the values were computed against: of the 8 background rows, those the SHAP budget rule kept
    metrics = json.loads((trained_run[0] / "metrics.json").read_text())["shap"]
    assert len(z["background"]) == metrics["num_background"] <= metrics["background_rows_available"] == 8
    assert z["outputs"].shape == (n, k) and z["expected_value"].shape == (k,) and z["indices"].shape == (n,)
    assert list(z["class_names"]) == ["class_0", "class_1", "class_2"]


def test_checkpoint_loads_with_weights_only_and_carries_the_model_arguments(trained_run):
    checkpoint = torch.load(trained_run[0] / "saved_model_hybrid_explained.pth", weights_only=True)
    hp = checkpoint["hyperparameters"]
    assert (hp["input_channels"], hp["sequence_length"], hp["num_classes"]) == (2, 24, 3)
    config = train_explain.config_from_args([])
    model_arguments = {f.name for f in dataclasses.fields(config.model)} | {"input_channels", "sequence_length",
                                                                            "num_classes"}
    assert set(hp) == model_arguments  # format 2: the model's own arguments, no run settings
    assert set(checkpoint["training"]) == {f.name for f in dataclasses.fields(config.training)}
    assert checkpoint["channel_names"] == ["ch0", "ch1"] and len(checkpoint["normalization"]["mean"]) == 2


def test_load_model_reproduces_the_explained_logits(trained_run):
    z = np.load(trained_run[0] / "shap_values.npz")
    model, _ = train_explain.load_model(trained_run[0] / "saved_model_hybrid_explained.pth")
    with torch.no_grad():
        logits = model(torch.from_numpy(z["inputs"]))
    np.testing.assert_allclose(logits.numpy(), z["outputs"], atol=1e-5)


def test_report_is_one_page_with_every_figure_inlined(trained_run):
    out = trained_run[0]
    page = (out / "report.html").read_text()
    assert page.count("<img ") >= len(list(out.glob("*.png")))
    assert 'src="data:image/png;base64,' in page and "src=\"file" not in page


def test_train_false_reuses_the_checkpoint_and_gets_the_same_accuracy(trained_run, tmp_path):
    out, train, test = trained_run
    before = json.loads((out / "metrics.json").read_text())["test_accuracy"]
    weights = (out / "saved_model_hybrid_explained.pth").read_bytes()
    assert train_explain.main(run_args(train, test, out, "--train=False")) == 0
    assert json.loads((out / "metrics.json").read_text())["test_accuracy"] == before
    assert (out / "saved_model_hybrid_explained.pth").read_bytes() == weights


def test_seeded_runs_on_cpu_are_identical(tmp_path):
    train, test = write_series_csvs(tmp_path, length=8)
    for name in ("a", "b"):
        assert train_explain.main(run_args(train, test, tmp_path / name, "--epochs=2")) == 0
    first = pd.read_csv(tmp_path / "a" / "train_results_hybrid_explained.csv")
    second = pd.read_csv(tmp_path / "b" / "train_results_hybrid_explained.csv")
    pd.testing.assert_frame_equal(first.drop(columns="seconds"), second.drop(columns="seconds"))
    a = torch.load(tmp_path / "a" / "saved_model_hybrid_explained.pth", weights_only=True)["model_state_dict"]
    b = torch.load(tmp_path / "b" / "saved_model_hybrid_explained.pth", weights_only=True)["model_state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "shap_values.npz")["values"],
                                  np.load(tmp_path / "b" / "shap_values.npz")["values"])


def test_a_four_feature_table_runs(tmp_path):
    rng = np.random.default_rng(0)
    for part in ("train", "test"):
        X = rng.normal(size=(30, 4))
        frame = pd.DataFrame(X, columns=["height", "weight", "age", "score"])
        frame["label"] = np.where(X[:, 0] + X[:, 2] > 0, "yes", "no")
        frame.to_csv(tmp_path / f"{part}.csv", index=False)
    assert train_explain.main(run_args(tmp_path / "train.csv", tmp_path / "test.csv", tmp_path / "out")) == 0
    assert np.load(tmp_path / "out" / "shap_values.npz")["values"].shape[1:] == (1, 4, 2)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["shap"]["players"] == 4  # one per named feature, not windows of unrelated features
    assert metrics["attributions"]["windows"] == 4
