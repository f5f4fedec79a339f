"""Trust in each prediction (hybrid_explain/trust/): each measure against a case whose answer is known."""
import numpy as np
import pytest
from scipy.special import softmax

from hybrid_explain.trust import calibration, conformal, ood


def calibrated_draw(rows=20_000, classes=4, temperature=1.0, seed=0):
    """(logits, labels drawn from softmax(logits / temperature)): softmax(logits / temperature) is calibrated."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, size=(rows, classes))
    probabilities = softmax(logits / temperature, axis=1)
    labels = (rng.random(rows)[:, None] > np.cumsum(probabilities, axis=1)).sum(axis=1)
    return logits, labels


# -----------------------------------------------------------------------------
# Calibration
def test_the_calibration_error_of_probabilities_the_labels_were_drawn_from_is_near_zero():
    logits, labels = calibrated_draw()
    assert calibration.expected_calibration_error(softmax(logits, axis=1), labels) < 0.015


def test_the_calibration_error_of_a_model_always_sure_and_right_half_the_time_is_one_half():
    probabilities = np.tile([[1.0, 0.0]], (10, 1))
    labels = np.array([0, 1] * 5)
    assert calibration.expected_calibration_error(probabilities, labels) == pytest.approx(0.5)


def test_an_over_confident_model_has_a_large_calibration_error_that_temperature_scaling_removes():
    logits, labels = calibrated_draw(temperature=3.0)  # the model's logits are 3 times too sharp
    before = calibration.expected_calibration_error(softmax(logits, axis=1), labels)
    temperature = calibration.fit_temperature(logits[:10_000], labels[:10_000])
    after = calibration.expected_calibration_error(calibration.scaled_probabilities(logits[10_000:], temperature),
                                                   labels[10_000:])
    assert before > 0.1 and after < 0.02


@pytest.mark.parametrize("known", [0.5, 1.0, 3.0])
def test_temperature_scaling_recovers_the_temperature_the_labels_were_drawn_at(known):
    logits, labels = calibrated_draw(temperature=known)
    assert calibration.fit_temperature(logits, labels) == pytest.approx(known, rel=0.05)


def test_temperature_scaling_never_changes_the_predicted_class():
    logits, _ = calibrated_draw(rows=500)
    for temperature in (0.1, 0.7, 4.0):
        assert (calibration.scaled_probabilities(logits, temperature).argmax(1) == logits.argmax(1)).all()


def test_the_unscaled_probabilities_are_recovered_from_the_scaled_ones():
    logits, _ = calibrated_draw(rows=50)
    scaled = calibration.scaled_probabilities(logits, 2.5)
    assert np.allclose(calibration.unscaled_probabilities(scaled, 2.5), softmax(logits, axis=1))


def test_reliability_bins_are_right_closed_and_count_every_row():
    probabilities = np.array([[0.6, 0.4], [2 / 3, 1 / 3], [0.95, 0.05], [1.0, 0.0]])
    table = calibration.reliability_bins(probabilities, np.array([0, 1, 0, 0]), bins=3)
    assert table["rows"] == [0, 2, 2]  # 0.6 and 2/3 in (1/3, 2/3]; 0.95 and 1 in (2/3, 1]
    assert table["accuracy"] == [None, 0.5, 1.0]


# -----------------------------------------------------------------------------
# Conformal prediction sets
@pytest.mark.parametrize("score", ["lac", "aps"])
def test_split_conformal_sets_cover_the_true_class_at_the_level_on_exchangeable_data(score):
    logits, labels = calibrated_draw(rows=40_000, temperature=2.0, seed=1)
    probabilities = softmax(logits, axis=1)  # miscalibrated on purpose: the guarantee does not need calibration
    noise = np.random.default_rng(2).random(len(labels))
    held_out, new = slice(0, 20_000), slice(20_000, None)
    limit = conformal.threshold(conformal.true_class_scores(probabilities[held_out], labels[held_out], score,
                                                            noise[held_out]), 0.9)
    sets = conformal.prediction_sets(probabilities[new], limit, score, noise[new])
    assert conformal.coverage_and_size(sets, labels[new])["coverage"] == pytest.approx(0.9, abs=0.01)


def test_the_conformal_threshold_is_the_ceil_n_plus_one_times_level_th_smallest_score():
    scores = np.arange(1.0, 20.0)  # n = 19: rank ceil(20 * 0.9) = 18
    assert conformal.threshold(scores, 0.9) == 18.0


def test_too_few_held_out_rows_for_the_level_put_every_class_in_every_set():
    limit = conformal.threshold(np.array([0.1] * 8), 0.9)  # 8 < 0.9 / 0.1 = 9
    assert limit == np.inf
    assert conformal.prediction_sets(np.array([[0.9, 0.1, 0.0]]), limit).all()


def test_lac_sets_hold_the_classes_whose_probability_reaches_one_minus_the_threshold():
    sets = conformal.prediction_sets(np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]]), 0.7)
    assert sets.tolist() == [[True, False, False], [True, True, False]]


def test_aps_without_noise_adds_classes_in_order_until_their_mass_reaches_the_threshold():
    scores = conformal.aps_scores(np.array([[0.5, 0.3, 0.2]]), np.zeros(1))
    assert np.allclose(scores, [[0.0, 0.5, 0.8]])


def test_class_conditional_thresholds_cover_each_class_at_the_level():
    logits, labels = calibrated_draw(rows=60_000, classes=3, temperature=2.0, seed=3)
    probabilities = softmax(logits, axis=1)
    held_out, new = slice(0, 30_000), slice(30_000, None)
    scores = conformal.true_class_scores(probabilities[held_out], labels[held_out])
    limits = conformal.class_thresholds(scores, labels[held_out], 3, 0.9)
    sets = conformal.prediction_sets(probabilities[new], limits)
    for k in range(3):
        mine = labels[new] == k
        assert sets[mine, k].mean() == pytest.approx(0.9, abs=0.015)


# -----------------------------------------------------------------------------
# Out-of-distribution scores
def training_cloud(rows=300, dims=20, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], rows // 2)
    return rng.normal(0, 1, (rows, dims)) + 4 * y[:, None] * np.eye(dims)[0], y


def test_mahalanobis_flags_a_far_away_point_and_not_a_class_mean():
    features, y = training_cloud()
    fitted = ood.fit_class_gaussians(features, y, 2)
    scores = ood.mahalanobis(np.vstack([fitted["means"][1], np.full(20, 6.0)]), fitted)
    limit = ood.flag_threshold(ood.mahalanobis(features, fitted), 0.01)
    assert scores[0] < limit < scores[1]


def test_mahalanobis_with_more_dimensions_than_rows_is_finite():
    features, y = training_cloud(rows=20, dims=100)
    fitted = ood.fit_class_gaussians(features, y, 2)
    assert np.isfinite(ood.mahalanobis(features, fitted)).all()


def test_a_class_without_training_rows_is_never_the_nearest_mean():
    features, y = training_cloud()
    fitted = ood.fit_class_gaussians(features, y, 3)  # class 2 has no rows: its mean is not the origin's neighbour
    assert ood.mahalanobis(np.zeros((1, 20)), fitted)[0] == pytest.approx(
        ood.mahalanobis(np.zeros((1, 20)), ood.fit_class_gaussians(features, y, 2))[0])


def test_energy_is_lower_where_one_logit_stands_out():
    assert ood.energy(np.array([[10.0, 0.0, 0.0]]))[0] < ood.energy(np.array([[0.0, 0.0, 0.0]]))[0]


def test_knn_distance_skips_a_rows_distance_to_itself():
    bank = np.array([[0.0], [1.0], [3.0]])
    assert ood.knn_distance(bank, bank, k=1, exclude_self=True).tolist() == [1.0, 1.0, 2.0]
    assert ood.knn_distance(np.array([[10.0]]), bank, k=2).tolist() == [9.0]


def test_the_flag_threshold_leaves_at_most_the_false_alarm_share_of_the_reference_rows_above_it():
    reference = np.random.default_rng(0).normal(size=1000)
    assert (reference > ood.flag_threshold(reference, 0.01)).mean() <= 0.01


def test_auroc_is_one_for_separated_scores_and_one_half_for_identical_ones():
    assert ood.auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 1.0
    assert ood.auroc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5


# -----------------------------------------------------------------------------
# The model's representation and the checkpoint's trust state
def tiny_model(size=1, length=12, **extra):
    import torch

    from hybrid_explain.model import build_model

    torch.manual_seed(0)
    hyperparameters = {"input_channels": 2, "sequence_length": length, "num_classes": 3, "cnn_channels": 4,
                       "lstm_hidden_size": 4, "lstm_layers": 1, "attention_heads": 2, "dropout": 0.0, "kernel_size": 3,
                       "min_pooled_length": 4, "max_pooled_length": 128, "ensemble_size": size,
                       "normalization": "per_series", "amplitude_features": True, **extra}
    return build_model(hyperparameters).eval()


def test_the_representation_is_what_the_classifier_reads():
    import torch

    from hybrid_explain.trust import representation

    model = tiny_model()
    x = torch.randn(5, 2, 12)
    logits, features = representation.logits_and_features(model, x)
    width = model.head.in_features
    rebuilt = model.head(features[:, :width]) + model.fact_head(features[:, width:])
    assert torch.allclose(rebuilt, logits, atol=1e-5)


def test_an_ensembles_representation_is_its_members_side_by_side():
    import torch

    from hybrid_explain.trust import representation

    model = tiny_model(size=3)
    x = torch.randn(4, 2, 12)
    features = representation.logits_and_features(model, x)[1]
    alone = representation.logits_and_features(model.members[1], x)[1]
    assert features.shape == (4, 3 * alone.shape[1])
    assert torch.allclose(features[:, alone.shape[1]:2 * alone.shape[1]], alone, atol=1e-6)


def test_a_short_rows_representation_does_not_depend_on_its_padding():
    import torch

    from hybrid_explain.trust import representation

    model = tiny_model(length_feature=True)
    x = torch.randn(2, 2, 12)
    padded = x.clone()
    padded[0, :, 8:] = 100.0
    lengths = torch.tensor([8, 12])
    first = representation.logits_and_features(model, x, lengths)[1]
    second = representation.logits_and_features(model, padded, lengths)[1]
    assert torch.allclose(first, second, atol=1e-5)


def fitted_state(held_out=10, seed=0):
    import torch

    from hybrid_explain.trust import representation, state

    model = tiny_model()
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(40, 2, 12)).astype(np.float32))
    y = np.arange(40) % 3
    logits, features = representation.logits_and_features(model, x)
    fitted = state.fit_state(logits.numpy(), features.numpy(), y, np.arange(held_out), x.numpy(),
                             np.full(40, 12), np.arange(40) + 100, seed)
    return model, x, fitted


def test_the_trust_state_loads_with_weights_only(tmp_path):
    import torch

    fitted = fitted_state()[2]
    torch.save({"trust": fitted}, tmp_path / "c.pth")
    loaded = torch.load(tmp_path / "c.pth", weights_only=True)["trust"]
    assert loaded["temperature"] == fitted["temperature"] and torch.equal(loaded["precision"], fitted["precision"])


def test_the_scores_of_each_row_keep_the_models_predicted_class_and_flag_a_far_away_row():
    import torch

    from hybrid_explain.trust import representation, state

    model, x, fitted = fitted_state()
    far = torch.cat([x[:5], 50 * torch.randn(1, 2, 12) + 30])
    logits, features = representation.logits_and_features(model, far)
    probabilities, sets, scores, flags = state.row_scores(fitted, logits.numpy(), features.numpy(), 0.9, 0.01)
    assert (probabilities.argmax(1) == logits.numpy().argmax(1)).all()
    assert flags[-1] and scores[-1] == scores.max()
    assert sets.shape == probabilities.shape


def test_without_held_out_rows_the_temperature_is_one_and_every_set_holds_every_class():
    from hybrid_explain.trust import representation, state

    model, x, fitted = fitted_state(held_out=0)
    logits, features = representation.logits_and_features(model, x)
    probabilities, sets, _, _ = state.row_scores(fitted, logits.numpy(), features.numpy(), 0.9, 0.01)
    assert fitted["temperature"] == 1.0 and sets.all()


def test_a_training_row_stored_as_a_case_is_its_own_nearest_case_at_distance_zero():
    from hybrid_explain.trust import representation, state

    model, x, fitted = fitted_state()
    features = representation.logits_and_features(model, x[:3])[1].numpy()
    (order, distances), = state.similar_cases(fitted, features[:1], k=2)
    assert fitted["case_rows"][order[0]] == 100 and distances[0] == pytest.approx(0, abs=1e-3)


# -----------------------------------------------------------------------------
# The pipeline: an ensemble with a validation split on rows of different lengths, then its unlabelled test rows
@pytest.fixture(scope="module")
def held_out_runs(tmp_path_factory):
    import pandas as pd

    import train_explain
    from conftest import run_args, write_series_csvs

    folder = tmp_path_factory.mktemp("trust")
    train, test = write_series_csvs(folder, rows_per_class=10)
    for path in (train, test):  # every third row ends 6 steps early on both channels
        frame = pd.read_csv(path)
        short = [f"ch{c}_t{t}" for c in range(2) for t in range(18, 24)]
        frame.loc[::3, short] = np.nan
        frame.to_csv(path, index=False)
    out = folder / "out"
    extra = ["--val_fraction=0.4", "--ensemble_size=2", "--num_samples_to_explain=1", "--attribution_methods=",
             "--global_explain_rows=0", "--epochs=6"]
    assert train_explain.main(run_args(train, test, out, *extra)) == 0
    new = folder / "new.csv"
    pd.read_csv(test).drop(columns="label").to_csv(new, index=False)
    copy = folder / "copy"
    import shutil

    shutil.copytree(out, copy, symlinks=True)
    assert train_explain.main(run_args(train, new, copy, "--train=False", *extra)) == 0
    return out, copy


@pytest.mark.slow
def test_a_calibrated_run_writes_scaled_probabilities_sets_and_flags_that_new_data_gets_from_the_checkpoint(held_out_runs):
    import json

    import pandas as pd
    import torch
    from scipy.special import softmax

    from hybrid_explain.checkpoint import load_model
    from hybrid_explain.model import predict_logits
    from data_loader import normalize, read_table

    out, copy = held_out_runs
    checkpoint_path = out / "saved_model_hybrid_explained.pth"
    model, checkpoint = load_model(checkpoint_path)
    trust = torch.load(checkpoint_path, weights_only=True)["trust"]
    assert trust["held_out_rows"] == 12 and trust["temperature"] != 1.0
    metrics = json.loads((out / "metrics.json").read_text())["trust"]
    assert metrics["calibration"]["calibrated"] and metrics["calibration"]["rows"] == 30
    assert 0 <= metrics["conformal"]["coverage"] <= 1 and len(metrics["similar"]) == 1
    predictions = pd.read_csv(out / "predictions.csv")
    classes = ["class_0", "class_1", "class_2"]
    table = read_table(str(out.parent / "test.csv"), checkpoint)
    logits = predict_logits(model, normalize(table.X, checkpoint["normalization"], table.lengths),
                            lengths=table.lengths).numpy()
    np.testing.assert_allclose(predictions[classes], softmax(logits / trust["temperature"], axis=1), atol=1e-5)
    assert (predictions["predicted"] == np.array(classes)[logits.argmax(1)]).all()  # scaling changed no class
    for name, columns in [("predictions.csv", ["predicted"]), ("trust.csv", ["prediction_set", "out_of_distribution"])]:
        unlabelled = pd.read_csv(copy / name, keep_default_na=False)
        labelled = pd.read_csv(out / name, keep_default_na=False)
        for column in columns:
            assert (unlabelled[column] == labelled[column]).all()
    assert "ece_before" not in json.loads((copy / "metrics.json").read_text())["trust"]["calibration"]
    assert "How far to trust each prediction" in (out / "report.html").read_text()


@pytest.mark.slow
def test_a_checkpoint_written_before_trust_loads_as_uncalibrated(held_out_runs, tmp_path):
    import torch

    from hybrid_explain.checkpoint import load_model
    from hybrid_explain.trust import state

    checkpoint = torch.load(held_out_runs[0] / "saved_model_hybrid_explained.pth", weights_only=True)
    del checkpoint["trust"]
    torch.save(checkpoint, tmp_path / "old.pth")
    assert state.temperature(load_model(tmp_path / "old.pth")[1]) == 1.0


def test_a_level_of_0_9_needs_9_held_out_rows():
    from hybrid_explain.trust import state

    assert [state.held_out_rows_needed(level) for level in (0.5, 0.8, 0.9, 0.95)] == [1, 4, 9, 19]


def test_the_checkpoint_loader_accepts_a_fitted_trust_state_and_refuses_a_damaged_one():
    from hybrid_explain.checkpoint import trust_problem

    fitted = fitted_state()[2]
    hp = {"num_classes": 3, "input_channels": 2, "sequence_length": 12}
    assert trust_problem(fitted, hp) is None
    assert "temperature" in trust_problem({**fitted, "temperature": -1.0}, hp)
    assert "sizes" in trust_problem({**fitted, "precision": fitted["precision"][:2]}, hp)


def test_a_checkpoint_without_a_trust_state_still_reports_the_calibration_error_of_labelled_rows(tmp_path):
    import torch

    from hybrid_explain.pipeline import stages

    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])  # right, wrong, right, right
    scored = stages.Samples(torch.zeros(4, 1, 3), np.arange(4), np.array([0, 1, 1, 0]), probabilities.argmax(1),
                            probabilities, ["a", "b"], ["c"])
    run = stages.RunContext(None, None, scored, scored.subset([]), None)
    section = stages.TrustStage(None)(run, lambda name: str(tmp_path / name)).metrics["trust"]
    assert section["reason"] == stages.NO_TRUST_STATE and not section["calibration"]["calibrated"]
    assert section["calibration"]["ece_before"] == pytest.approx((0.1 + 0.8 + 0.3 + 0.4) / 4)
    assert (tmp_path / "reliability.png").is_file()
