"""shapley.budget_background: the permutation budget spread over fewer background rows, so that coarse to fine
splits players, at the same number of walks."""
import dataclasses
import math

import numpy as np
import torch

import train_explain
from hybrid_explain.explainers import shapley
from hybrid_explain.model import HybridCNNLSTMAttention
from hybrid_explain.pipeline import stages


def test_the_default_budget_over_100_rows_and_40_players_goes_to_25_rows_of_4_pairs():
    rows, permutations = shapley.budget_background(100, 40, 200, min_pairs=4)
    assert shapley.default_permutations(40, 200) == 39  # 1 pair per row over 100 rows: coarse to fine stays off
    assert len(rows) == 25 and permutations == 100 and math.ceil(permutations / len(rows)) == 4


def test_the_walks_stay_the_same():
    for background, players, length, wanted in [(100, 40, 200, None), (40, 60, 100, None), (100, 10, 200, None),
                                                 (100, 500, 50, None), (30, 12, 100, 45)]:
        rows, permutations = shapley.budget_background(background, players, length, wanted, min_pairs=4)
        today = background * math.ceil((wanted or shapley.default_permutations(players, length)) / background)
        assert permutations == today
        assert len(rows) * math.ceil(permutations / len(rows)) <= today + len(rows)  # rounding of the last pairs


def test_with_one_pair_every_row_is_used():
    rows, permutations = shapley.budget_background(100, 40, 200, min_pairs=1)
    assert np.array_equal(rows, np.arange(100)) and permutations == 100


def test_rows_already_with_enough_pairs_are_all_used():
    rows, _ = shapley.budget_background(10, 40, 200, num_permutations=400, min_pairs=4)
    assert np.array_equal(rows, np.arange(10))


def test_the_rows_are_spread_over_the_background():
    rows, _ = shapley.budget_background(100, 40, 200, min_pairs=4)
    assert rows[0] == 0 and rows[-1] == 99 and np.all(np.diff(rows) >= 3)


def test_with_the_rows_it_chooses_coarse_to_fine_splits_and_the_values_still_add_up():
    """A linear model over 1 x 40 inputs, 4 players of 10: over 8 rows at 1 pair each the values are flat within
    each player; over the 2 rows budget_background keeps (4 pairs each) the largest players are split."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(1, 40, generator=generator)

    def f(rows):
        return (rows.reshape(len(rows), -1) * weight).sum(1, keepdim=True)

    x, background = torch.randn(1, 1, 40, generator=generator), torch.randn(8, 1, 40, generator=generator)
    groups = shapley.player_groups(1, 40, 4)
    flat = shapley.interventional_shap(f, x, background, groups, num_permutations=8, split=5)[0, 0, :, 0]
    rows, permutations = shapley.budget_background(8, 4, 40, num_permutations=8, min_pairs=4)
    split = shapley.interventional_shap(f, x, background[rows], groups, num_permutations=permutations, split=5)[0, 0, :, 0]
    distinct = lambda values: max(len(np.unique(np.round(values[p * 10:(p + 1) * 10], 9))) for p in range(4))  # noqa: E731
    assert len(rows) == 2 and distinct(flat) == 1 and distinct(split) > 1
    expected = (f(x) - f(background[rows]).mean(0)).item()
    assert abs(split.sum() - expected) < 1e-9 * max(1.0, abs(expected))


def small_samples():
    torch.manual_seed(0)
    model = HybridCNNLSTMAttention(2, 20, 2, cnn_channels=4, lstm_hidden_size=4, attention_heads=1).eval()
    x = torch.randn(1, 2, 20)
    samples = stages.Samples(x, np.array([0]), None, np.array([0]), np.array([[0.5, 0.5]]), ["a", "b"], ["u", "v"])
    return model, samples, torch.randn(40, 2, 20)


def test_the_shap_stage_uses_the_rows_the_rule_keeps_and_its_values_add_up_to_them(tmp_path, monkeypatch):
    """The automatic budget cut to 10 permutations (STEPS_PER_SAMPLE patched): 40 pairs over 40 rows, 1 each; the rule
    keeps 10 rows x 4 pairs, the stage saves those rows, and the values add up to f(x) minus their mean."""
    monkeypatch.setattr(shapley, "STEPS_PER_SAMPLE", 20 * 19 * 2 * 10)
    monkeypatch.setattr(stages.shap_figures, "shap_figures", lambda *args: None)  # figures are not what this test is about
    model, samples, background = small_samples()
    config = dataclasses.replace(train_explain.config_from_args([]).explain, shap_method="permutation",
                                 shap_segments_per_channel=10, shap_permutations=0, shap_subwindows=5,
                                 shap_min_pairs_per_row=4, seed=0)
    run = stages.RunContext(model, config, samples, samples, background)
    summary = stages.ShapStage()(run, lambda name: str(tmp_path / name)).metrics["shap"]
    saved = np.load(tmp_path / "shap_values.npz")
    assert summary["num_background"] == 10 and summary["background_rows_available"] == 40
    assert saved["background"].shape == (10, 2, 20) and summary["permutations"] == 40
    assert summary["additivity_rel_error_max"] < 1e-5
