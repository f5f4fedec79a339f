"""The stage contract (hybrid_explain/pipeline/stages.py): each stage computes without touching a file, saves,
then queues its figures; later stages read earlier results by name from the run context. On a tiny model, without
an output folder."""
import dataclasses
import os

import numpy as np
import pytest
import torch

import train_explain
from hybrid_explain.model import HybridCNNLSTMAttention, predict_logits
from hybrid_explain.pipeline import stages


@pytest.fixture(scope="module")
def tiny_run():
    torch.manual_seed(0)
    model = HybridCNNLSTMAttention(2, 16, 2, cnn_channels=4, lstm_hidden_size=4, attention_heads=2).eval()
    x = torch.randn(6, 2, 16)
    probabilities = torch.softmax(predict_logits(model, x), 1).numpy()
    y = np.array([0, 1, 0, 1, 0, 1])
    scored = stages.Samples(x, np.arange(6), y, probabilities.argmax(1), probabilities, ["a", "b"], ["u", "v"])
    config = dataclasses.replace(train_explain.config_from_args([]).explain, shap_segments_per_channel=2,
                                 shap_permutations=2, ig_steps=4, global_explain_rows=4, counterfactual_budget=50,
                                 attribution_windows=2)
    return lambda: stages.RunContext(model, config, scored, scored.subset([0, 1]), x[:3], None,
                                     (x, y, None))


def refuse_files(name):
    raise AssertionError(f"compute() asked for a file ({name})")


@pytest.mark.parametrize("stage", [stages.PredictionsStage(), stages.EvaluationStage(), stages.ShapStage(),
                                   stages.GlobalStage(), stages.GradCamStage(), stages.AttentionStage()],
                         ids=lambda s: s.name)
def test_a_stage_computes_its_metrics_and_arrays_without_touching_a_file(stage, tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = stage.compute(tiny_run())
    assert result.metrics and isinstance(result.arrays, dict)
    assert list(tmp_path.iterdir()) == []


def test_later_stages_read_the_shap_values_by_name_from_the_run_context(tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tiny_run()
    run.results["shap"] = stages.ShapStage().compute(run)
    values = run.results["shap"].arrays["values"]
    suite = stages.AttributionStage(["saliency", "shap"]).compute(run)
    chosen = values[np.arange(2), :, :, run.samples.y_pred]
    np.testing.assert_array_equal(suite.arrays["maps"]["shap"], chosen.astype(np.float32))
    assert stages.CounterfactualStage().compute(run).metrics["counterfactual_summary"]["num_explained"] == 2
    assert list(tmp_path.iterdir()) == []


def test_grad_cam_carries_the_suites_deletion_verdict_when_the_suite_ran(tiny_run):
    run = tiny_run()
    assert stages.GradCamStage().compute(run).metrics["gradcam"]["better_than_random"] is None
    verdict = {"gradcam": {"deletion_auc_minus_random": {"better_than_random": False}}}
    run.results["attributions"] = stages.Result({"attributions": {"methods": verdict}})
    assert stages.GradCamStage().compute(run).metrics["gradcam"]["better_than_random"] is False


def test_running_stages_saves_their_files_keeps_their_results_and_times_each_phase(tiny_run, tmp_path):
    run, laps = tiny_run(), []
    metrics = stages.run_stages([stages.PredictionsStage(), stages.EvaluationStage()], run,
                                lambda name: str(tmp_path / name), log=lambda line: None, lap=laps.append)
    assert sorted(os.listdir(tmp_path)) == ["classification_report.txt", "confusion_matrix.png", "predictions.csv"]
    assert set(run.results) == {"predictions", "evaluation"} and laps == ["evaluate", "evaluate"]
    assert metrics["predictions"]["rows"] == 6 and 0 <= metrics["test_accuracy"] <= 1


def test_a_file_without_labels_is_scored_and_its_accuracy_is_none(tiny_run, tmp_path):
    run = tiny_run()
    run.scored = dataclasses.replace(run.scored, y_true=None)
    result = stages.EvaluationStage()(run, lambda name: str(tmp_path / name))
    assert result.metrics == {"test_accuracy": None, "test_macro_f1": None} and list(tmp_path.iterdir()) == []


def test_the_metrics_schema_names_a_missing_key_an_unknown_key_and_a_wrong_type():
    from hybrid_explain.pipeline.metrics import schema_problems

    problems = schema_problems({"schema_version": "1", "no_such_key": 1, "explanations_skipped": "x"})
    assert "schema_version is a str, not int" in problems and "lacks timings_s" in problems
    assert any(p.startswith("no_such_key is not in the schema") for p in problems)
