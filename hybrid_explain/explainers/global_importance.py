"""Global explanations: what the model relies on over many rows, per channel and per time window, with
bootstrap intervals.

The players are coarse groups of inputs, and each group's value is its own Shapley value (not a sum of
finer values, which is not the Shapley value of the group):

    channels: every step of channel c is player c                          (C players)
    windows:  every channel's steps in time window w are player w           (W players, regions.window_edges)
    cells:    channel c's steps in window w are one player (the SHAP stage's players, for the signed map)

computed by `shapley.interventional_shap` against a seeded subset of the SHAP background, so each row's
values add up to f(x) - E f over that subset, for every class.

What is summarised is the evidence for the predicted class: the Shapley value of the predicted class's logit
minus the mean of all logits (softmax ignores a shift common to every logit, so this is the part of the
output that picks the class; Shapley values are linear in the output, so it is the same difference of the
per-class values). A group's importance is the mean |evidence| over the rows, with a percentile bootstrap
interval over the rows. Mean |evidence| is never below zero, so whether a group carries information is
decided on signed values: its contrast is how much more it supports a class on the rows predicted as that
class than on the other rows, and a group carries no measurable information when the (Bonferroni-corrected)
bootstrap interval of its contrast contains zero: the output may move with it, but not in step with the
model's decisions. Per class means the rows the model predicts as that class (a file without labels has no
other classes).

Rows of different lengths: each row's players cover its own steps only (windows from window_edges(length_i, W),
as the SHAP stage's players), and shapley.py's rule for background rows of another length applies. Their figures
draw windows and class means on a shared relative axis, 0-100 % of each row's own length
(`relative_window_edges`, `relative_class_means`), never at absolute steps where most rows hold no data.
"""
import time

import numpy as np
import torch

from hybrid_explain.explainers import regions
from hybrid_explain.explainers import shapley
from hybrid_explain.series import model_at_lengths, own_lengths

BACKGROUND_ROWS = 8  # rows of the SHAP background used as the reference here (a seeded subset; cost and error in docs/explanations/global.md)
EXACT_MAX_PLAYERS = 4  # exact enumeration up to 2^4 coalitions per background row; permutation sampling above
PAIRS_PER_BACKGROUND_ROW = 1  # permutation: random permutations (each also walked in reverse) per background row
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95
GROUPINGS = ("channels", "windows", "cells")
MIN_INTERVAL_ROWS = 3  # a bootstrap over one or two rows has at most three distinct means: no interval below this
RELATIVE_POINTS = 100  # the relative axis's grid: one point per per cent of a row's own length


def players(grouping: str, channels: int, length: int, windows: int) -> np.ndarray:
    """(C, L) player ids of a grouping: "channels" (C players), "windows" (W players over all channels) or
    "cells" (C x W players, channel-major, as shapley.player_groups)."""
    window = regions.window_of_step(length, windows)
    if grouping == "channels":
        return np.repeat(np.arange(channels)[:, None], length, axis=1)
    if grouping == "windows":
        return np.repeat(window[None, :], channels, axis=0)
    if grouping == "cells":
        return shapley.player_groups(channels, length, windows)
    raise ValueError(f"unknown grouping {grouping!r}: choose one of {GROUPINGS}")


def method_for(num_players: int) -> str:
    """Exact enumeration costs 2^P model rows per background row, a permutation and its reverse 2 (P - 1): exact
    (free of sampling noise) while that stays within about three pairs' cost."""
    return "exact" if num_players <= EXACT_MAX_PLAYERS else "permutation"


def background_rows(count: int, seed: int, rows: int = BACKGROUND_ROWS) -> np.ndarray:
    """Indices of a seeded subset of the `count` rows of the SHAP background, in its order."""
    if count <= rows:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, rows, replace=False))


