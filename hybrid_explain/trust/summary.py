"""metrics.json's "trust" section from the per-row results (state.row_scores) and the checkpoint's trust state:
plain numbers and lists, no files."""
import math

import numpy as np

from hybrid_explain.trust import calibration, conformal, state

MAX_LISTED_FLAGS = 100  # flagged rows listed in metrics.json and the report (all of them are in predictions.csv)


def calibration_summary(fitted, probabilities, y_true) -> dict:
    """Temperature and where it comes from; with labels, ECE and reliability bins of these rows before and after."""
    summary = {"temperature": fitted["temperature"], "held_out_rows": fitted["held_out_rows"],
               "calibrated": fitted["held_out_rows"] > 0, "bins": calibration.ECE_BINS}
    if y_true is not None:
        before = calibration.unscaled_probabilities(probabilities, fitted["temperature"])
        summary.update(rows=int(len(y_true)),
                       ece_before=calibration.expected_calibration_error(before, y_true),
                       ece_after=calibration.expected_calibration_error(probabilities, y_true),
                       reliability_before=calibration.reliability_bins(before, y_true),
                       reliability_after=calibration.reliability_bins(probabilities, y_true))
    return summary


def conformal_summary(fitted, sets, y_true, level) -> dict:
    limit = state.set_threshold(fitted, level)
    summary = {"level": level, "score": state.SET_SCORE, "held_out_rows": fitted["held_out_rows"],
               "threshold": None if math.isinf(limit) else limit,
               "held_out_rows_needed": state.held_out_rows_needed(level),
               "mean_set_size": float(sets.sum(1).mean()), "empty_sets": float((sets.sum(1) == 0).mean()),
               "set_size_counts": np.bincount(sets.sum(1), minlength=sets.shape[1] + 1).tolist()}
    if y_true is not None:
        summary.update(conformal.coverage_and_size(sets, y_true), rows=int(len(y_true)))
    return summary


def ood_summary(fitted, scores, flags, rows, predicted, false_alarm_rate) -> dict:
    """The flag threshold, how many rows it flags, and the flagged rows, highest score first (at most
    MAX_LISTED_FLAGS)."""
    order = np.flatnonzero(flags)[np.argsort(-scores[flags], kind="stable")][:MAX_LISTED_FLAGS]
    return {"score": state.OOD_SCORE, "false_alarm_rate": false_alarm_rate,
            "threshold": state.ood_threshold(fitted, false_alarm_rate),
            "reference_rows": int(len(fitted["reference_scores"][state.OOD_SCORE])),
            "flagged": int(flags.sum()), "rows": int(len(flags)),
            "flagged_rows": [{"row": int(rows[i]), "score": float(scores[i]), "predicted": predicted[i]}
                             for i in order]}


def similar_summary(fitted, features, y_pred, class_names, k) -> list:
    """For each explained row: its k nearest stored training rows (training-file row, class, distance) and the share
    of them in the predicted class."""
    entries = []
    for (order, distances), predicted in zip(state.similar_cases(fitted, features, k), y_pred):
        labels = fitted["case_labels"].numpy()[order]
        entries.append({"neighbours": [{"training_row": int(fitted["case_rows"][j]), "label": class_names[label],
                                        "distance": float(d)} for j, label, d in zip(order, labels, distances)],
                        "share_predicted_class": float((labels == predicted).mean()),
                        "case_indices": order.tolist()})
    return entries
