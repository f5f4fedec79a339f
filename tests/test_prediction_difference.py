"""Cumulative prediction difference and preservation (metrics/prediction_difference.py) on models whose answer is
known: one that reads a single input, and a linear one whose probability moves one way as features are removed."""
import numpy as np
import pytest
import torch

from hybrid_explain.metrics import prediction_difference as pd

CHANNELS, LENGTH = 2, 10  # 20 features: the default fraction removes 2


class OneCell(torch.nn.Module):
    """Two logits, (w x[0, 1, 3], 0): only the input at channel 1, step 3 matters."""

    def __init__(self, weight=3.0):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(weight))

    def forward(self, x, lengths=None):
        value = self.weight * x[:, 1, 3]
        return torch.stack([value, torch.zeros_like(value)], dim=1)


class Linear(torch.nn.Module):
    """Two logits, (w . x, 0)."""

    def __init__(self, weight):
        super().__init__()
        self.weight = torch.nn.Parameter(weight)

    def forward(self, x, lengths=None):
        value = (x * self.weight).sum(dim=(1, 2))
        return torch.stack([value, torch.zeros_like(value)], dim=1)


def probability(model, x):
    with torch.no_grad():
        return torch.softmax(model(x).double(), dim=1).numpy()


def one_cell_map(n, value=1.0):
    maps = np.zeros((n, CHANNELS, LENGTH), np.float32)
    maps[:, 1, 3] = value
    return maps


def test_cpd_of_a_map_that_ranks_the_only_input_first_is_the_whole_change():
    model, x = OneCell(), torch.randn(3, CHANNELS, LENGTH)
    zeroed = x.clone()
    zeroed[:, 1, 3] = 0.0
    expected = np.abs(probability(model, x) - probability(model, zeroed)).mean(axis=1)
    result = pd.prediction_difference(model, x, {"perfect": one_cell_map(3)}, seed=0, fills=("zero",))
    np.testing.assert_allclose(result["perfect"]["zero"]["cpd"], expected, rtol=1e-6)


def test_cpp_of_a_map_that_ranks_the_only_input_first_is_zero():
    model, x = OneCell(), torch.randn(3, CHANNELS, LENGTH)
    result = pd.prediction_difference(model, x, {"perfect": one_cell_map(3)}, seed=0, fills=("zero",))
    np.testing.assert_array_equal(result["perfect"]["zero"]["cpp"], 0.0)


def test_a_reversed_map_swaps_cpd_and_cpp():
    model, x = OneCell(), torch.randn(3, CHANNELS, LENGTH)
    reversed_map = 1.0 - one_cell_map(3)  # the only input that matters ranks last
    result = pd.prediction_difference(model, x, {"perfect": one_cell_map(3), "reversed": reversed_map}, seed=0,
                                      fills=("zero",))
    np.testing.assert_array_equal(result["reversed"]["zero"]["cpd"], 0.0)
    np.testing.assert_allclose(result["reversed"]["zero"]["cpp"], result["perfect"]["zero"]["cpd"], rtol=1e-6)


def test_cpd_orders_by_size_not_sign():
    model, x = OneCell(), torch.randn(2, CHANNELS, LENGTH)
    positive = pd.prediction_difference(model, x, {"m": one_cell_map(2, 1.0)}, seed=0, fills=("zero",))
    negative = pd.prediction_difference(model, x, {"m": one_cell_map(2, -1.0)}, seed=0, fills=("zero",))
    np.testing.assert_array_equal(positive["m"]["zero"]["cpd"], negative["m"]["zero"]["cpd"])


def test_cpd_of_a_monotone_path_telescopes_to_the_total_change():
    """Every contribution w_i x_i > 0: each removal lowers the class-0 probability, so the steps add up to the
    change from x to x with its top 10 % of contributions removed, and the true ranking removes the largest."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(1, CHANNELS, LENGTH, generator=generator) + 0.1
    weight = (torch.rand(CHANNELS, LENGTH, generator=generator) + 0.1) / 5
    model = Linear(weight)
    contribution = (weight * x).detach().numpy()
    top = np.argsort(-contribution.reshape(-1))[:2]
    removed = x.clone().reshape(-1)
    removed[top] = 0.0
    expected = np.abs(probability(model, x) - probability(model, removed.reshape(x.shape))).mean(axis=1)
    result = pd.prediction_difference(model, x, {"true": contribution, "reversed": 1.0 / contribution}, seed=0,
                                      fills=("zero",))
    np.testing.assert_allclose(result["true"]["zero"]["cpd"], expected, rtol=1e-6)
    assert result["true"]["zero"]["cpd"][0] > result["reversed"]["zero"]["cpd"][0]


def test_the_fill_is_the_value_a_removed_feature_takes():
    x = torch.randn(2, CHANNELS, LENGTH)
    background = torch.randn(5, CHANNELS, LENGTH)
    assert torch.allclose(pd.fill_values("background_mean", x, background), background.mean(0).expand(2, -1, -1))
    assert torch.allclose(pd.fill_values("row_mean", x)[:, :, 7], x.mean(2))
    assert pd.fill_values("zero", x).abs().sum() == 0


def test_with_a_nonzero_fill_cpd_is_the_change_to_that_fill():
    model, x = OneCell(), torch.randn(2, CHANNELS, LENGTH)
    background = torch.randn(4, CHANNELS, LENGTH)
    filled = x.clone()
    filled[:, 1, 3] = background[:, 1, 3].mean()
    expected = np.abs(probability(model, x) - probability(model, filled)).mean(axis=1)
    result = pd.prediction_difference(model, x, {"m": one_cell_map(2)}, seed=0, fills=("background_mean",),
                                      background=background)
    np.testing.assert_allclose(result["m"]["background_mean"]["cpd"], expected, rtol=1e-6)


def test_rows_of_their_own_length_remove_only_their_own_features():
    """A row 5 steps long has 10 features: 10 % is one removal, never one after its end."""
    lengths = torch.tensor([5, 10])
    maps = np.zeros((2, CHANNELS, LENGTH), np.float32)
    maps[:, :, 5:] = 10.0  # padding of row 0 ranked first if it counted
    ranks = pd.removal_ranks(maps, np.random.default_rng(0), False, lengths.numpy())
    np.testing.assert_array_equal(pd.removal_counts(0.1, CHANNELS, LENGTH, 2, lengths.numpy()), [1, 2])
    padded = np.repeat((np.arange(LENGTH) >= 5)[None, :], CHANNELS, axis=0).reshape(-1)
    assert ranks[0][padded].min() >= 10


def test_an_unknown_fill_is_refused():
    with pytest.raises(ValueError, match="unknown fill"):
        pd.fill_values("median", torch.zeros(1, CHANNELS, LENGTH))


def test_removals_are_capped_where_asked():
    np.testing.assert_array_equal(pd.removal_counts(0.1, 50, 50, 2, most=100), [100, 100])
    np.testing.assert_array_equal(pd.removal_counts(0.1, 50, 50, 2), [250, 250])