def group_values(model, x, background, groups, seed: int, lengths=None, background_lengths=None,
                 step=lambda: None) -> np.ndarray:
    """(N, P, K) Shapley values of the players in `groups` ((C, L), or (N, C, L) with lengths) for every logit;
    each row's values sum over the players to f(x) - mean_b f(b). step() is called after each row (progress)."""
    num_players = int(groups.max()) + 1
    method = method_for(num_players)
    values = []
    # A row at a time, to say the progress (interventional_shap computes them so anyway), each row with permutations
    # of its own: with the same ones for every row, their sampling errors would be alike and the bootstrap over
    # the rows would not see them.
    for i in range(len(x)):
        values.append(shapley.row_shap(model, x, i, background, groups, lengths, background_lengths, method=method,
                                       seed=seed + i, num_permutations=PAIRS_PER_BACKGROUND_ROW * len(background)))
        step()
    values = np.concatenate(values)
    # interventional_shap spreads a player's value over its cells: summing them gives the player's value back
    # index -1 (after a row's end) picks the extra last row of the identity, which the slice drops: it counts for none
    one_hot = np.eye(num_players + 1)[np.asarray(groups)][..., :num_players]
    one_hot = np.broadcast_to(one_hot, (len(x),) + one_hot.shape[-3:]).reshape(len(x), -1, num_players)
    return np.einsum("nik,nip->npk", values.reshape(len(x), -1, values.shape[-1]), one_hot)


def centred(values: np.ndarray) -> np.ndarray:
    """(N, P, K) Shapley values of logit[k] - mean(logits) for every class k, from those of the logits."""
    return values - values.mean(axis=2, keepdims=True)


def resample_weights(classes: np.ndarray, seed: int) -> np.ndarray:
    """(BOOTSTRAP_RESAMPLES, N) bootstrap counts, each class's rows resampled within the class (a stratified
    bootstrap, so every class keeps its rows and the comparisons between classes stay defined)."""
    rng = np.random.default_rng(seed)
    weights = np.zeros((BOOTSTRAP_RESAMPLES, len(classes)))
    for k in np.unique(classes):
        rows = np.flatnonzero(classes == k)
        weights[:, rows] = rng.multinomial(len(rows), np.full(len(rows), 1 / len(rows)), size=BOOTSTRAP_RESAMPLES)
    return weights


