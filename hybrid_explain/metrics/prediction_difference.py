"""Cumulative prediction difference (CPD) and cumulative prediction preservation (CPP), the faithfulness metrics of
Jang et al. 2025 ("TIMING: Temporality-Aware Integrated Gradients for Time Series Explanation", ICML; code
github drumpt/TIMING, real/cumulative_difference.py), read from that code:

    order the features of a sample by |attribution| (CPD: largest first; CPP: smallest first), remove the first
    k = int(fraction x features) one at a time (set them to a fill value), x_0 = x, x_j = x with the first j
    removed, and sum over the steps  d(x_j, x_{j+1}) = mean over the classes of |p(x_j) - p(x_{j+1})|,
    p the softmax probabilities.

CPD: a faithful map removes first what moves the prediction most (higher is better). CPP: removing what the map
calls least important should leave it alone (lower is better). Removing one feature at a time, unlike deletion
curves that remove many at once, keeps a feature that pushes the class up and one that pushes it down from
cancelling within one step (the paper's argument). The reference code sums the steps per sample and averages over
samples; so does `prediction_difference`, and it returns the per-sample sums.

Fill values (`FILLS`), the value a removed feature takes (the paper reports zero fill and "Average", each
sample's own mean over time per channel; CPD depends on it: issue 34 quotes an independent rerun of Boiler with
TIMING 1.465 at zero fill and 0.773 with an in-distribution fill):
  zero             0 in normalized space (the training mean; the deletion curves' baseline)
  background_mean  the mean over the SHAP background rows of each (channel, step)
  row_mean         each row's own mean over its steps, per channel (the reference code's "Average")

Cost: (k + 1) model rows per sample, order and fill, evaluated BATCH_ROWS copies per forward pass.
Rows of different lengths: k is of each row's own features, only those are removed, and the model reads each copy
at its row's length.
"""
import numpy as np
import torch

from hybrid_explain.metrics.checks import feature_ranks, real_features
from hybrid_explain.model import predict_logits
from hybrid_explain.series import Rows, own_lengths

CPD_FRACTION = 0.1  # features removed per sample: the reference code's 10 % runs (--areas 0.1, --top 0)
MAX_REMOVALS = 100  # the pipeline's cap on removals per sample (the reference's MIMIC-III runs: --top 100), so that
# the cost, (removals + 1) rows per sample, method, order and fill, does not grow with the series' size
FILLS = ("zero", "background_mean", "row_mean")
BATCH_ROWS = 512  # perturbed copies per forward pass
MAX_COPY_CELLS = 2 ** 24  # copies built at once: at most this many (rows x channels x steps) floats (64 MiB)


def fill_values(fill: str, x: torch.Tensor, background=None, lengths=None, background_lengths=None) -> torch.Tensor:
    """(N, C, L) values a removed feature takes (FILLS). background (B, C, L): rows of the reference distribution
    (background_mean only; with background_lengths, each row counts only at its own steps)."""
    n, channels, length = x.shape
    if fill == "zero":
        return torch.zeros_like(x)
    if fill == "background_mean":
        if background is None or len(background) == 0:
            raise ValueError("fill='background_mean' needs background rows")
        reference = Rows.of(background.to(x), background_lengths)
        if not reference.ragged:
            return reference.x.mean(0, keepdim=True).expand(n, -1, -1)
        own = reference.mask.to(x)[:, None, :]
        mean = (reference.x * own).sum(0) / own.sum(0).clamp_min(1)
        return mean[None].expand(n, -1, -1)
    if fill == "row_mean":
        rows = Rows.of(x, lengths)
        if not rows.ragged:
            return x.mean(2, keepdim=True).expand(-1, -1, length)
        own = rows.mask.to(x)[:, None, :]
        return ((x * own).sum(2, keepdim=True) / own.sum(2, keepdim=True)).expand(-1, -1, length)
    raise ValueError(f"unknown fill {fill!r}: choose one of {', '.join(FILLS)}")


