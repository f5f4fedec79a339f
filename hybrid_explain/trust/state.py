"""What the checkpoint keeps for trust in each prediction (its "trust" field), and the per-row scores computed from
it: calibrated probabilities, conformal prediction sets, out-of-distribution scores and the training rows nearest in
the model's representation. Everything is a tensor or a plain number, so the checkpoint loads with weights_only=True;
a checkpoint without the field (written before it) means temperature 1, no sets, no flags and no similar cases.

Held-out rows: the validation split (VAL_FRACTION > 0), the rows training already keeps out of the weights. They
choose the kept epoch too, one choice among the epochs; cross-fitting would avoid that but trains the model again
per fold (docs/trust.md measures what the reuse costs)."""
import math

import numpy as np
import torch

from hybrid_explain.trust import calibration, conformal, ood, representation

SET_SCORE = "lac"  # conformal score of the sets the tool writes (docs/trust.md: LAC against APS and class-conditional)
OOD_SCORE = "mahalanobis"  # the out-of-distribution score that flags rows (docs/trust.md: the three measured)
MAX_REFERENCE_ROWS = 100_000  # training rows whose OOD scores the checkpoint keeps (a seeded sample beyond)
REFERENCE_FOLDS = 5  # the training rows' Mahalanobis scores are out of fold (out_of_fold_mahalanobis)
MAX_CASE_ROWS = 1_000  # training rows searched for similar cases, kept with their series
MAX_CASE_CELLS = 20_000_000  # ... and at most this many stored values (rows x channels x steps)


