"""Score new data with a trained model from Python, as `--train=False` does from the command line:

    from api import export_onnx, predict         # also: from train_explain import predict
    result = predict("outputs/saved_model_hybrid_explained.pth", "new.csv")   # or a DataFrame, or an array
    result.classes[:3], result.probabilities[:3]
    export_onnx("outputs/saved_model_hybrid_explained.pth")   # -> outputs/model.onnx (onnx_export.py)

The data are read with the checkpoint's own layout (feature columns in any order, the label column ignored)
and normalization, never refitted on the new data.
"""
import re
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from data_loader import DataError, normalize, read_table, table_from_frame
from hybrid_explain.model import predict_logits
from hybrid_explain.checkpoint import load_model
from hybrid_explain.trust import representation
from hybrid_explain.trust import state as trust_state
from hybrid_explain.interop.onnx_export import export_onnx  # noqa: F401  (re-exported: the model as ONNX for users, needs the export extra)


@dataclass
class Prediction:
    classes: list  # (N,) predicted classes, of the training file's label type (int where every label was an integer)
    probabilities: np.ndarray  # (N, K) softmax probabilities (temperature-scaled when the checkpoint has held-out rows: docs/trust.md), columns in class_names order
    class_names: list
    prediction_sets: Optional[list] = None  # (N,) each row's conformal prediction set, a list of classes; None: the checkpoint has no trust state
    out_of_distribution: Optional[np.ndarray] = None  # (N,) bool: the row is unlike the training rows (docs/trust.md)


def integer_labels(class_names) -> bool:
    """Whether every class name is an integer written plainly ("3", "-1"; not "03" or "3.0"), so that the training
    file's labels were integers: the checkpoint records it (its "label_type") and predict() gives them back as int."""
    return all(re.fullmatch(r"-?[1-9][0-9]*|0", name) for name in class_names)


def class_values(checkpoint) -> list:
    """The checkpoint's classes as the training file had them: ints when its "label_type" is "int", else the names
    (strings; also for a checkpoint of an earlier version, which records no label type)."""
    names = list(checkpoint["class_names"])
    return [int(name) for name in names] if checkpoint.get("label_type") == "int" else names


def predict(model, data, label_column="label", device="cpu", batch_size=512, lengths=None, conformal_level=0.9,
            ood_false_alarm=0.01) -> Prediction:
    """model: a checkpoint path or load_model()'s (model, checkpoint) pair. data: a CSV path, a DataFrame laid out
    like the training file, or raw (not normalized) values (N, C, L) of any float dtype. A CSV's or DataFrame's
    rows may end early (empty cells / NaN at the end); an array's row lengths are given as lengths (N,) (None: all
    full length), and its values after them are ignored. conformal_level and ood_false_alarm: as the script's
    CONFORMAL_LEVEL and OOD_FALSE_ALARM."""
    net, checkpoint = load_model(model, device) if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__") \
        else model
    if isinstance(data, pd.DataFrame):
        table = table_from_frame(data, checkpoint, label_column)
        X, lengths = table.X, table.lengths
    elif isinstance(data, (str, bytes)) or hasattr(data, "__fspath__"):
        table = read_table(data, checkpoint, label_column)
        X, lengths = table.X, table.lengths
    else:
        X = np.asarray(data, dtype=np.float64)
        expected = (len(checkpoint["channel_names"]), checkpoint["hyperparameters"]["sequence_length"])
        if X.ndim != 3 or X.shape[1:] != expected:
            raise DataError(f"the array has shape {X.shape}; this model reads (N, {expected[0]}, {expected[1]}) "
                            "(rows, channels, steps)")
        if lengths is not None:
            lengths = np.asarray(lengths, dtype=np.int64)
            if lengths.shape != (len(X),) or not ((lengths >= 1) & (lengths <= X.shape[2])).all():
                raise DataError(f"lengths must hold one length in [1, {X.shape[2]}] per row of the array")
    logits, features = representation.logits_and_features(net, normalize(X, checkpoint["normalization"], lengths),
                                                          lengths, batch_size)
    probabilities, sets, _, flags = trust_state.row_scores(checkpoint.get("trust"), logits.cpu().numpy(),
                                                           features.cpu().numpy(), conformal_level, ood_false_alarm)
    classes = class_values(checkpoint)
    return Prediction([classes[k] for k in probabilities.argmax(1)], probabilities, classes,
                      None if sets is None else [[c for c, inside in zip(classes, row) if inside] for row in sets],
                      flags)