def removal_ranks(maps: np.ndarray, rng, smallest_first: bool, lengths=None) -> np.ndarray:
    """(N, C*L) rank of each feature in the removal order, 0 first: |map| largest first (CPD) or smallest first
    (CPP), ties in random order; the features after a row's end rank last (never removed)."""
    size = np.abs(maps.astype(np.float64))
    key = -size if smallest_first else size
    real = real_features(own_lengths(lengths, maps), maps.shape[1], maps.shape[2]).reshape(maps.shape)
    return feature_ranks(np.where(real, key, -np.inf), rng)


def removal_counts(fraction: float, channels: int, length: int, n: int, lengths=None, most=None) -> np.ndarray:
    """(N,) features removed per sample: int(fraction x its own features), the reference's rounding, at least 1 and
    at most `most` (None: no cap)."""
    own = np.full(n, length) if lengths is None else np.asarray(lengths)  # lengths of rows not at hand (n of them)
    counts = np.maximum(1, (fraction * channels * own).astype(int))
    return counts if most is None else np.minimum(counts, most)


def cumulative_differences(model, x, ranks: np.ndarray, counts: np.ndarray, fill: torch.Tensor,
                           lengths=None) -> np.ndarray:
    """(N,) sum over j < counts[i] of mean_k |p_k(x_j) - p_k(x_{j+1})|, x_j = x with the features of rank < j set to
    fill (N, C, L); p the softmax of the model's logits. Copies of several samples share forward passes."""
    n, channels, length = x.shape
    batch = Rows.of(x, lengths)
    steps = int(counts.max()) + 1  # copies per sample: x_0 .. x_k
    per_chunk = max(1, MAX_COPY_CELLS // (steps * channels * length))
    sums = []
    for start in range(0, n, per_chunk):
        rows = slice(start, start + per_chunk)
        m = len(x[rows])
        # a row with fewer removals than the longest keeps its last copy: those steps add 0
        removed_upto = np.minimum(np.arange(steps)[None, :], counts[rows, None])  # (m, steps)
        gone = torch.from_numpy(ranks[rows, None, :] < removed_upto[:, :, None]).to(x.device)
        gone = gone.reshape(m, steps, channels, length)
        copies = torch.where(gone, fill[rows, None], x[rows, None]).reshape(-1, channels, length)
        with torch.inference_mode():
            logits = predict_logits(model, copies, BATCH_ROWS, batch.lengths[rows].repeat_interleave(steps)).double()
        probability = torch.softmax(logits, dim=1).reshape(m, steps, -1)
        sums.append((probability[:, 1:] - probability[:, :-1]).abs().mean(dim=2).sum(dim=1).cpu().numpy())
    return np.concatenate(sums)


def prediction_difference(model, x, maps: dict, seed: int, fills=("zero", "background_mean"), background=None,
                          fraction: float = CPD_FRACTION, lengths=None, background_lengths=None,
                          most=None) -> dict:
    """method -> fill -> {"cpd": (N,), "cpp": (N,)} per-sample sums for every map (N, C, L) in maps, the same seeded
    tie order for each method. lengths (N,) tensor: rows of their own lengths. most: at most this many removals
    per sample (None: int(fraction x features), the reference's)."""
    model.eval()
    n, channels, length = x.shape
    own = Rows.of(x, lengths).own
    counts = removal_counts(fraction, channels, length, n, own, most)
    fill_tensors = {fill: fill_values(fill, x, background, lengths, background_lengths) for fill in fills}
    result = {}
    for name, m in maps.items():
        ranks = {order: removal_ranks(m, np.random.default_rng(seed), order == "cpp", own) for order in ("cpd", "cpp")}
        result[name] = {fill: {order: cumulative_differences(model, x, ranks[order], counts, values, lengths)
                               for order in ("cpd", "cpp")}
                        for fill, values in fill_tensors.items()}
    return result


def summary(per_sample: dict, fraction: float = CPD_FRACTION) -> dict:
    """metrics.json's view of prediction_difference: method -> fill -> {"cpd", "cpp"} means over the samples."""
    return {name: {fill: {order: float(np.mean(v)) for order, v in orders.items()} for fill, orders in fills.items()}
            for name, fills in per_sample.items()}
