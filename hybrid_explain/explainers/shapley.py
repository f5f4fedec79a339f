"""Shapley values of the classifier's logits, and a check of how well any attribution adds up.

`shap.DeepExplainer` has no rule for the LSTM's gates or the attention softmax, so on this
model its values do not sum to f(x) - E[f]. `interventional_shap` computes the values that
SHAP promises, for the model itself:

    v(S) = mean over background rows b of f(x_S, b_rest),  f = the logits,

with players that are single inputs or groups of inputs (windows of time steps of one
channel, see `player_groups`). A group's value is spread equally over its inputs, so the
per-input values still sum to f(x) - E[f].

Methods:
- "exact": every one of the 2^P coalitions, weighted |S|!(P-|S|-1)!/P!. For P <= 16.
- "permutation": antithetic permutation sampling, stratified over the background. Interventional
  Shapley values are linear in the background distribution, phi = mean_b phi(x; b), so each
  background row b gets the same number of random permutations of its own, each walked
  forward and in reverse, with b as the only reference. Along one walk the marginal
  contributions telescope to f(x) - f(b); since every row is used equally often, the values
  add up to f(x) - mean_b f(b) exactly (to float error), whatever the number of permutations.
  The permutations do not depend on the explained samples, so a sample's values do not depend
  on which other samples are explained with it.
- "permutation" with split > 1: coarse to fine. Half of the budget values the players; the largest are then
  split into parts, as far as the other half can pay for, and that half values the parts as Owen values (each
  split player a union of its parts: a walk takes the unions in random order and a union's parts one after
  another, shap's PartitionExplainer's values). A union's parts sum to its Shapley value in the game of the
  players, so both halves value the players, and the parts share what their sum misses of the two halves'
  mean: the values still add up exactly. Where the budget is too small to split, the values are flat.

Rows of different lengths (`lengths`): the explained row's own steps are the players (the steps after
its end are none, and get exactly 0), and every coalition row has its length, so f reads only those
steps. A background row shorter than the explained one is held at its last observed value (per
channel) up to that length, the reader's rule for a channel that ends early; a longer one is cut to
it. So v(S) = mean_b f(x_S, b'_rest) at the explained row's length, and the values add up to
f(x) - mean_b f(b') with b' the background rows so extended or cut (`expected_outputs`).
"""

import functools
import math

import numpy as np
import torch

from hybrid_explain.explainers.regions import window_of_step
from hybrid_explain.series import model_at_lengths


class ShapSettingError(ValueError):
    """SHAP settings that cannot work on this data (e.g. exact enumeration of too many players); one line."""


EXACT_MAX_PLAYERS = 16  # 2^16 coalitions, each evaluated against every background row
# num_permutations=None: spend about this many (model rows x series length) per explained sample,
# i.e. 6,000 rows of a 100-step series (~0.5 s on 2 CPU cores for the default model): a row costs
# about linearly in the length, so short series, which have few players, get many permutations.
STEPS_PER_SAMPLE = 600_000
MAX_DEFAULT_PERMUTATIONS = 2048  # enough for ~2-3 % relative L2 error with 12 players


def player_groups(channels: int, length: int, segments_per_channel: int) -> np.ndarray:
    """(channels, length) int array of player ids: each channel cut into the windows of
    `regions.window_edges(length, segments_per_channel)`, ids channel-major."""
    if channels < 1 or length < 1 or segments_per_channel < 1:
        raise ValueError(f"player_groups needs positive sizes, got channels={channels}, "
                         f"length={length}, segments_per_channel={segments_per_channel}")
    window = window_of_step(length, segments_per_channel)
    return np.arange(channels)[:, None] * (window[-1] + 1) + window[None, :]


def groups_per_row(players_of_length, channels: int, width: int, lengths) -> np.ndarray:
    """(N, channels, width) player ids of rows of their own lengths: players_of_length(n) -> (channels, n) ids of a
    row n steps long, and -1 after each row's end (no player), the `groups` interventional_shap takes per row."""
    groups = np.full((len(lengths), channels, width), -1, dtype=np.int64)
    for i, length in enumerate(lengths):
        groups[i, :, :length] = players_of_length(int(length))
    return groups


