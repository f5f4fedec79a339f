"""Coarse-to-fine SHAP (shapley.interventional_shap with split > 1) against ground truth: Owen values computed
here by their definition, additivity, and a planted window whose parts are told apart."""
import itertools
import math
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hybrid_explain.explainers import shapley  # noqa: E402
from test_shapley import tiny_model  # noqa: E402

CHANNELS, LENGTH = 2, 6


def shapley_weight(size, players):
    return math.factorial(size) * math.factorial(players - size - 1) / math.factorial(players)


def brute_force_owen(model, x, background, leaves, unions):
    """(P, K) Owen values of one sample by the definition: leaf i of union U gets
    sum over sets T of other unions and S of U's other leaves of w_m(|T|) w_u(|S|) (v(T + S + i) - v(T + S)),
    w_n(s) = s! (n - s - 1)! / n!, v(S) = mean over b of f(x on S's inputs, b elsewhere)."""
    members = [np.flatnonzero(unions == u) for u in range(int(unions.max()) + 1)]

    def v(coalition):
        inside = torch.from_numpy(np.isin(leaves, sorted(coalition)))
        with torch.no_grad():
            return model(torch.where(inside, x, background)).double().mean(dim=0).numpy()

    values = np.zeros((len(unions), model(x[None]).shape[1]))
    for u, union in enumerate(members):
        others = [m for j, m in enumerate(members) if j != u]
        for i in union:
            rest = [j for j in union if j != i]
            for t in range(len(others) + 1):
                for chosen in itertools.combinations(others, t):
                    outside = set(np.concatenate(chosen)) if chosen else set()
                    for s in range(len(rest) + 1):
                        for inner in itertools.combinations(rest, s):
                            weight = shapley_weight(t, len(members)) * shapley_weight(s, len(union))
                            values[i] += weight * (v(outside | set(inner) | {i}) - v(outside | set(inner)))
    return values


@pytest.fixture(scope="module")
def setting():
    """4 windows of 3 steps (2 channels x 6 steps), each split into its 3 steps: 4 unions of 3 parts, the structure
    the coarse-to-fine estimator reaches when the budget lets it split every window (8 pairs of walks per row)."""
    model = tiny_model()
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, CHANNELS, LENGTH, generator=generator)
    background = torch.randn(4, CHANNELS, LENGTH, generator=generator)
    groups = shapley.player_groups(CHANNELS, LENGTH, 2)
    leaves = shapley.player_groups(CHANNELS, LENGTH, LENGTH)  # every step its own part
    unions = np.arange(CHANNELS * LENGTH) // 3
    reference = np.stack([brute_force_owen(model, sample, background, leaves, unions) for sample in x])
    return dict(model=model, x=x, background=background, groups=groups, leaves=leaves, reference=reference)


def test_owen_values_differ_from_shapley_values_of_the_parts(setting):
    s = setting  # so the tests below can tell the two apart
    shapley_values = shapley.interventional_shap(s["model"], s["x"], s["background"], s["leaves"], method="exact")
    flat = shapley_values.reshape(len(s["x"]), -1, shapley_values.shape[-1])
    assert np.linalg.norm(flat - s["reference"]) / np.linalg.norm(s["reference"]) > 0.05


def test_split_windows_converge_to_the_owen_values_of_their_parts(setting):
    s = setting
    values = shapley.interventional_shap(s["model"], s["x"], s["background"], s["groups"], num_permutations=4096,
                                         split=3)
    flat = values.reshape(len(s["x"]), -1, values.shape[-1])
    assert np.linalg.norm(flat - s["reference"]) / np.linalg.norm(s["reference"]) < 0.05


def test_estimated_error_of_split_windows_matches_the_error_against_owen_values(setting):
    s = setting
    values, estimated = shapley.interventional_shap(s["model"], s["x"], s["background"], s["groups"],
                                                    num_permutations=64, split=3, return_error=True)
    flat = values.reshape(len(s["x"]), -1, values.shape[-1])
    measured = (np.linalg.norm((flat - s["reference"]).reshape(len(flat), -1), axis=1)
                / np.linalg.norm(s["reference"].reshape(len(flat), -1), axis=1))
    assert np.all(estimated / measured > 0.5) and np.all(estimated / measured < 2.0)


def test_split_windows_add_up_exactly(setting):
    s = setting
    values = shapley.interventional_shap(s["model"], s["x"], s["background"], s["groups"], num_permutations=16,
                                         split=3)
    with torch.no_grad():
        outputs = s["model"](s["x"]).double().numpy()
        expected = s["model"](s["background"]).double().mean(dim=0).numpy()
    assert shapley.additivity_errors(values, outputs, expected).max() < 1e-5


def planted(rows):
    """Two classes reading only steps 2 and 3 of channel 0: +sum and -sum."""
    signal = rows[:, 0, 2:4].sum(dim=1, keepdim=True)
    return torch.cat([signal, -signal], dim=1)


def test_the_largest_window_is_split_and_its_parts_find_the_planted_steps():
    generator = torch.Generator().manual_seed(0)
    x, background = torch.randn(1, 2, 12, generator=generator), torch.randn(4, 2, 12, generator=generator)
    groups = shapley.player_groups(2, 12, 2)  # 4 windows of 6 steps; the planted steps lie in window 0
    flat = shapley.interventional_shap(planted, x, background, groups, num_permutations=16)
    split = shapley.interventional_shap(planted, x, background, groups, num_permutations=16, split=3)
    share = (x[0, 0, 2:4] - background[:, 0, 2:4].mean(dim=0)).sum().item() / 2  # the value of each planted step
    np.testing.assert_allclose(split[0, 0, 2:4, 0], share, rtol=1e-6)
    np.testing.assert_allclose(np.delete(split[0, :, :, 0].reshape(-1), [2, 3]), 0.0, atol=1e-9)
    np.testing.assert_allclose(flat[0, 0, :6, 0], share * 2 / 6, rtol=1e-6)  # flat: spread over the window
