"""How unlike the training rows a row is, in the model's representation (representation.py), so that a prediction
on a row unlike anything the model was trained on can be flagged. Three scores, higher = less like the training rows:

    mahalanobis  the distance to the nearest class mean under one covariance shared by the classes (Lee et al.,
                 NeurIPS 2018), the covariance shrunk by Ledoit-Wolf (scikit-learn) since the representation has more
                 dimensions than a small training set has rows
    energy       -log sum_k exp(logit_k) (Liu et al., "Energy-based out-of-distribution detection", NeurIPS 2020):
                 the logits alone, no training rows needed
    knn          the distance to the k-th nearest training row (Sun et al., ICML 2022), in standardized features

A row is flagged when its score is above the (1 - false alarm rate) quantile of the training rows' scores."""
import numpy as np
from scipy.special import logsumexp

KNN_K = 5


def standardizer(features: np.ndarray) -> dict:
    """Each dimension's mean and scale on the training rows (scale 1 where a dimension is constant)."""
    scale = features.std(axis=0)
    return {"mean": features.mean(axis=0), "scale": np.where(scale > 1e-8, scale, 1.0)}


def standardized(features: np.ndarray, fitted: dict) -> np.ndarray:
    return (features - fitted["mean"]) / fitted["scale"]


def fit_class_gaussians(features: np.ndarray, y: np.ndarray, num_classes: int) -> dict:
    """Class means (K, D) (zeros for a class without rows, which then never is the nearest: see mahalanobis) and the
    precision (D, D) of the covariance of the rows about their class means, shrunk by Ledoit-Wolf."""
    from sklearn.covariance import LedoitWolf

    present = np.unique(y)
    means = np.zeros((num_classes, features.shape[1]))
    means[present] = np.stack([features[y == k].mean(axis=0) for k in present])
    centred = features - means[y]
    return {"means": means, "precision": LedoitWolf(assume_centered=True).fit(centred).precision_,
            "present": np.isin(np.arange(num_classes), present)}


def mahalanobis(features: np.ndarray, fitted: dict) -> np.ndarray:
    """(N,) the smallest squared Mahalanobis distance to a class mean."""
    means = fitted["means"][fitted["present"]]
    differences = features[:, None, :] - means[None, :, :]  # (N, K, D)
    return np.einsum("nkd,de,nke->nk", differences, fitted["precision"], differences).min(axis=1)


def energy(logits: np.ndarray) -> np.ndarray:
    """(N,) -logsumexp of the logits: low where some class is confidently likely."""
    return -logsumexp(np.asarray(logits, dtype=np.float64), axis=1)


def knn_distance(features: np.ndarray, bank: np.ndarray, k: int = KNN_K, exclude_self: bool = False) -> np.ndarray:
    """(N,) the Euclidean distance to the k-th nearest row of bank; exclude_self: features are bank's own rows, and
    each row's distance 0 to itself is skipped."""
    distances = np.sqrt(np.maximum(squared_distances(features, bank), 0))
    k = min(k + exclude_self, bank.shape[0])
    return np.sort(distances, axis=1)[:, k - 1]


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) squared Euclidean distances between the rows of a and of b."""
    return (a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None, :] - 2 * a @ b.T


def flag_threshold(reference_scores: np.ndarray, false_alarm_rate: float) -> float:
    """The score above which a row is flagged: the (1 - false_alarm_rate) quantile of reference_scores (the training
    rows'), taken as a score that occurs, so that at most that share of them is above it."""
    return float(np.quantile(reference_scores, 1 - false_alarm_rate, method="higher"))


def auroc(in_distribution: np.ndarray, shifted: np.ndarray) -> float:
    """The probability that a shifted row scores above an in-distribution one (ties count half)."""
    from sklearn.metrics import roc_auc_score

    scores = np.concatenate([in_distribution, shifted])
    return float(roc_auc_score(np.r_[np.zeros(len(in_distribution)), np.ones(len(shifted))], scores))
