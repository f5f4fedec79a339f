"""How far the predicted probabilities can be taken at their word: the expected calibration error over equal-width
confidence bins (Guo et al., "On calibration of modern neural networks", ICML 2017, section 2), the reliability
diagram's bins, and temperature scaling (the same paper, section 4.2): one number T that divides the logits, fitted by
the negative log-likelihood of rows held out from training. Dividing by T > 0 never changes which class is largest."""
import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

ECE_BINS = 15
TEMPERATURE_RANGE = (0.05, 20.0)  # the search interval: beyond it the held-out rows say more about themselves than T


def reliability_bins(probabilities: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Per equal-width bin of the top probability, bin m holding confidences in ((m - 1) / bins, m / bins]: `rows`,
    `confidence` (mean top probability) and `accuracy` (share predicted right); the means are None in an empty bin."""
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == y_true).astype(np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    rows = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / rows
        accuracy = np.bincount(index, weights=correct, minlength=bins) / rows
    return {"edges": np.linspace(0, 1, bins + 1).tolist(), "rows": rows.tolist(),
            "confidence": [None if n == 0 else float(c) for n, c in zip(rows, mean_confidence)],
            "accuracy": [None if n == 0 else float(a) for n, a in zip(rows, accuracy)]}


def expected_calibration_error(probabilities: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS) -> float:
    """sum over bins of (rows in bin / rows) * |accuracy - mean confidence|, the bins of reliability_bins."""
    table = reliability_bins(probabilities, y_true, bins)
    gaps = [n * abs(a - c) for n, a, c in zip(table["rows"], table["accuracy"], table["confidence"]) if n]
    return float(sum(gaps) / len(y_true))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The T in TEMPERATURE_RANGE minimising the mean negative log-likelihood of softmax(logits / T) at y_true. The
    likelihood is convex in 1 / T, so a bounded scalar search finds the one minimum."""
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(y_true))

    def loss(inverse):
        return -log_softmax(logits * inverse, axis=1)[rows, y_true].mean()

    low, high = TEMPERATURE_RANGE
    found = minimize_scalar(loss, bounds=(1 / high, 1 / low), method="bounded", options={"xatol": 1e-6})
    return float(1 / found.x)


def scaled_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


def unscaled_probabilities(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities before temperature scaling, from those after: softmax(T * log p) = softmax(logits), since
    log p = logits / T minus a constant per row."""
    with np.errstate(divide="ignore"):
        return softmax(temperature * np.log(probabilities), axis=1)