def held_background(background, lengths):
    """(B, C, L) background rows held at their last observed value after their lengths (B,): what a row
    shorter than an explained one contributes to its later steps."""
    steps = torch.arange(background.shape[2], device=background.device)
    last = torch.minimum(steps[None, :], torch.as_tensor(lengths, device=background.device).long()[:, None] - 1)
    return background.gather(2, last[:, None, :].expand(-1, background.shape[1], -1))


def expected_outputs(f, background, background_lengths, lengths) -> np.ndarray:
    """(N, K) mean_b f(b') for each explained row's length: the base values its Shapley values add up to."""
    held = held_background(background, background_lengths)
    with torch.inference_mode():
        return np.stack([f(held, torch.full((len(held),), int(n), device=held.device)).double().mean(0).cpu().numpy()
                         for n in lengths])


def _evaluate(f, make_rows, num_rows, batch_size):
    """Stack f(make_rows(start, stop)) over [0, num_rows) in batches of at most batch_size rows."""
    outputs = []
    for start in range(0, num_rows, batch_size):
        outputs.append(f(make_rows(start, min(start + batch_size, num_rows))).double())
    return torch.cat(outputs) if outputs else None


def _exact_player_values(f, x, background, groups, batch_size):
    """(N, P, K) exact Shapley values of the players by enumerating all 2^P coalitions."""
    num_players = int(groups.max()) + 1
    if num_players > EXACT_MAX_PLAYERS:
        raise ValueError(f"method='exact' enumerates 2^P coalitions and allows at most "
                         f"{EXACT_MAX_PLAYERS} players, got {num_players}: use fewer segments "
                         f"per channel or method='permutation'")
    n, b, q = len(x), len(background), 2 ** num_players
    # member[s, p]: player p belongs to coalition s (bit p of s)
    bits = torch.arange(num_players, device=x.device)
    member = (torch.arange(q, device=x.device)[:, None] >> bits[None, :]) & 1
    feature_in = member[:, groups.reshape(-1)].bool().reshape(q, *groups.shape)

    def make_rows(start, stop):  # row r = (sample, coalition, background row), background fastest
        r = torch.arange(start, stop, device=x.device)
        return torch.where(feature_in[(r // b) % q], x[r // (b * q)], background[r % b])

    outputs = _evaluate(f, make_rows, n * q * b, batch_size)
    v = outputs.reshape(n, q, b, -1).mean(dim=2)  # (N, 2^P, K)

    size = member.sum(dim=1)
    fact = [math.factorial(k) for k in range(num_players + 1)]
    weight = torch.tensor([fact[k] * fact[num_players - k - 1] / fact[num_players]
                           for k in range(num_players)], dtype=torch.float64, device=x.device)
    # phi_p = sum_{S containing p} w(|S|-1) v(S) - sum_{S without p} w(|S|) v(S)
    coef = torch.where(member.bool(), weight[(size - 1).clamp(min=0)][:, None],
                       -weight[size.clamp(max=num_players - 1)][:, None])  # (2^P, P)
    values = torch.einsum("sp,nsk->npk", coef, v)
    return values, torch.zeros_like(values)  # no sampling error


def _permutation_player_values(f, x, background, groups, num_permutations, seed, batch_size, blocks=None):
    """(N, P, K) antithetic permutation estimate and its standard error, every background row used equally often.
    blocks (P,): union of each player (Owen values): a walk takes the unions in random order and the players of
    a union one after the other, in random order within it; None: every order of the players (Shapley values)."""
    contribution, pairs_per_row = _walk_contributions(f, x, background, groups, num_permutations, seed, batch_size,
                                                      blocks)
    return contribution.mean(dim=1), _stratified_error(contribution, len(background), pairs_per_row)


def _walk_contributions(f, x, background, groups, num_permutations, seed, batch_size, blocks=None):
    """((N, walks, P, K) marginal contributions along antithetic walks, pairs of walks per background row)."""
    num_players = int(groups.max()) + 1
    n, b = len(x), len(background)
    pairs_per_row = math.ceil(num_permutations / b)
    rng = np.random.default_rng(seed)
    # rank[t, p]: position of player p in walk t; walks 2j and 2j+1 are a permutation and its reverse
    keys = rng.random((b * pairs_per_row, num_players))
    if blocks is not None:  # the unions' order first, the random key only orders players within a union
        keys = keys + np.argsort(np.argsort(rng.random((len(keys), int(blocks.max()) + 1)), axis=1), axis=1)[:, blocks]
    forward = np.argsort(keys, axis=1).argsort(axis=1)
    rank = np.stack([forward, num_players - 1 - forward], axis=1).reshape(-1, num_players)
    walks = len(rank)
    walk_background = torch.arange(walks, device=x.device) // (2 * pairs_per_row)
    rank = torch.from_numpy(rank).to(x.device)
    feature_rank = rank[:, groups.reshape(-1)].reshape(walks, *groups.shape)

    steps = num_players - 1  # coalitions strictly between the empty and the full one

    def make_rows(start, stop):  # row r = (sample, walk, step k = 1..P-1), step fastest
        r = torch.arange(start, stop, device=x.device)
        walk, k = (r // steps) % walks, r % steps + 1
        inside = feature_rank[walk] < k[:, None, None]
        return torch.where(inside, x[r // (steps * walks)], background[walk_background[walk]])

    f_x = _evaluate(f, lambda s, e: x[s:e], n, batch_size)                   # (N, K)
    f_b = _evaluate(f, lambda s, e: background[s:e], b, batch_size)          # (B, K)
    classes = f_x.shape[1]
    inner = _evaluate(f, make_rows, n * walks * steps, batch_size)
    inner = (inner.reshape(n, walks, steps, classes) if inner is not None
             else f_x.new_zeros(n, walks, 0, classes))
    # y[n, t, k]: output after the first k players of walk t are taken from x
    y = torch.cat([f_b[walk_background][None].expand(n, -1, -1)[:, :, None],
                   inner, f_x[:, None, None].expand(-1, walks, 1, -1)], dim=2)
    index = rank[None, :, :, None].expand(n, -1, -1, classes)
    return y.gather(2, index + 1) - y.gather(2, index), pairs_per_row  # (N, walks, P, K)


def _stratified_error(contribution, b, pairs_per_row):
    """(N, P, K) standard error of the mean contribution over walks (N, walks, P, K) of b background rows."""
    n, _, num_players, classes = contribution.shape
    # A permutation and its reverse are one draw. The estimate is stratified over the background rows (each has
    # pairs_per_row draws): var = sum_b var_b / pairs_per_row / B^2. With one draw per row the spread of all
    # draws is used instead, which counts the differences between background rows too: an upper estimate.
    pairs = contribution.reshape(n, b, pairs_per_row, 2, num_players, classes).mean(dim=3)
    if pairs_per_row > 1:
        return (pairs.var(dim=2) / pairs_per_row).sum(dim=1).sqrt() / b
    if b > 1:
        return pairs[:, :, 0].std(dim=1) / math.sqrt(b)
    return torch.full_like(pairs[:, 0, 0], math.nan)


def _coarse_to_fine_player_values(f, x, background, groups, real, split, num_permutations, seed, batch_size):
    """Coarse-to-fine values of one sample x (1, C, L): ((1, P', K) values, (1, P', K) standard errors, (C, L) ids
    of the P' final players). Half of the budget estimates the Shapley values of `groups`; the players with the
    largest values (L2 over the classes) are then split into up to `split` parts each (consecutive inputs), as many
    as the other half of the budget allows at one pair of walks per background row (none where it cannot pay for
    one more player: then the whole budget goes to the Shapley values of `groups`), and the rest of the budget
    estimates the Owen values of the parts (each split player a union of its parts). A union's parts then share the
    difference between its two estimates' weighted mean and the parts' sum, so everything adds up."""
    num_players, b = int(groups.max()) + 1, len(background)
    pairs = math.ceil(num_permutations / b)
    first = math.ceil(pairs / 2)
    most_parts = (pairs - first) * (num_players - 1) + 1  # what one pair of walks per row over the parts can pay for
    flat = groups.cpu().numpy().reshape(-1)
    inputs = [np.flatnonzero((flat == p) & real.reshape(-1)) for p in range(num_players)]
    if split == 1 or pairs == 1 or most_parts <= num_players or max(map(len, inputs)) == 1:  # nothing to split
        coarse, coarse_error = _permutation_player_values(f, x, background, groups, num_permutations, seed, batch_size)
        return coarse, coarse_error, groups.cpu().numpy()
    coarse, coarse_error = _permutation_player_values(f, x, background, groups, first * b, seed, batch_size)
    # Split the largest players, each into as many parts as still fit (at most `split`).
    parts = np.ones(num_players, dtype=np.int64)
    for p in np.argsort(-np.linalg.norm(coarse[0].cpu().numpy(), axis=1), kind="stable"):
        room = most_parts - int(parts.sum())
        if room == 0:
            break
        parts[p] = min(split, len(inputs[p]), room + 1)
    first_part = np.concatenate([[0], np.cumsum(parts)[:-1]])
    leaves = first_part[flat]  # inputs after a row's end stay with player 0's first part; f never reads them
    for p in np.flatnonzero(parts > 1):
        leaves[inputs[p]] = first_part[p] + window_of_step(len(inputs[p]), parts[p])
    unions = np.repeat(np.arange(num_players), parts)
    blocks = torch.from_numpy(unions).to(x.device)
    leaves_t = torch.from_numpy(leaves.reshape(groups.shape)).to(groups)
    second = max(1, (pairs - first) * (num_players - 1) // (int(parts.sum()) - 1))
    contribution, _ = _walk_contributions(f, x, background, leaves_t, second * b, (seed, 1), batch_size, unions)
    fine, fine_error = contribution.mean(dim=1), _stratified_error(contribution, b, second)
    union_contribution = contribution.new_zeros(*contribution.shape[:2], num_players, contribution.shape[3])
    union_contribution.index_add_(2, blocks, contribution)
    union, union_error = union_contribution.mean(dim=1), _stratified_error(union_contribution, b, second)
    weight = first / (first + second)  # both estimate the coarse values; weighted by their walks
    combined = weight * coarse + (1 - weight) * union
    combined_error = (weight ** 2 * coarse_error ** 2 + (1 - weight) ** 2 * union_error ** 2).sqrt()
    count = torch.from_numpy(parts).to(x.device)[blocks][None, :, None].double()
    values = fine + (combined - union)[:, blocks] / count
    # a split player's parts: their own error and their share of the correction's (its two estimates are independent)
    part_error = (fine_error ** 2 + weight ** 2 * (coarse_error ** 2 + union_error ** 2)[:, blocks] / count ** 2).sqrt()
    error = torch.where(count > 1, part_error, combined_error[:, blocks])
    return values, error, leaves.reshape(groups.shape)


def default_permutations(num_players: int, length: int) -> int:
    """num_permutations=None's choice: STEPS_PER_SAMPLE spent over walks of num_players - 1 rows
    of `length` steps, at most MAX_DEFAULT_PERMUTATIONS; 1 for P <= 2, where one permutation
    and its reverse are already exact."""
    if num_players <= 2:
        return 1
    walks = STEPS_PER_SAMPLE / (length * (num_players - 1))
    return max(1, min(MAX_DEFAULT_PERMUTATIONS, math.ceil(walks / 2)))


def budget_background(num_background: int, num_players: int, length: int, num_permutations=None,
                      min_pairs: int = 1) -> tuple[np.ndarray, int]:
    """(indices of the background rows to use, permutations for them): the same budget of walks, spread over as few
    rows as give each at least min_pairs pairs of walks. The budget is what every row gets today: num_permutations
    (None: default_permutations) rounded up to a multiple of num_background. Coarse to fine splits players only
    where a row gets 4 pairs or more, so with 100 rows and 40 players (39 permutations, 1 pair per row) it never
    would; min_pairs=4 spends the same 100 pairs as 25 rows x 4. The rows are evenly spaced over the background (a
    seeded sample in file order), so a file sorted by class still gives every class. min_pairs=1: every row."""
    wanted = num_permutations or default_permutations(num_players, length)
    total = num_background * math.ceil(wanted / num_background)
    rows = max(1, min(num_background, total // min_pairs))
    return np.unique(np.round(np.linspace(0, num_background - 1, rows)).astype(int)), total


def interventional_shap(f, x, background, groups, method="permutation", num_permutations=None,
                        seed=0, batch_size=1024, lengths=None, background_lengths=None,
                        return_error=False, split=1):
    """Interventional Shapley values of f's outputs, (N, C, L, K) float64 numpy on the CPU.

    f: torch (M, C, L) -> (M, K), called under torch.inference_mode in batches of at most
    batch_size rows. x: (N, C, L), background: (B, C, L), on f's device. groups: (C, L) player
    ids 0..P-1 (`player_groups`). The values of each sample sum over (C, L) to
    f(x) - mean_b f(b). method: "exact" or "permutation".
    num_permutations (permutation only): random permutations per explained sample, each walked
    forward and in reverse, rounded up to a multiple of B so that every background row gets the
    same number; f then sees 2 * B * ceil(num_permutations / B) * (P - 1) rows per sample.
    None: `default_permutations(P, L)`, a budget of rows x length per sample.
    lengths (N,) and background_lengths (B,): rows of their own lengths (module docstring); f is then
    called as f(rows, lengths of the rows), and groups is (N, C, L), each row's players, -1 after its end.
    return_error: also return (N,) the estimated relative L2 error of each sample's values (all inputs and
    classes; `relative_standard_error`): 0 for "exact", NaN with a single pair of walks.
    split > 1 (permutation only): coarse to fine, `_coarse_to_fine_player_values`: where the budget allows four
    pairs of walks per background row or more, the players with the largest values are split into up to `split`
    parts each and valued as Owen values (each split player a union of its parts); the values still add up.
    """
    groups = np.asarray(groups)
    if x.dim() != 3 or background.dim() != 3 or x.shape[1:] != background.shape[1:]:
        raise ValueError(f"x and background must be (N, C, L) and (B, C, L) with the same C, L; "
                         f"got {tuple(x.shape)} and {tuple(background.shape)}")
    per_row = lengths is not None
    if groups.shape != ((len(x),) if per_row else ()) + tuple(x.shape[1:]):
        raise ValueError(f"groups must have shape {'(N, C, L)' if per_row else '(C, L)'} for x of shape "
                         f"{tuple(x.shape)}, got {groups.shape}")
    if not np.issubdtype(groups.dtype, np.integer) or groups.min() < (-1 if per_row else 0):
        raise ValueError("groups must hold integer player ids 0..P-1 (and -1 after a row's end)")
    for row_groups in (groups if per_row else [groups]):
        players = row_groups[row_groups >= 0]
        if not len(players) or (np.bincount(players) == 0).any():
            raise ValueError("groups must use every player id 0..P-1 at least once")
    if len(background) == 0:
        raise ValueError("background must hold at least one row")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if getattr(f, "training", False):
        raise ValueError("the model is in training mode: call model.eval() first, or dropout and "
                         "batch statistics make its outputs random")
    if method not in ("exact", "permutation"):
        raise ValueError(f"unknown method {method!r}: choose 'exact' or 'permutation'")
    if num_permutations and num_permutations < 1:
        raise ValueError(f"num_permutations must be positive, got {num_permutations}")
    if split < 1:
        raise ValueError(f"split must be positive, got {split}")
    if per_row:
        background = held_background(background, background_lengths)

    values, errors = [], []
    with torch.inference_mode():
        # One sample at a time: memory is bounded by one sample's coalitions, whatever the number of samples,
        # and the values are the same (a sample's values never depend on the others).
        for i in range(len(x)):
            row_groups = groups[i] if per_row else groups
            real = row_groups >= 0
            num_players = int(row_groups.max()) + 1
            f_row = f if not per_row else functools.partial(_at_length, f, int(lengths[i]))
            # A step after the row's end follows player 0 in the coalition rows; f never reads it.
            players = np.where(real, row_groups, 0)
            groups_t = torch.from_numpy(players).long().to(x.device)
            if method == "permutation":
                permutations = num_permutations or default_permutations(num_players, int(real.sum(1).max()))
                phi, error, players = _coarse_to_fine_player_values(f_row, x[i:i + 1], background, groups_t, real,
                                                                    split, permutations, seed, batch_size)
            else:
                phi, error = _exact_player_values(f_row, x[i:i + 1], background, groups_t, batch_size=batch_size)
            phi, error = phi.cpu().numpy(), error.cpu().numpy()
            sizes = np.bincount(players[real], minlength=phi.shape[1])
            values.append(np.where(real[None, :, :, None], phi[:, players] / sizes[players][None, :, :, None], 0.0))
            errors.append(relative_standard_error(phi, error, sizes))
    values = np.concatenate(values)                               # (N, C, L, K)
    return (values, np.concatenate(errors)) if return_error else values


def row_shap(model, x, i: int, background, groups, lengths=None, background_lengths=None, **settings):
    """interventional_shap of the model's row i of x alone (settings: its method, budget, seed, ...). lengths (N,):
    rows of their own lengths, groups (N, C, L) their own players, the model read at each row's length
    (series.model_at_lengths); None: groups (C, L) shared by every row, the model read at the full width."""
    if lengths is None:
        return interventional_shap(model, x[i:i + 1], background, groups, **settings)
    return interventional_shap(model_at_lengths(model), x[i:i + 1], background, groups[i:i + 1],
                               lengths=lengths[i:i + 1], background_lengths=background_lengths, **settings)


def _at_length(f, length, rows):
    """f on rows that are all `length` steps long."""
    return f(rows, torch.full((len(rows),), length, device=rows.device))


def relative_standard_error(phi, error, sizes) -> np.ndarray:
    """(N,) ||standard error|| / ||values|| over every input and class, from the players' values phi (N, P, K),
    their standard errors (N, P, K) and sizes (P,): a player's value and error are spread over its inputs."""
    weight = 1.0 / np.asarray(sizes, np.float64)[None, :, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((error ** 2 * weight).sum(axis=(1, 2)) / (phi ** 2 * weight).sum(axis=(1, 2)))


def deep_shap(model, x, background) -> np.ndarray:
    """shap.DeepExplainer's values for the logits, (N, C, L, K), without its additivity check
    (it fails on this model: DeepExplainer has no rule for LSTM gates or attention)."""
    import shap  # slow to import; only this method needs it

    values = shap.DeepExplainer(model, background).shap_values(x, check_additivity=False)
    if isinstance(values, list):  # older shap: one (N, C, L) array per class
        values = np.stack(values, axis=-1)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == x.dim():  # a single output
        values = values[..., None]
    return values.reshape(*x.shape, -1)


def additivity_errors(values, outputs, expected_value) -> np.ndarray:
    """Per sample ||sum_i phi_i - (f(x) - E f)||_2 / ||f(x) - E f||_2, norms over the classes.
    values (N, C, L, K), outputs (N, K), expected_value (K,) or (N, K). A sample with f(x) == E f gets
    0 when its values sum to zero and inf otherwise."""
    values, outputs = np.asarray(values, np.float64), np.asarray(outputs, np.float64)
    gap = outputs - np.asarray(expected_value, np.float64)  # (K,) or one base value per sample (N, K)
    total = values.reshape(len(values), -1, values.shape[-1]).sum(axis=1)
    error = np.linalg.norm(total - gap, axis=1)
    scale = np.linalg.norm(gap, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(error == 0, 0.0, error / scale)


SHAP_METHODS = ("deep", "exact", "permutation")  # names the pipeline's SHAP_METHOD accepts
