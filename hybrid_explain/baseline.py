"""A strong, cheap, non-deep reference on the run's own split (BASELINE): aeon's MiniRocket classifier (Dempster,
Schmidt and Webb, KDD 2021), fitted on the training rows and scored on the test rows, and the teacher probabilities
that distillation (hybrid_explain/distillation.py) trains the network toward. Pure functions: arrays in, arrays and
dicts out, no files.

Rows of different lengths: aeon's ROCKETs refuse unequal lengths (aeon issue #2444), so each row is padded after
its end with its own last value (a flat tail, no step that is not in the row), and every row to at least
MINIROCKET_MIN_STEPS, the width of MiniRocket's kernels. Gaps inside a row arrive already interpolated by the reader
(MISSING_VALUES). MiniRocket's numba kernels are compiled once per installation and kept in numba's on-disk cache
(aeon compiles them with cache=True): the first run pays about a minute, later ones a second
(docs/measurements/baseline.md).
"""
import contextlib
import time

import numpy as np

BASELINES = ("minirocket",)  # config.CHOICES["baseline"] without "" (none)
MINIROCKET_MIN_STEPS = 9  # aeon's MiniRocket refuses fewer steps: its kernels are 9 wide
RIDGE_ALPHAS = np.logspace(-3, 3, 10)  # MiniRocketClassifier's own RidgeClassifierCV grid
TEACHER_FOLDS = 5  # cross-fitting folds of the teacher's out-of-fold scores (fewer when a class has fewer rows)


class BaselineError(ValueError):
    """The baseline cannot run on these settings or data; the message is one line."""


def aeon_problem() -> str | None:
    """Why the baseline cannot run here (aeon is not installed), or None; without importing aeon (seconds)."""
    import importlib.util

    if importlib.util.find_spec("aeon") is None:
        return "BASELINE needs aeon: pip install 'aeon>=1.0,<2' (a dependency of train-explain), or --baseline=''"
    return None


