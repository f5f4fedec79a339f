"""coalitions.py: the project's value function as a game over coalitions, against its known answers and against the
project's own exact Shapley values on a tiny instance of the project's model."""
import functools
import itertools
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from hybrid_explain.explainers import coalitions, shapley  # noqa: E402
from test_shapley import CHANNELS, LENGTH, tiny_model  # noqa: E402

GROUPS = shapley.player_groups(CHANNELS, LENGTH, 3)  # 6 players of 2 steps each
PLAYERS = int(GROUPS.max()) + 1


@functools.lru_cache(maxsize=1)
def instance():
    """(model, x (C, L), background (5, C, L)), built once: the model is trained a few steps."""
    generator = torch.Generator().manual_seed(1)
    return (tiny_model(), torch.randn(CHANNELS, LENGTH, generator=generator),
            torch.randn(5, CHANNELS, LENGTH, generator=generator))


def every_coalition():
    return np.array(list(itertools.product([False, True], repeat=PLAYERS)))


def shapley_by_definition(table, members):
    """(P, K) phi_i = sum over S without i of |S|! (P-|S|-1)! / P! (v(S + i) - v(S)) from v of every coalition."""
    value = {tuple(m): v for m, v in zip(members, table)}
    phi = np.zeros((PLAYERS, table.shape[1]))
    for m in members:
        for i in np.flatnonzero(~m):
            weight = math.factorial(m.sum()) * math.factorial(PLAYERS - m.sum() - 1) / math.factorial(PLAYERS)
            phi[i] += weight * (value[tuple(m | (np.arange(PLAYERS) == i))] - value[tuple(m)])
    return phi


def test_empty_coalition_is_the_mean_output_on_the_background_and_the_full_one_the_output_on_x():
    model, x, background = instance()
    ends = np.array([[False] * PLAYERS, [True] * PLAYERS])
    values = coalitions.coalition_values(model, x, background, GROUPS, ends)
    with torch.inference_mode():
        expected = np.stack([model(background).double().mean(0).numpy(), model(x[None]).double()[0].numpy()])
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-7)


def test_a_coalition_takes_its_players_inputs_from_x_and_the_rest_from_each_background_row():
    model, x, background = instance()
    coalition = np.arange(PLAYERS) % 2 == 0
    inside = torch.from_numpy(np.isin(GROUPS, np.flatnonzero(coalition)))
    with torch.inference_mode():
        expected = model(torch.where(inside, x, background)).double().mean(0).numpy()
    np.testing.assert_allclose(coalitions.coalition_values(model, x, background, GROUPS, coalition[None])[0],
                               expected, rtol=1e-6, atol=1e-7)


def test_shapley_values_of_the_game_are_the_projects_exact_values():
    model, x, background = instance()
    members = every_coalition()
    table = coalitions.coalition_values(model, x, background, GROUPS, members, batch_size=12)  # 2 coalitions a batch
    exact = shapley.interventional_shap(model, x[None], background, GROUPS, method="exact")[0]
    per_player = np.stack([exact[GROUPS == p].sum(axis=0) for p in range(PLAYERS)])
    np.testing.assert_allclose(shapley_by_definition(table, members), per_player, rtol=1e-5, atol=1e-6)
