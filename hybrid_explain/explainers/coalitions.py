"""The value function of the project's Shapley values as a game over coalitions of players.

`shapley.interventional_shap` explains f with v(S) = mean over background rows b of f(x_S, b_rest): the inputs of
the players in S taken from the explained row x, every other input from b. Shapley estimators of other libraries
(`shapiq`'s approximators) take a game: a function from a boolean matrix of coalitions to their values. This
module gives them exactly that v, so that an estimator's values can be compared with the project's on the same
players and the same background (bench/shapley_estimators.py). Rows of one length only (no `lengths`).
"""

import numpy as np
import torch


def coalition_rows(x, background, groups, coalitions):
    """(M * B, C, L) model rows of M coalitions: row m * B + b is x (C, L) on the inputs of coalition m's players and
    background row b (B, C, L) elsewhere; groups (C, L) player ids, coalitions (M, P) bool."""
    member = torch.as_tensor(np.asarray(coalitions, dtype=bool), device=x.device)
    inside = member[:, torch.as_tensor(groups, device=x.device).long()]          # (M, C, L)
    return torch.where(inside[:, None], x[None, None], background[None]).reshape(-1, *x.shape)


def coalition_values(f, x, background, groups, coalitions, batch_size=1024) -> np.ndarray:
    """(M, K) float64 v(S) = mean_b f(x_S, b_rest) of each coalition S (a row of coalitions (M, P) bool), the value
    function interventional_shap's Shapley values are of; f: torch (rows, C, L) -> (rows, K), called under
    torch.inference_mode in batches of at most batch_size rows (whole coalitions each, at least one)."""
    coalitions = np.atleast_2d(np.asarray(coalitions, dtype=bool))
    b = len(background)
    per_batch = max(1, batch_size // b)
    values = []
    with torch.inference_mode():
        for start in range(0, len(coalitions), per_batch):
            rows = coalition_rows(x, background, groups, coalitions[start:start + per_batch])
            outputs = f(rows).double()
            values.append(outputs.reshape(-1, b, outputs.shape[-1]).mean(1).cpu().numpy())
    return np.concatenate(values)
