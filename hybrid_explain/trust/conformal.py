"""Split-conformal prediction sets (Vovk et al. 2005; Angelopoulos & Bates, "A gentle introduction to conformal
prediction", 2021, section 1): a nonconformity score of each held-out row at its true class, and the set of the
classes whose score on a new row is at most the ceil((n + 1) * level)-th smallest of the n held-out scores. If the
held-out rows and the new row are exchangeable (drawn alike, in no telling order), the set holds the true class with
probability at least `level`, over the draw of both.

Scores (SCORES), each a function (probabilities (N, K), rank noise u (N,)) -> (N, K), the score of every class:
    lac   1 - p_k: the least ambiguous set-valued classifier (Sadinle, Lei & Wasserman, JASA 2019); smallest sets
    aps   the probability of the classes above k plus u * p_k: adaptive prediction sets (Romano, Sesia & Candès,
          NeurIPS 2020), randomised by u ~ U(0, 1) so that coverage is exact, not only at least `level`
A class-conditional ("Mondrian") variant takes the quantile over the held-out rows of each class apart, so that the
guarantee holds within each class; it needs at least level / (1 - level) held-out rows of every class."""
import math

import numpy as np


def lac_scores(probabilities: np.ndarray, noise: np.ndarray) -> np.ndarray:
    return 1.0 - probabilities


def aps_scores(probabilities: np.ndarray, noise: np.ndarray) -> np.ndarray:
    order = np.argsort(-probabilities, axis=1, kind="stable")
    ranked = np.take_along_axis(probabilities, order, axis=1)
    above = np.cumsum(ranked, axis=1) - ranked  # the mass of the classes ranked above each
    scores = np.empty_like(probabilities)
    np.put_along_axis(scores, order, above, axis=1)
    return scores + noise[:, None] * probabilities


SCORES = {"lac": lac_scores, "aps": aps_scores}


def true_class_scores(probabilities, y_true, score="lac", noise=None) -> np.ndarray:
    """(n,) each row's score at its true class."""
    noise = np.zeros(len(y_true)) if noise is None else noise
    return SCORES[score](probabilities, noise)[np.arange(len(y_true)), y_true]


def threshold(scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) * level)-th smallest of the n scores; inf when n is too small for `level` (n < level /
    (1 - level)): every class is then in every set, the only set the guarantee allows."""
    rank = math.ceil((len(scores) + 1) * level)
    return math.inf if rank > len(scores) else float(np.sort(scores)[rank - 1])


def class_thresholds(scores: np.ndarray, y_true: np.ndarray, num_classes: int, level: float) -> np.ndarray:
    """(K,) threshold() over the held-out rows of each class alone (inf for a class with too few)."""
    return np.array([threshold(scores[y_true == k], level) for k in range(num_classes)])


def prediction_sets(probabilities, thresholds, score="lac", noise=None) -> np.ndarray:
    """(N, K) bool: class k is in row i's set when its score is at most the threshold (a number, or one per class)."""
    noise = np.zeros(len(probabilities)) if noise is None else noise
    return SCORES[score](probabilities, noise) <= np.reshape(thresholds, (1, -1))


def coverage_and_size(sets: np.ndarray, y_true: np.ndarray) -> dict:
    """The share of rows whose set holds the true class, the mean set size and the share of empty sets."""
    return {"coverage": float(sets[np.arange(len(y_true)), y_true].mean()), "mean_set_size": float(sets.sum(1).mean()),
            "empty_sets": float((sets.sum(1) == 0).mean())}