def padded_with_last_value(X: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    """(N, C, max(L, MINIROCKET_MIN_STEPS)) float32: each row's steps after its end (its length) set to its last
    value, and the width extended the same way to at least MINIROCKET_MIN_STEPS."""
    n, channels, width = X.shape
    lengths = np.full(n, width) if lengths is None else np.asarray(lengths)
    steps = np.arange(max(width, MINIROCKET_MIN_STEPS))
    source = np.minimum(steps[None, :], lengths[:, None] - 1)  # (N, W'): the step each output step copies
    return np.take_along_axis(X, np.broadcast_to(source[:, None, :], (n, channels, len(steps))), axis=2
                              ).astype(np.float32)


@contextlib.contextmanager
def torch_threads_kept():
    """Runs aeon's MiniRocket without changing torch's thread count. Its transform sets numba's threads to n_jobs and
    then back to numba's default, one per core; numba's OpenMP layer shares its runtime with torch, so each call
    left torch on every core (measured: 1 thread before a fit, 2 after, on 2 cores), and a run's training after
    the baseline would not use the threads the run chose (THREADS)."""
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fit_baseline(X: np.ndarray, y: np.ndarray, lengths, seed: int):
    """aeon's MiniRocketClassifier (MiniRocket features, scaled, RidgeClassifierCV) fitted on the rows, one thread."""
    from aeon.classification.convolution_based import MiniRocketClassifier

    with torch_threads_kept():
        return MiniRocketClassifier(random_state=seed, n_jobs=1).fit(padded_with_last_value(X, lengths), y)


def baseline_predictions(classifier, X: np.ndarray, lengths) -> np.ndarray:
    """Class indices the fitted baseline gives the rows (padded as for fitting)."""
    with torch_threads_kept():
        return np.asarray(classifier.predict(padded_with_last_value(X, lengths)), dtype=np.int64)


def agreement(y_true, network, baseline) -> dict:
    """Shares of the rows both classifiers get right, only the network, only the baseline, neither (they add up
    to 1)."""
    net_right, base_right = np.asarray(network) == y_true, np.asarray(baseline) == y_true
    return {"both_right": float(np.mean(net_right & base_right)),
            "only_network": float(np.mean(net_right & ~base_right)),
            "only_baseline": float(np.mean(~net_right & base_right)),
            "neither": float(np.mean(~net_right & ~base_right))}


def baseline_summary(y_true, network, baseline, num_classes: int, seconds: float) -> dict:
    """metrics.json's `baseline` section: accuracy and macro F1 as the network's are computed
    (stages.evaluation_outputs), agreement with the network; without labels (y_true None), only how often the two
    predict the same class."""
    from sklearn.metrics import accuracy_score, f1_score

    summary = {"classifier": "minirocket", "library": "aeon MiniRocketClassifier", "seconds": seconds,
               "unequal_lengths": "rows padded after their end with their last value (aeon's ROCKETs need equal "
                                  f"lengths), and to at least {MINIROCKET_MIN_STEPS} steps",
               "same_prediction": float(np.mean(np.asarray(network) == np.asarray(baseline)))}
    if y_true is None:
        return summary
    return {**summary, "test_accuracy": float(accuracy_score(y_true, baseline)),
            "test_macro_f1": float(f1_score(y_true, baseline, labels=list(range(num_classes)), average="macro",
                                            zero_division=0)),
            "agreement": agreement(y_true, network, baseline)}


def baseline_line(summary: dict, network_accuracy) -> str:
    """One sentence for the console and the report: the baseline's scores beside the network's."""
    if "skipped" in summary:
        return f"baseline {summary['classifier']}: skipped ({summary['skipped']})"
    if "test_accuracy" not in summary:
        return (f"a MiniRocket classifier on the same training rows predicts the network's class for "
                f"{summary['same_prediction']:.0%} of the rows (no labels to score either)")
    share = summary["agreement"]
    return (f"a MiniRocket classifier on the same split: test accuracy {summary['test_accuracy']:.4f} (macro F1 "
            f"{summary['test_macro_f1']:.4f}, {summary['seconds']:.1f} s); this network: {network_accuracy:.4f}. "
            f"Rows both get right {share['both_right']:.0%}, only the network {share['only_network']:.0%}, "
            f"only MiniRocket {share['only_baseline']:.0%}, neither {share['neither']:.0%}")


def fitted_and_scored(train, test, seed: int) -> dict:
    """The baseline fitted on the training table and its class indices for the test table, timed:
    {"classifier", "predictions", "seconds"}."""
    started = time.perf_counter()
    classifier = fit_baseline(train.X, train.y, train.lengths, seed)
    predictions = baseline_predictions(classifier, test.X, test.lengths)
    return {"classifier": classifier, "predictions": predictions, "seconds": time.perf_counter() - started}


def ridge_scores_as_logits(scores: np.ndarray) -> np.ndarray:
    """(N, K) class scores from RidgeClassifierCV's decision_function: a binary problem's one column s (> 0 for
    the second class) becomes (-s, s), the scale of the one-vs-rest columns of more classes."""
    return np.stack([-scores, scores], axis=1) if scores.ndim == 1 else scores


def calibrated_temperature(scores: np.ndarray, y: np.ndarray) -> float:
    """The T > 0 that minimizes the negative log-likelihood of softmax(scores / T) on the labels y (temperature
    scaling, Guo et al., ICML 2017): a ridge classifier's scores are no probabilities, their scale is arbitrary."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    rows = np.arange(len(y))
    result = minimize_scalar(lambda log_t: -log_softmax(scores / np.exp(log_t), axis=1)[rows, y].mean(),
                             bounds=(-7.0, 7.0), method="bounded")
    return float(np.exp(result.x))


def teacher_probabilities(classifier, X: np.ndarray, y: np.ndarray, lengths, rows: np.ndarray, seed: int) -> dict:
    """Out-of-fold class probabilities of the training rows `rows`, none from a ridge that saw the row's label:
    the fitted baseline's MiniRocket features (an unsupervised transform: no labels), then its scaler and ridge
    refitted on the other folds of `rows` (stratified, TEACHER_FOLDS or as many as the smallest class allows), the
    scores turned into probabilities by the temperature that calibrates them. Returns {"probabilities" (len(rows),
    K), "folds", "calibration_temperature", "out_of_fold_accuracy"}."""
    from scipy.special import softmax
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    X, y = X[rows], y[rows]
    num_classes = len(classifier.classes_)
    smallest = int(np.bincount(y, minlength=num_classes).min())
    if smallest < 2:
        raise BaselineError("DISTILL needs at least 2 training rows of every class for out-of-fold teacher "
                            f"probabilities; a class has {smallest}; use --distill=False")
    with torch_threads_kept():
        features = classifier.pipeline_[0].transform(padded_with_last_value(X, None if lengths is None
                                                                            else lengths[rows]))
    head = clone(classifier.pipeline_[1:])  # MiniRocketClassifier's scaler and ridge, unfitted
    folds = min(TEACHER_FOLDS, smallest)
    scores = ridge_scores_as_logits(cross_val_predict(
        head, features, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed), method="decision_function"))
    temperature = calibrated_temperature(scores, y)
    return {"probabilities": softmax(scores / temperature, axis=1), "folds": folds,
            "calibration_temperature": temperature,
            "out_of_fold_accuracy": float(np.mean(scores.argmax(1) == y))}