def fit_state(logits, features, y, held_out, series, lengths, rows, seed) -> dict:
    """The checkpoint's trust field from every training-file row: logits (N, K) and features (N, D) of the trained
    model, labels y (N,), held_out (indices of the rows kept out of training, maybe none), series (N, C, L) normalized
    as fed to the model with their lengths (N,), rows (N,) the file's row numbers."""
    logits, features = np.asarray(logits, dtype=np.float64), np.asarray(features, dtype=np.float64)
    num_classes = logits.shape[1]
    temperature = calibration.fit_temperature(logits[held_out], y[held_out]) if len(held_out) else 1.0
    scaling = ood.standardizer(features)
    z = ood.standardized(features, scaling)
    gaussians = ood.fit_class_gaussians(z, y, num_classes)
    rng = np.random.default_rng(seed)
    cases = np.sort(rng.choice(len(y), min(len(y), MAX_CASE_ROWS, max(1, MAX_CASE_CELLS // series[0].size)),
                               replace=False))
    reference = np.sort(rng.choice(len(y), min(len(y), MAX_REFERENCE_ROWS), replace=False))
    in_bank = np.isin(reference, cases)
    knn = np.where(in_bank, ood.knn_distance(z[reference], z[cases], exclude_self=True),
                   ood.knn_distance(z[reference], z[cases]))
    return {
        "temperature": temperature, "held_out_rows": int(len(held_out)),
        "held_out_logits": torch.as_tensor(logits[held_out], dtype=torch.float32),
        "held_out_labels": torch.as_tensor(y[held_out], dtype=torch.long),
        "feature_mean": torch.as_tensor(scaling["mean"], dtype=torch.float32),
        "feature_scale": torch.as_tensor(scaling["scale"], dtype=torch.float32),
        "class_means": torch.as_tensor(gaussians["means"], dtype=torch.float32),
        "precision": torch.as_tensor(gaussians["precision"], dtype=torch.float32),
        "class_present": torch.as_tensor(gaussians["present"]),
        "reference_scores": {"mahalanobis": torch.as_tensor(out_of_fold_mahalanobis(z, y, num_classes, rng)[reference]),
                             "energy": torch.as_tensor(ood.energy(logits[reference])),
                             "knn": torch.as_tensor(knn)},
        "case_features": torch.as_tensor(z[cases], dtype=torch.float32),
        "case_labels": torch.as_tensor(y[cases], dtype=torch.long),
        "case_rows": torch.as_tensor(rows[cases], dtype=torch.long),
        "case_series": torch.as_tensor(series[cases], dtype=torch.float32),
        "case_lengths": torch.as_tensor(lengths[cases], dtype=torch.long),
    }


def from_model(model, train_x, y, lengths, held_out, seed) -> dict:
    """fit_state of a trained model on the training file's rows train_x (N, C, L), normalized as fed to the model (a
    tensor on its device), with labels y, lengths (N,) and the indices of the rows held out from training."""
    logits, features = representation.logits_and_features(model, train_x, lengths=lengths)
    return fit_state(logits.float().cpu().numpy(), features.cpu().numpy(), y, held_out, train_x.cpu().numpy(),
                     lengths, np.arange(len(y)), seed)


def out_of_fold_mahalanobis(z, y, num_classes, rng, folds=REFERENCE_FOLDS) -> np.ndarray:
    """(N,) each row's Mahalanobis score under class Gaussians fitted on the other folds' rows: a row's score under
    a fit that included it is smaller than a new row's, and a threshold on such scores flags far more new rows than
    the false alarm rate says (docs/trust.md measures both)."""
    fold = rng.permutation(len(y)) % folds
    scores = np.empty(len(y))
    for k in range(folds):
        scores[fold == k] = ood.mahalanobis(z[fold == k], ood.fit_class_gaussians(z[fold != k], y[fold != k],
                                                                                num_classes))
    return scores


def temperature(checkpoint) -> float:
    """The checkpoint's temperature; 1 (uncalibrated) for one without held-out rows or written before calibration."""
    return float(checkpoint.get("trust", {}).get("temperature", 1.0))


def held_out_probabilities(state) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated probabilities (n, K), labels (n,)) of the held-out rows."""
    return (calibration.scaled_probabilities(state["held_out_logits"].double().numpy(), state["temperature"]),
            state["held_out_labels"].numpy())


def set_threshold(state, level: float) -> float:
    """The conformal threshold of SET_SCORE at `level` from the held-out rows (inf: too few of them)."""
    probabilities, labels = held_out_probabilities(state)
    return conformal.threshold(conformal.true_class_scores(probabilities, labels, SET_SCORE), level)


def fitted_gaussians(state) -> dict:
    return {"means": state["class_means"].double().numpy(), "precision": state["precision"].double().numpy(),
            "present": state["class_present"].numpy()}


def scaled_features(state, features) -> np.ndarray:
    return ood.standardized(np.asarray(features, dtype=np.float64), {"mean": state["feature_mean"].double().numpy(),
                                                                    "scale": state["feature_scale"].double().numpy()})


def ood_scores(state, logits, features, method: str = OOD_SCORE) -> np.ndarray:
    """(N,) the out-of-distribution score `method` of rows with these logits and features."""
    if method == "energy":
        return ood.energy(logits)
    z = scaled_features(state, features)
    if method == "mahalanobis":
        return ood.mahalanobis(z, fitted_gaussians(state))
    return ood.knn_distance(z, state["case_features"].double().numpy())


def ood_threshold(state, false_alarm_rate: float, method: str = OOD_SCORE) -> float:
    return ood.flag_threshold(state["reference_scores"][method].numpy(), false_alarm_rate)


def similar_cases(state, features, k: int) -> list:
    """For each row of features (N, D), its k nearest stored training rows: indices into the stored cases and their
    Euclidean distances in the standardized representation, nearest first."""
    bank = state["case_features"].double().numpy()
    distances = np.sqrt(np.maximum(ood.squared_distances(scaled_features(state, features), bank), 0))
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :min(k, len(bank))]
    return [(order, distances[i, order]) for i, order in enumerate(nearest)]


def level_is_reachable(held_out_rows: int, level: float) -> bool:
    """Whether n held-out rows give a finite threshold at `level`: n >= level / (1 - level)."""
    return math.ceil((held_out_rows + 1) * level) <= held_out_rows


def row_scores(state, logits, features, level: float, false_alarm_rate: float):
    """(probabilities (N, K) after temperature scaling, prediction sets (N, K) bool, OOD scores (N,), flags (N,)) of
    rows with these logits and representation; without a state (a checkpoint written before it), the softmax of the
    logits and None for the rest."""
    logits = np.asarray(logits, dtype=np.float64)
    if state is None:
        return calibration.scaled_probabilities(logits, 1.0), None, None, None
    probabilities = calibration.scaled_probabilities(logits, state["temperature"])
    sets = conformal.prediction_sets(probabilities, set_threshold(state, level), SET_SCORE)
    scores = ood_scores(state, logits, features)
    return probabilities, sets, scores, scores > ood_threshold(state, false_alarm_rate)


def held_out_rows_needed(level: float) -> int:
    """The fewest held-out rows whose threshold at `level` is finite (about level / (1 - level), found exactly)."""
    n = max(0, math.floor(level / (1 - level)) - 1)
    while not level_is_reachable(n, level):
        n += 1
    return n
