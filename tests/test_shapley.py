"""shapley.py against ground truth: a brute-force interventional Shapley computation, written
here independently, on a tiny instance of the project's own model (CNN -> BiLSTM -> attention)."""
import itertools
import math
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hybrid_explain.explainers import shapley  # noqa: E402
from hybrid_explain.model import HybridCNNLSTMAttention  # noqa: E402

CHANNELS, LENGTH, CLASSES = 2, 6, 3  # 12 features


def tiny_model(channels=CHANNELS, length=LENGTH, seed=0):
    """A small real model, trained a few steps on random data so its outputs vary with the input."""
    torch.manual_seed(seed)
    model = HybridCNNLSTMAttention(channels, length, CLASSES, cnn_channels=4, lstm_hidden_size=4,
                                   attention_heads=2)
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, channels, length, generator=generator), torch.randint(0, CLASSES, (64,), generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(20):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()


def brute_force_shapley(model, x, background, groups):
    """(N, P, K) by the definition: phi_i = sum over S not containing i of
    |S|! (P-|S|-1)! / P! * (v(S + i) - v(S)), v(S) = mean over b of f(x on S's features, b elsewhere)."""
    players = int(groups.max()) + 1
    coalitions = [frozenset(s) for r in range(players + 1) for s in itertools.combinations(range(players), r)]
    result = []
    for sample in x:
        masks = torch.stack([torch.from_numpy(np.isin(groups, list(s))) for s in coalitions])
        rows = torch.where(masks[:, None], sample, background[None]).reshape(-1, *sample.shape)
        with torch.no_grad():
            v = model(rows).double().reshape(len(coalitions), len(background), -1).mean(dim=1).numpy()
        value = dict(zip(coalitions, v))
        phi = np.zeros((players, v.shape[1]))
        for i in range(players):
            for s in coalitions:
                if i not in s:
                    weight = math.factorial(len(s)) * math.factorial(players - len(s) - 1) / math.factorial(players)
                    phi[i] += weight * (value[s | {i}] - value[s])
        result.append(phi)
    return np.stack(result)


def per_player(values, groups):
    """(N, P, K): each player's features' values summed."""
    return np.stack([values[:, groups == p].sum(axis=1) for p in range(int(groups.max()) + 1)], axis=1)


def relative_l2(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.fixture(scope="module")
def setting():
    model = tiny_model()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, CHANNELS, LENGTH, generator=generator)
    background = torch.randn(8, CHANNELS, LENGTH, generator=generator)
    with torch.no_grad():
        outputs = model(x).double().numpy()
        expected_value = model(background).double().mean(dim=0).numpy()
    groups = shapley.player_groups(CHANNELS, LENGTH, LENGTH)  # one player per feature
    return dict(model=model, x=x, background=background, outputs=outputs, expected_value=expected_value,
                groups=groups, reference=brute_force_shapley(model, x, background, groups))


@pytest.fixture(scope="module")
def default_values(setting):
    s = setting
    return shapley.interventional_shap(s["model"], s["x"], s["background"], s["groups"])


def test_exact_method_equals_brute_force_shapley_values(setting):
    s = setting
    values = shapley.interventional_shap(s["model"], s["x"], s["background"], s["groups"], method="exact")
    assert values.shape == (3, CHANNELS, LENGTH, CLASSES)
    assert relative_l2(per_player(values, s["groups"]), s["reference"]) < 1e-5


def test_default_method_is_within_5_percent_of_exact_shapley_values(setting, default_values):
    assert relative_l2(per_player(default_values, setting["groups"]), setting["reference"]) < 0.05


def test_default_method_values_add_up_to_output_minus_expected_output(setting, default_values):
    errors = shapley.additivity_errors(default_values, setting["outputs"], setting["expected_value"])
    assert errors.max() < 1e-5  # the contract asks for 1 %; the telescoping walks give float error


def test_permutation_values_add_up_with_any_number_of_permutations(setting):
    s = setting
    values = shapley.interventional_shap(s["model"], s["x"], s["background"], s["groups"], num_permutations=1)
    assert shapley.additivity_errors(values, s["outputs"], s["expected_value"]).max() < 1e-5


def test_group_value_is_spread_equally_over_its_features_and_equals_the_grouped_games_shapley_value(setting):
    s = setting
    groups = shapley.player_groups(CHANNELS, LENGTH, 2)  # 4 players of 3 steps each
    values = shapley.interventional_shap(s["model"], s["x"], s["background"], groups, method="exact")
    for player in range(4):
        inside = values[:, groups == player]  # (N, 3, K)
        np.testing.assert_allclose(inside, np.broadcast_to(inside[:, :1], inside.shape))
    reference = brute_force_shapley(s["model"], s["x"], s["background"], groups)
    assert relative_l2(per_player(values, groups), reference) < 1e-5
    assert shapley.additivity_errors(values, s["outputs"], s["expected_value"]).max() < 1e-5


def test_grouped_permutation_values_add_up(setting):
    s = setting
    groups = shapley.player_groups(CHANNELS, LENGTH, 2)
    values = shapley.interventional_shap(s["model"], s["x"], s["background"], groups, num_permutations=8)
    assert shapley.additivity_errors(values, s["outputs"], s["expected_value"]).max() < 1e-5


def test_player_groups_cut_each_channel_into_contiguous_near_equal_windows():
    groups = shapley.player_groups(3, 100, 7)
    assert groups.shape == (3, 100) and groups.dtype.kind == "i"
    assert sorted(np.unique(groups)) == list(range(21))
    for channel in range(3):
        row = groups[channel]
        assert set(row) == set(range(7 * channel, 7 * channel + 7))  # ids are channel-major
        assert (np.diff(row) >= 0).all()  # contiguous windows in time order
        sizes = np.bincount(row - 7 * channel)
        assert sizes.max() - sizes.min() <= 1


def test_player_groups_give_one_player_per_step_when_the_series_is_shorter_than_the_segments():
    np.testing.assert_array_equal(shapley.player_groups(2, 3, 10), [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(shapley.player_groups(4, 1, 10), [[0], [1], [2], [3]])


def test_series_of_one_step_gets_exact_values_by_default():
    model = tiny_model(channels=2, length=1)
    generator = torch.Generator().manual_seed(2)
    x, background = torch.randn(2, 2, 1, generator=generator), torch.randn(5, 2, 1, generator=generator)
    groups = shapley.player_groups(2, 1, 10)
    values = shapley.interventional_shap(model, x, background, groups)
    reference = brute_force_shapley(model, x, background, groups)
    assert relative_l2(per_player(values, groups), reference) < 1e-5


def test_exact_method_refuses_more_than_16_players(setting):
    s = setting
    groups = shapley.player_groups(CHANNELS, 9, 9)  # 18 players
    with pytest.raises(ValueError, match="at most 16 players"):
        shapley.interventional_shap(s["model"], torch.zeros(1, CHANNELS, 9), torch.zeros(2, CHANNELS, 9), groups,
                                    method="exact")


def test_model_in_training_mode_is_refused(setting):
    s = setting
    model = tiny_model().train()
    with pytest.raises(ValueError, match="model.eval"):
        shapley.interventional_shap(model, s["x"], s["background"], s["groups"], num_permutations=1)


def test_same_seed_gives_identical_values_and_another_seed_other_values(setting):
    s = setting
    run = lambda seed: shapley.interventional_shap(s["model"], s["x"], s["background"], s["groups"],
                                                   num_permutations=16, seed=seed)
    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_model_is_called_in_batches_under_inference_mode_and_the_batch_size_does_not_change_the_values(setting):
    s = setting
    calls = []

    def f(rows):
        calls.append((len(rows), torch.is_inference_mode_enabled()))
        return s["model"](rows)

    values = shapley.interventional_shap(f, s["x"], s["background"], s["groups"], num_permutations=16,
                                         batch_size=100)
    assert max(n for n, _ in calls) <= 100 and all(mode for _, mode in calls)
    reference = shapley.interventional_shap(s["model"], s["x"], s["background"], s["groups"],
                                            num_permutations=16, batch_size=5000)
    np.testing.assert_allclose(values, reference, rtol=1e-5, atol=1e-6)


def test_a_samples_values_do_not_depend_on_the_other_samples_explained(setting):
    s = setting
    together = shapley.interventional_shap(s["model"], s["x"], s["background"], s["groups"], num_permutations=16)
    alone = shapley.interventional_shap(s["model"], s["x"][1:2], s["background"], s["groups"], num_permutations=16)
    np.testing.assert_allclose(alone[0], together[1], rtol=1e-5, atol=1e-6)


def test_additivity_error_is_the_contracts_relative_l2_over_classes():
    values = np.zeros((2, 1, 2, 2))
    values[0, 0] = [[1.0, 0.0], [2.0, 4.0]]  # sums to (3, 4): exactly the gap
    values[1, 0] = [[0.0, 1.0], [0.0, 3.0]]  # sums to (0, 4): off by (3, 0)
    outputs = np.array([[4.0, 6.0], [4.0, 6.0]])
    expected_value = np.array([1.0, 2.0])  # gap (3, 4), norm 5
    np.testing.assert_allclose(shapley.additivity_errors(values, outputs, expected_value), [0.0, 0.6])


def test_deep_explainer_additivity_error_is_computed_and_large_on_this_model(setting):
    s = setting
    values = shapley.deep_shap(s["model"], s["x"], s["background"])
    assert values.shape == (3, CHANNELS, LENGTH, CLASSES)
    errors = shapley.additivity_errors(values, s["outputs"], s["expected_value"])
    for i in range(len(values)):  # the contract's formula, written out
        gap = s["outputs"][i] - s["expected_value"]
        total = values[i].sum(axis=(0, 1))
        assert errors[i] == pytest.approx(math.sqrt(((total - gap) ** 2).sum() / (gap ** 2).sum()), rel=1e-9)
    assert np.median(errors) > 0.05  # DeepExplainer has no rule for the LSTM and attention


def test_the_estimated_error_of_permutation_values_matches_their_distance_to_the_exact_values():
    model = tiny_model()
    generator = torch.Generator().manual_seed(3)
    x, background = torch.randn(6, CHANNELS, LENGTH, generator=generator), torch.randn(8, CHANNELS, LENGTH, generator=generator)
    groups = shapley.player_groups(CHANNELS, LENGTH, 3)  # 6 players
    exact = shapley.interventional_shap(model, x, background, groups, method="exact")
    values, estimated = shapley.interventional_shap(model, x, background, groups, num_permutations=16,
                                                    return_error=True)
    measured = (np.linalg.norm((values - exact).reshape(len(x), -1), axis=1)
                / np.linalg.norm(exact.reshape(len(x), -1), axis=1))
    assert 0.5 < np.median(estimated / measured) < 2  # measured 1.1
    _, exact_error = shapley.interventional_shap(model, x, background, groups, method="exact", return_error=True)
    np.testing.assert_array_equal(exact_error, 0.0)
