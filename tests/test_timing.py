"""TIMING (attributions.timing, Jang et al. 2025) against what it promises: integrated gradients along paths on
which random temporal segments keep the input's values."""
import numpy as np
import torch

from hybrid_explain.explainers import attributions
from hybrid_explain.model import HybridCNNLSTMAttention

CHANNELS, LENGTH = 3, 24


class Linear(torch.nn.Module):
    def __init__(self, classes=2):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(classes, CHANNELS * LENGTH, generator=torch.Generator().manual_seed(0)))

    def forward(self, x, lengths=None):
        return x.reshape(len(x), -1) @ self.weight.T


class Smooth(torch.nn.Module):
    """A non-linear model, so that paths differ: logits (sum tanh(w . x), 0)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(CHANNELS, LENGTH, generator=torch.Generator().manual_seed(1)))

    def forward(self, x, lengths=None):
        value = torch.tanh(x * self.weight).sum(dim=(1, 2))
        return torch.stack([value, torch.zeros_like(value)], dim=1)


def inputs(n=4, seed=2):
    return torch.randn(n, CHANNELS, LENGTH, generator=torch.Generator().manual_seed(seed))


def test_on_a_linear_model_the_map_is_weight_times_input_where_a_cell_was_on_the_path():
    model, x, target = Linear(), inputs(), torch.tensor([0, 1, 0, 1])
    maps = attributions.timing(model, x, target, steps=20)
    expected = model.weight[target].reshape(x.shape).detach() * x
    close = torch.isclose(maps, expected, atol=1e-5)
    assert bool((close | (maps == 0)).all())  # a cell never on the path gets 0
    assert close.float().mean() > 0.9


def test_without_segments_it_is_integrated_gradients_with_a_left_riemann_sum():
    """x times the mean gradient at alpha x, alpha = 0, 1/16, ..., 15/16 (the reference code's sum)."""
    model, x, target = Smooth(), inputs(), torch.zeros(4, dtype=torch.long)
    maps = attributions.timing(model, x, target, steps=16, segments_per_channel=0)
    path = [(k / 16 * x).requires_grad_(True) for k in range(16)]  # alpha = 0, 1/16, ..., 15/16
    expected = x * sum(torch.autograd.grad(model(p)[:, 0].sum(), p)[0] for p in path) / 16
    assert torch.allclose(maps, expected.detach(), rtol=1e-4, atol=1e-6)


def test_segments_change_the_map_of_a_non_linear_model():
    model, x, target = Smooth(), inputs(), torch.zeros(4, dtype=torch.long)
    plain = attributions.timing(model, x, target, steps=16, segments_per_channel=0)
    masked = attributions.timing(model, x, target, steps=16, segments_per_channel=1)
    assert not torch.allclose(plain, masked, atol=1e-4)


def test_the_same_seed_gives_the_same_map_and_another_seed_another():
    model, x, target = Smooth(), inputs(), torch.zeros(4, dtype=torch.long)
    first, again = (attributions.timing(model, x, target, steps=8, seed=3) for _ in range(2))
    other = attributions.timing(model, x, target, steps=8, seed=4)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_segments_lie_within_each_rows_own_steps():
    lengths = torch.tensor([10, 24, 1])
    fixed = attributions.fixed_segments(50, lengths, CHANNELS, LENGTH, 6, torch.Generator().manual_seed(0))
    assert fixed.shape == (50, 3, CHANNELS, LENGTH)
    assert not fixed[:, 0, :, 10:].any() and not fixed[:, 2, :, 1:].any()
    assert fixed[:, 0].any() and fixed[:, 1, :, 20:].any()


def test_the_map_is_zero_after_a_rows_end():
    torch.manual_seed(0)
    model = HybridCNNLSTMAttention(CHANNELS, LENGTH, 2, cnn_channels=8, lstm_hidden_size=8, attention_heads=2,
                                   dropout=0.0, kernel_size=5).eval()
    x, lengths = inputs(2), torch.tensor([12, 24])
    maps = attributions.timing(model, x, torch.tensor([0, 1]), steps=8, lengths=lengths)
    assert maps[0, :, 12:].abs().max() == 0
    assert maps[0, :, :12].abs().max() > 0 and maps[1, :, 12:].abs().max() > 0


def test_a_map_through_compute_maps_has_the_inputs_shape():
    model, x = Linear(), inputs()
    functions = attributions.method_functions({"seed": 0}, ["timing"])
    maps, seconds = attributions.compute_maps(functions, model, x, torch.zeros(4, dtype=torch.long))
    assert maps["timing"].shape == tuple(x.shape) and seconds["timing"] >= 0
    assert not attributions.METHODS["timing"].in_all and attributions.METHODS["timing"].signed