def interval(statistic: np.ndarray, resampled: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """{"mean", "low", "high"} per player: the statistic and its percentile bootstrap interval."""
    low, high = np.quantile(resampled, [(1 - confidence) / 2, (1 + confidence) / 2], axis=0)
    return {"mean": statistic, "low": low, "high": high}


def family_confidence(players: int) -> float:
    """The level of each player's contrast interval: with P players that carry no information, all P intervals
    contain zero with probability at least CONFIDENCE (Bonferroni)."""
    return 1 - (1 - CONFIDENCE) / players


def importance(values: np.ndarray, classes: np.ndarray, class_count: int, seed: int) -> dict:
    """Per player, overall ("all") and per predicted class k: the mean |value| of the evidence for the predicted
    class with its interval, and the contrast with its interval: how much more the player supports class k
    (logit[k] - mean logit) on the rows predicted k than on the other rows (overall: weighted by the rows
    per class). A shift common to every row (as a small background's own noise adds) cancels in the contrast.
    Its interval is at the Bonferroni level 1 - (1 - CONFIDENCE) / P (`family_confidence`), since it decides
    for each of the P players at once whether it carries information.
    values (N, P, K): the players' Shapley values of the logits; classes (N,): predicted classes."""
    evidence_all = centred(values)                                     # (N, P, K)
    n = len(classes)
    own = np.abs(evidence_all[np.arange(n), :, classes])               # (N, P)
    weights = resample_weights(classes, seed)                          # (R, N)
    # per class stratum s: summed evidence of its rows for every class, as observed and in each resample
    strata = [k for k in range(class_count) if (classes == k).any()]
    sums = {s: evidence_all[classes == s].sum(axis=0) for s in strata}                     # (P, K)
    resampled_sums = {s: np.einsum("rn,npk->rpk", weights[:, classes == s], evidence_all[classes == s])
                      for s in strata}                                                      # (R, P, K)
    result = {}
    contrasts, resampled_contrasts = [], []
    level = family_confidence(values.shape[1])
    for k in strata:
        rows = classes == k
        inside, outside = rows.sum(), n - rows.sum()
        entry = {"rows": int(inside), "importance": interval(own[rows].mean(axis=0), weights[:, rows] @ own[rows] / inside)}
        if outside:
            contrast = sums[k][:, k] / inside - sum(sums[s][:, k] for s in strata if s != k) / outside
            resampled = (resampled_sums[k][:, :, k] / inside
                         - sum(resampled_sums[s][:, :, k] for s in strata if s != k) / outside)
            entry["contrast"] = interval(contrast, resampled, level)
            contrasts.append(inside / n * contrast)
            resampled_contrasts.append(inside / n * resampled)
        result[k] = entry
    result["all"] = {"rows": n, "importance": interval(own.mean(axis=0), weights @ own / n)}
    if len(contrasts) == len(strata) and len(strata) > 1:
        result["all"]["contrast"] = interval(sum(contrasts), sum(resampled_contrasts), level)
    return result


def named(entry: dict, names: list) -> dict:
    """name -> {"mean", "low", "high", "contrast": {...}, "informative"} for metrics.json. Intervals need
    MIN_INTERVAL_ROWS rows (None otherwise); "informative" is False when the contrast's interval contains zero, None
    without one."""
    small = entry["rows"] < MIN_INTERVAL_ROWS
    result = {}
    for p, name in enumerate(names):
        item = {key: None if small and key != "mean" else float(entry["importance"][key][p])
                for key in ("mean", "low", "high")}
        contrast = entry.get("contrast")
        if contrast is not None and not small:
            item["contrast"] = {key: float(contrast[key][p]) for key in ("mean", "low", "high")}
            item["informative"] = not item["contrast"]["low"] <= 0 <= item["contrast"]["high"]
        else:
            item["contrast"], item["informative"] = None, None
        result[name] = item
    return result


def relative_window_edges(lengths, windows: int) -> np.ndarray:
    """(W + 1,) edges of the windows, in per cent of each row's own length, of rows of these lengths each cut into
    `windows` windows of its own steps (regions.window_edges): the mean over the rows, where rounding to whole steps
    moves them apart. Rows shorter than `windows` steps, whose windows are single steps, are left out."""
    lengths = [int(n) for n in lengths]
    cut = [n for n in lengths if n >= windows] or [max(lengths)]
    count = min(windows, max(cut))
    return np.mean([100 * regions.window_edges(n, count) / n for n in cut if n >= count], axis=0)


def relative_class_means(inputs: np.ndarray, lengths, classes: np.ndarray, class_count: int,
                         points: int = RELATIVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(positions (points,) in per cent of a row's length, means (K, C, points)): each row's own steps, step t at
    100 (t + 0.5) / length, interpolated linearly onto the positions, then averaged per class (zeros for a class
    without rows). Every row covers the whole axis, so no position is an average over nothing."""
    positions = 100 * (np.arange(points) + 0.5) / points
    resampled = np.stack([[np.interp(positions, 100 * (np.arange(n) + 0.5) / n, channel[:n]) for channel in row]
                          for row, n in zip(inputs, np.asarray(lengths, dtype=int))])
    means = np.stack([resampled[classes == k].mean(axis=0) if (classes == k).any()
                      else np.zeros(resampled.shape[1:]) for k in range(class_count)])
    return positions, means


def choose_rows(classes: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Indices of `count` rows (all when count is 0 or at least the number of rows), a seeded sample
    stratified over `classes`: each class keeps its share, rounded so that every present class has a row."""
    n = len(classes)
    if count == 0 or count >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    present, sizes = np.unique(classes, return_counts=True)
    quota = np.maximum(1, np.floor(sizes * count / n)).astype(int)
    # hand out what rounding left to the classes with the largest remainders
    for k in np.argsort(-(sizes * count / n - quota), kind="stable")[:max(0, count - quota.sum())]:
        quota[k] += 1
    chosen = [rng.choice(np.flatnonzero(classes == k), min(q, s), replace=False)
              for k, q, s in zip(present, quota, sizes)]
    return np.sort(np.concatenate(chosen))


def global_importance(model, x, background, classes, channel_names, class_names, windows: int, seed: int,
                      window_labels: list, lengths=None, background_lengths=None,
                      step=lambda: None) -> tuple[dict, dict]:
    """The global explanation of rows x (N, C, L) whose predicted classes are `classes`: (arrays for
    global_importance.npz, the metrics.json section). lengths (N,), background_lengths (B,): rows of their own
    lengths (None: every row full length). step() is called after each row of each grouping (progress)."""
    n, channels, length = x.shape
    keep = background_rows(len(background), seed)
    reference = background[torch.as_tensor(keep, device=background.device)]
    own = {} if lengths is None else {"lengths": np.asarray(lengths),
                                      "background_lengths": own_lengths(background_lengths, background)[keep]}
    arrays, seconds, methods = {}, {}, {}
    for grouping in GROUPINGS:
        groups = (players(grouping, channels, length, windows) if lengths is None
                  else shapley.groups_per_row(lambda n: players(grouping, channels, n, windows), channels, length,
                                              lengths))
        start = time.perf_counter()
        arrays[grouping] = group_values(model, x, reference, groups, seed, **own, step=step)
        seconds[grouping] = time.perf_counter() - start
        methods[grouping] = method_for(int(groups.max()) + 1)
    seconds["total"] = sum(seconds.values())  # the stage adds its figures and files
    if lengths is None:
        with torch.inference_mode():
            outputs = model(x).double().cpu().numpy()
            expected = model(reference).double().cpu().numpy().mean(axis=0)
    else:  # each row's base value is the background's mean output at that row's length (shapley.py)
        f = model_at_lengths(model)
        with torch.inference_mode():
            outputs = f(x, torch.as_tensor(own["lengths"], device=x.device)).double().cpu().numpy()
        expected = shapley.expected_outputs(f, reference, own["background_lengths"], own["lengths"])
    channel_stats = importance(arrays["channels"], classes, len(class_names), seed)
    window_stats = importance(arrays["windows"], classes, len(class_names), seed)
    section = {"rows": n, "classes": "predicted", "num_background": len(reference),
               "method": {g: methods[g] for g in GROUPINGS}, "seconds": seconds,
               "output": "logit of the predicted class minus the mean logit",
               "confidence": CONFIDENCE, "bootstrap_resamples": BOOTSTRAP_RESAMPLES,
               "contrast_confidence": {"channels": family_confidence(channels),
                                       "windows": family_confidence(arrays["windows"].shape[1])},
               "channel_importance": named(channel_stats["all"], channel_names),
               "window_importance": named(window_stats["all"], window_labels), "per_class": {}}
    cells = np.zeros((len(class_names), channels, arrays["cells"].shape[1] // channels))
    cell_evidence = centred(arrays["cells"])
    for k, name in enumerate(class_names):
        if k not in channel_stats:
            continue
        section["per_class"][name] = {"rows": channel_stats[k]["rows"],
                                      "channel_importance": named(channel_stats[k], channel_names),
                                      "window_importance": named(window_stats[k], window_labels)}
        cells[k] = cell_evidence[classes == k, :, k].mean(axis=0).reshape(channels, -1)
    section["additivity_max_abs_error"] = {g: float(np.abs(v.sum(axis=1) - (outputs - expected)).max())
                                           for g, v in arrays.items()}
    arrays = {"channel_values": arrays["channels"], "window_values": arrays["windows"],
              "cell_values": arrays["cells"], "class_mean_cell_evidence": cells, "outputs": outputs,
              "expected_value": expected}
    return arrays, section
