"""How well attribution maps find a known ground-truth mask: the localization metrics of the time-series
interpretability benchmarks (Ismail et al. 2020, NeurIPS; Queen et al. 2023, TimeX, NeurIPS). Metrics live
apart from the methods (attributions.py), as in Captum.

Per sample, the map's |attribution| is min-max scaled to [0, 1] (both papers) and compared with the sample's
binary mask over (channel, step):

  AUPRC  average precision of the scores against the mask (scikit-learn's average_precision_score, TimeX's
         `ground_truth_xai_eval`); a constant or random map scores the mask's prevalence, a perfect one 1.
  AUP    area under precision as a function of the threshold over [0, 1]: precision of {score >= threshold},
         integrated by the trapezoid rule over the thresholds of precision_recall_curve (TimeX).
  AUR    the same area for recall.

Scores are computed per sample and then averaged (TimeX's protocol). Signed maps are scored by their
magnitude (Ismail et al.; TimeX min-max scales the signed map, which ranks strong negative evidence last).
"""
import numpy as np
from sklearn.metrics import auc, average_precision_score, precision_recall_curve


class MaskError(ValueError):
    """A ground-truth mask that cannot be scored against (wrong shape, or no positive or no negative cell)."""


def min_max_scaled(scores: np.ndarray) -> np.ndarray:
    """scores mapped linearly onto [0, 1]; a constant map becomes all zeros."""
    low, span = scores.min(), scores.max() - scores.min()
    return (scores - low) / span if span > 0 else np.zeros_like(scores, dtype=np.float64)


def sample_scores(attribution: np.ndarray, mask: np.ndarray) -> tuple[float, float, float]:
    """(AUPRC, AUP, AUR) of one map against one binary mask of the same shape."""
    truth = np.asarray(mask).reshape(-1).astype(bool)
    if truth.all() or not truth.any():
        raise MaskError("a ground-truth mask needs at least one relevant and one irrelevant cell")
    scores = min_max_scaled(np.abs(np.asarray(attribution, np.float64)).reshape(-1))
    auprc = average_precision_score(truth, scores)
    precision, recall, thresholds = precision_recall_curve(truth, scores)
    # The curves' last entries (precision 1, recall 0) belong to no threshold. One threshold (a constant map)
    # spans no interval of thresholds: both areas are 0.
    aup = auc(thresholds, precision[:-1]) if len(thresholds) > 1 else 0.0
    aur = auc(thresholds, recall[:-1]) if len(thresholds) > 1 else 0.0
    return float(auprc), float(aup), float(aur)


def localization_scores(maps: np.ndarray, masks: np.ndarray) -> dict:
    """Per-sample AUPRC, AUP and AUR of maps (N, C, L) against masks (N, C, L): {"auprc": (N,), "aup": (N,),
    "aur": (N,)} float arrays. Average them for the benchmark's number (`mean_scores`)."""
    maps, masks = np.asarray(maps), np.asarray(masks)
    if maps.shape != masks.shape:
        raise MaskError(f"maps {maps.shape} and masks {masks.shape} must have the same shape")
    per_sample = np.array([sample_scores(m, g) for m, g in zip(maps, masks)]).reshape(-1, 3)
    return {"auprc": per_sample[:, 0], "aup": per_sample[:, 1], "aur": per_sample[:, 2]}


def mean_scores(maps: np.ndarray, masks: np.ndarray) -> dict:
    """{"auprc", "aup", "aur"}: the per-sample scores averaged over the samples (TimeX's protocol)."""
    return {name: float(values.mean()) for name, values in localization_scores(maps, masks).items()}
