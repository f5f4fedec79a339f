"""The baseline beside the network (BASELINE, hybrid_explain/baseline.py) and distillation (DISTILL,
hybrid_explain/distillation.py). Tests that fit aeon's MiniRocket are slow: its numba kernels compile for about a
minute on a cold cache (once per installation; univariate data only here, so one compilation)."""
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

import train_explain
from conftest import run_args, write_series_csvs
from data_loader import CustomDataset
from hybrid_explain import baseline
from hybrid_explain.distillation import Teacher, distillation_loss, tempered
from hybrid_explain.checkpoint import load_model
from hybrid_explain.model import HybridCNNLSTMAttention

needs_aeon = pytest.mark.skipif(baseline.aeon_problem() is not None, reason="aeon is not installed")


# -----------------------------------------------------------------------------
# The baseline's input and scores
def test_a_row_is_padded_after_its_end_with_its_last_value_and_to_minirockets_width():
    X = np.array([[[1.0, 2.0, 3.0, np.nan, np.nan], [4.0, 5.0, 6.0, np.nan, np.nan]],
                  [[7.0, 8.0, 9.0, 10.0, 11.0], [0.0, 0.0, 0.0, 0.0, 1.0]]])
    padded = baseline.padded_with_last_value(X, np.array([3, 5]))
    assert padded.shape == (2, 2, baseline.MINIROCKET_MIN_STEPS) and padded.dtype == np.float32
    assert padded[0, 0].tolist() == [1, 2, 3] + [3] * 6 and padded[0, 1].tolist() == [4, 5, 6] + [6] * 6
    assert padded[1, 0].tolist() == [7, 8, 9, 10] + [11] * 5 and padded[1, 1].tolist() == [0] * 4 + [1] * 5


def test_agreement_counts_each_row_once_in_one_of_four_cells():
    y = np.array([0, 1, 2, 0, 1])
    shares = baseline.agreement(y, network=np.array([0, 1, 0, 1, 1]), baseline=np.array([0, 0, 2, 1, 1]))
    assert shares == {"both_right": 0.4, "only_network": 0.2, "only_baseline": 0.2, "neither": 0.2}


def test_a_binary_ridge_score_becomes_two_opposite_class_scores():
    assert baseline.ridge_scores_as_logits(np.array([0.5, -2.0])).tolist() == [[-0.5, 0.5], [2.0, -2.0]]


def test_temperature_scaling_recovers_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 1, size=(20_000, 3))
    probabilities = np.exp(scores / 0.25) / np.exp(scores / 0.25).sum(1, keepdims=True)
    y = (rng.random((len(scores), 1)) > probabilities.cumsum(1)).sum(1)  # one draw from each row's distribution
    assert baseline.calibrated_temperature(scores, y) == pytest.approx(0.25, rel=0.05)


def test_the_baseline_line_says_both_accuracies_and_the_agreement():
    summary = baseline.baseline_summary(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), np.array([0, 1, 1, 1]), 2, 1.5)
    assert summary["test_accuracy"] == 0.75 and summary["same_prediction"] == 0.5
    line = baseline.baseline_line(summary, 0.75)
    assert "test accuracy 0.7500" in line and "this network: 0.7500" in line and "only MiniRocket 25%" in line


# -----------------------------------------------------------------------------
# The distillation loss
def test_a_student_that_matches_the_teacher_has_zero_distillation_loss():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    for temperature in (0.5, 1.0, 4.0):
        target = tempered(torch.softmax(logits, 1), temperature)  # the student's own tempered distribution
        assert distillation_loss(logits, target, temperature).item() == pytest.approx(0.0, abs=1e-6)


def test_the_distillation_loss_is_t_squared_times_the_kl_divergence():
    # teacher (1/2, 1/2) (unchanged by any temperature); student softmax((0, 2 ln 3) / 2) = (1/4, 3/4):
    # KL = 1/2 ln(1/2 / 1/4) + 1/2 ln(1/2 / 3/4) = 1/2 ln(4/3), times T^2 = 4
    target = tempered(torch.tensor([[0.5, 0.5]]), 2.0)
    loss = distillation_loss(torch.tensor([[0.0, 2 * math.log(3)]]), target, 2.0)
    assert loss.item() == pytest.approx(4 * 0.5 * math.log(4 / 3), rel=1e-6)


def test_a_mixed_rows_teacher_target_is_the_same_blend_of_the_two_rows_targets():
    teacher = Teacher(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]), temperature=1.0, weight=0.5)
    targets = teacher.targets(torch.tensor([0, 1]), (torch.tensor([1, 0]), 0.75))
    assert torch.allclose(targets, torch.tensor([[0.725, 0.275], [0.375, 0.625]]))


def train_toward(teacher_labels, **settings):
    """A tiny network trained with the distillation term alone (weight 1), its teacher certain of teacher_labels;
    returns the network's accuracy on those labels."""
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(24) % 2
    X = torch.randn(24, 1, 12, generator=generator) + 2.0 * y.view(-1, 1, 1) * (torch.arange(12) > 6)
    config = train_explain.config_from_args([f"--{k}={v}" for k, v in {"epochs": 25, "learning_rate": 0.01,
                                                                       "batch_size": 12,
                                                                       **settings}.items()])
    torch.manual_seed(0)
    model = train_explain.build_model({**dataclasses.asdict(config.model), "input_channels": 1,
                                       "sequence_length": 12, "num_classes": 2, "cnn_channels": 4,
                                       "lstm_hidden_size": 4, "attention_heads": 2, "length_feature": False})
    teacher = Teacher(torch.nn.functional.one_hot(teacher_labels, 2).float(), temperature=2.0, weight=1.0)
    _, state, *_ = train_explain.train_model(model, CustomDataset(X, y), CustomDataset(X[:0], y[:0]), config.training, None,
                                             log=lambda message: None, teacher=teacher)
    model.load_state_dict(state)
    return train_explain.evaluate(model, CustomDataset(X, teacher_labels))[1]


@pytest.mark.parametrize("settings", [{"mixup_alpha": 0.0}, {"mixup_alpha": 0.4, "ensemble_size": 2}])
def test_with_the_distillation_term_alone_the_network_learns_the_teachers_labels_not_the_files(settings):
    flipped = 1 - torch.arange(24) % 2
    assert train_toward(flipped, **settings) >= 0.9


def test_distill_without_a_baseline_and_an_unknown_baseline_are_one_line_errors():
    with pytest.raises(train_explain.ConfigError, match="BASELINE is ''"):
        train_explain.config_from_args(["--baseline=", "--distill=True"])
    with pytest.raises(train_explain.ConfigError, match="BASELINE is 'rocket9'"):
        train_explain.config_from_args(["--baseline=rocket9"])
    with pytest.raises(train_explain.ConfigError, match="DISTILL_WEIGHT"):
        train_explain.config_from_args(["--distill_weight=1.5"])


# -----------------------------------------------------------------------------
# aeon's MiniRocket (slow: numba compiles it once per installation)
def unequal_rows(n, seed):
    """Univariate rows of 6-40 steps (NaN after the end), class 1 with a bump in its first 5 steps."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    lengths = rng.integers(6, 41, size=n)
    X = rng.normal(0, 0.3, size=(n, 1, 40))
    X[y == 1, 0, 1:5] += 3.0
    X[np.arange(40)[None, None, :] >= lengths[:, None, None]] = np.nan
    return X, y, lengths


@pytest.mark.slow
@needs_aeon
def test_the_baseline_learns_rows_of_unequal_lengths_and_never_reads_past_a_rows_end():
    X, y, lengths = unequal_rows(60, seed=0)
    classifier = baseline.fit_baseline(X, y, lengths, seed=0)
    X_test, y_test, test_lengths = unequal_rows(40, seed=1)
    predictions = baseline.baseline_predictions(classifier, X_test, test_lengths)
    assert np.mean(predictions == y_test) >= 0.9
    garbage = np.where(np.isnan(X_test), 1e6, X_test)  # any value after a row's end
    assert np.array_equal(baseline.baseline_predictions(classifier, garbage, test_lengths), predictions)


@pytest.mark.slow
@needs_aeon
def test_the_teachers_probabilities_are_out_of_fold():
    # labels with no relation to the rows: a ridge on 10,000 features fits its own rows, but not rows it never saw
    X, _, lengths = unequal_rows(60, seed=0)
    y = np.random.default_rng(1).integers(0, 2, size=60)
    classifier = baseline.fit_baseline(X, y, lengths, seed=0)
    assert np.mean(baseline.baseline_predictions(classifier, X, lengths) == y) == 1.0
    found = baseline.teacher_probabilities(classifier, X, y, lengths, np.arange(60), seed=0)
    assert found["probabilities"].shape == (60, 2) and np.allclose(found["probabilities"].sum(1), 1)
    assert found["out_of_fold_accuracy"] < 0.75 and found["folds"] == 5


@pytest.mark.slow
@needs_aeon
def test_a_distilled_run_shows_the_baseline_and_its_checkpoint_records_the_teacher(tmp_path, capsys):
    train, test = write_series_csvs(tmp_path, channels=1, length=30)
    for path in (train, test):  # rows of unequal lengths: the last third of every other row left empty
        text = path.read_text().splitlines()
        rows = [line.split(",") for line in text[1:]]
        for i, row in enumerate(rows):
            if i % 2:
                row[20:30] = [""] * 10
        path.write_text("\n".join([text[0]] + [",".join(row) for row in rows]) + "\n")
    out = tmp_path / "out"
    assert train_explain.main(run_args(train, test, out, "--baseline=minirocket", "--distill=True",
                                       "--ensemble_size=2", "--num_samples_to_explain=1",
                                       "--attribution_methods=")) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    metrics = json.loads((out / "metrics.json").read_text())
    summary = metrics["baseline"]
    assert 0 <= summary["test_accuracy"] <= 1 and sum(summary["agreement"].values()) == pytest.approx(1.0)
    assert last.startswith("a MiniRocket classifier on the same split: test accuracy")
    assert metrics["timings_s"]["baseline"] > 0 and metrics["distillation"]["teacher"] == "minirocket"
    _, checkpoint = load_model(str(out / train_explain.CHECKPOINT_NAME), torch.device("cpu"))
    assert checkpoint["distillation"] == metrics["distillation"]
    assert checkpoint["training"]["distill"] is True and checkpoint["distillation"]["weight"] == 0.5
    assert "a MiniRocket classifier on the same split" in (out / "report.html").read_text()


@pytest.mark.slow
@needs_aeon
def test_fitting_and_scoring_the_baseline_leave_torchs_thread_count_as_it_was():
    # aeon's transform resets numba's threads, which share OpenMP with torch: training would run on every core
    X, y, lengths = unequal_rows(20, seed=0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        classifier = baseline.fit_baseline(X, y, lengths, seed=0)
        baseline.baseline_predictions(classifier, X, lengths)
        baseline.teacher_probabilities(classifier, X, y, lengths, np.arange(20), seed=0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
