"""HybridClassifier: the script's network and training engine behind scikit-learn's estimator contract, taking
input in aeon's conventions.

    from hybrid_explain.interop.estimator import HybridClassifier
    clf = HybridClassifier(epochs=50).fit(X_train, y_train)      # X (n_cases, n_channels, n_timepoints)
    clf.predict(X_test), clf.predict_proba(X_test), clf.score(X_test, y_test)
    clf.explain(X_test[:3], methods=("shap", "integrated_gradients"))
    clf.save("model.pth"); HybridClassifier.load("model.pth")      # the script's checkpoint format
    clf.baseline_summary(X_test, y_test)    # MiniRocket fitted on the same rows: its accuracy, agreement with the net

Input: a 3D array (n_cases, n_channels, n_timepoints); a 2D array (n_cases, n_timepoints), one channel; a list of
2D arrays (n_channels, n_timepoints_i) of different lengths (padded, each row's length kept, as data_loader keeps
the length of a CSV row that ends early); a pandas DataFrame laid out like the training CSV (with y=None its
label column holds the classes). The constructor's arguments are the script's constants that shape the model and
its training, lower case, with the same defaults (tests/test_estimator.py compares them); fit() trains with the
script's engine (training.train_model) and keeps the checkpoint the script would write. As the script, fit() also
fits the baseline (BASELINE, hybrid_explain/baseline.py) on the same rows, and with distill=True the network learns
its out-of-fold probabilities through the script's own code (distillation.baseline_teacher).
"""

import dataclasses
import time

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from api import class_values
from hybrid_explain.formats import padded, series_columns
from data_loader import (CustomDataset, _channel_layout, _is_series, fit_normalization, normalize,
                         stratified_split, table_from_frame)
from hybrid_explain.model import build_model, predict_logits
from hybrid_explain.series import model_at_lengths, own_lengths
from hybrid_explain.checkpoint import load_model, save_checkpoint, training_checkpoint
from hybrid_explain import baseline as baselines
from hybrid_explain.config import ConfigError, ModelConfig, TrainingConfig, distill_problem, setting_problem
from hybrid_explain.distillation import baseline_teacher
from hybrid_explain.training import model_hyperparameters, train_background, train_model
from hybrid_explain.trust import calibration
from hybrid_explain.trust import state as trust_state

BACKGROUND_ROWS = 100  # training rows kept as the SHAP background, as the script's NUM_SHAP_BACKGROUND_SAMPLES


class HybridClassifier(ClassifierMixin, BaseEstimator):
    """CNN -> BiLSTM -> multi-head attention time-series classifier (model.py), trained as train_explain.py trains.

    Every argument is the script's constant of the same name in upper case (python train_explain.py --help says
    what each means). Fitted attributes: classes_, n_features_in_ (channels x steps), n_channels_,
    n_timepoints_, model_ (the network, eval mode), checkpoint_ (what save() writes; with distill=True its
    "distillation" says how the network was taught, with the teacher's out-of-fold accuracy), history_ (one dict
    per epoch; empty after load()), baseline_ (aeon's MiniRocketClassifier fitted on the same rows, on class
    indices; None with baseline='' and after load(): the checkpoint holds the network alone) and
    baseline_seconds_; baseline_predict() and baseline_summary() score it beside the network."""

    def __init__(self, epochs=200, batch_size=8, learning_rate=3e-3, weight_decay=1e-2, warmup_epochs=5,
                 label_smoothing=0.1, mixup_alpha=0.4, val_fraction=0.0, early_stopping_patience=30,
                 cnn_channels=32, ensemble_size=1, conv_front_end="plain", normalization="per_series",
                 amplitude_features=True, length_feature=True, kernel_size=7, lstm_hidden_size=64,
                 lstm_layers=1, attention_heads=4, dropout=0.1, min_pooled_length=16, max_pooled_length=128,
                 missing_values="interpolate", label_column="label", seed=0, device="auto", baseline="minirocket",
                 distill=False, distill_temperature=2.0, distill_weight=0.5):
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.label_smoothing = label_smoothing
        self.mixup_alpha = mixup_alpha
        self.val_fraction = val_fraction
        self.early_stopping_patience = early_stopping_patience
        self.cnn_channels = cnn_channels
        self.ensemble_size = ensemble_size
        self.conv_front_end = conv_front_end
        self.normalization = normalization
        self.amplitude_features = amplitude_features
        self.length_feature = length_feature
        self.kernel_size = kernel_size
        self.lstm_hidden_size = lstm_hidden_size
        self.lstm_layers = lstm_layers
        self.attention_heads = attention_heads
        self.dropout = dropout
        self.min_pooled_length = min_pooled_length
        self.max_pooled_length = max_pooled_length
        self.missing_values = missing_values
        self.label_column = label_column
        self.seed = seed
        self.device = device
        self.baseline = baseline
        self.distill = distill
        self.distill_temperature = distill_temperature
        self.distill_weight = distill_weight

    # -------------------------------------------------------------------------
    # Settings
    def _settings(self) -> tuple[ModelConfig, TrainingConfig]:
        """The parameters as the script's model and training settings, checked by the same records (config.py)."""
        # numpy scalars (a grid from np.arange) as Python numbers: the checkpoint loads with weights_only=True
        params = {name.upper(): value.item() if isinstance(value, np.generic) else value
                  for name, value in self.get_params().items()}
        try:
            for name in ("DEVICE", "MISSING_VALUES", "BASELINE"):
                why = setting_problem(name.lower(), params[name])
                if why:
                    raise ConfigError(why, name.lower())
            problem = distill_problem(params["DISTILL"], params["BASELINE"])
            if problem:
                raise ConfigError(problem[1], problem[0])
            return ModelConfig.from_constants(params), TrainingConfig.from_constants(params)
        except ConfigError as error:  # scikit-learn's convention: a ValueError that names the parameter
            raise ValueError(f"{error.setting} {error.why}" if error.setting else str(error)) from None

    def _device(self) -> torch.device:
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but no CUDA device is visible; use device='auto' or 'cpu'")
        return torch.device("cuda" if self.device != "cpu" and torch.cuda.is_available() else "cpu")

    # -------------------------------------------------------------------------
    # Input
    def _frame_rows(self, frame, layout):
        """(values (N, C, L) float32, lengths, interpolated-cells mask or None) of a DataFrame in
        the CSV layout, read as data_loader reads the CSV."""
        features = frame.drop(columns=[self.label_column], errors="ignore")
        features.columns = [str(c) for c in features.columns]
        table = table_from_frame(features, {"class_names": [], **layout}, self.label_column,
                                 missing_values=self.missing_values)
        return table.X, table.lengths, table.filled

    def _rows(self, X, width=None):
        """(values (N, C, L) float32 with NaN after each row's end, lengths (N,) int64) of an array or a list of
        arrays; width: pad a list's rows to this many steps (the fitted length), else to the longest."""
        if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
            raise TypeError("sparse input is not supported: pass a dense (n_cases, n_channels, n_timepoints) array")
        shapes = {np.shape(row) for row in X} if isinstance(X, (list, tuple)) else set()
        shorter = width is not None and len(shapes) == 1 and 0 < len(min(shapes)) and min(shapes)[-1] < width
        if len(shapes) > 1 or shorter:  # a list of series of their own lengths
            values, lengths = padded(X, width, name="the list of series")
        else:
            values = np.asarray(X)
            if np.iscomplexobj(values):
                raise ValueError("Complex data not supported; pass real-valued series")
            values = values.astype(np.float64)
            if values.ndim == 1:
                raise ValueError("Expected 2D array, got 1D array instead. Reshape your data either using "
                                 "array.reshape(-1, 1) if your data has a single feature or array.reshape(1, -1) "
                                 "if it contains a single sample; series are (n_cases, n_timepoints) or "
                                 "(n_cases, n_channels, n_timepoints)")
            if values.ndim == 2:
                values = values[:, None, :]
            if values.ndim != 3:
                raise ValueError(f"X has {values.ndim} dimensions; give (n_cases, n_channels, n_timepoints), "
                                 "(n_cases, n_timepoints) or a list of (n_channels, n_timepoints_i) arrays")
            lengths = np.full(len(values), values.shape[2], dtype=np.int64)
        if not len(values) or not values.shape[1] or not values.shape[2]:
            shape = values.shape if values.shape[1] > 1 else (len(values), values.shape[2])  # as given, for 2D
            raise ValueError(f"Found array with {len(values)} sample(s) and {values.shape[1] * values.shape[2]} "
                             f"feature(s) (shape={shape}) while a minimum of 1 is required (samples, channels "
                             "and time points)")
        real = np.arange(values.shape[2])[None, None, :] < lengths[:, None, None]
        if not np.isfinite(values[np.broadcast_to(real, values.shape)]).all():
            raise ValueError("Input X contains NaN or infinity; fill the gaps in, or give series of different "
                             "lengths as a list of arrays of their own lengths")
        return values.astype(np.float32), lengths

    def _check_layout(self, values):
        expected = (self.n_channels_, self.n_timepoints_)
        if values.shape[1:] != expected:
            if values.shape[1] == expected[0] == 1:
                raise ValueError(f"X has {values.shape[2]} features, but {type(self).__name__} is expecting "
                                 f"{expected[1]} features as input (time points); give shorter series as a list")
            raise ValueError(f"X has {values.shape[1]} channels x {values.shape[2]} time points, but "
                             f"{type(self).__name__} was fitted on {expected[0]} x {expected[1]}")

    # -------------------------------------------------------------------------
    # Training
    def fit(self, X, y=None):
        """Train a new network on X (any of the module's input forms) and y (n_cases,) labels."""
        model_settings, training_settings = self._settings()
        if isinstance(X, pd.DataFrame):
            features = [str(c) for c in X.columns if c != self.label_column]
            channel_names, feature_columns = _channel_layout("the DataFrame", features)
            if y is None and self.label_column in X.columns:
                y = X[self.label_column].to_numpy()
            values, lengths, filled = self._frame_rows(
                X, {"channel_names": channel_names, "feature_columns": feature_columns})
        else:
            values, lengths = self._rows(X)
            filled = None
            channel_names, feature_columns = series_columns(values.shape[1], values.shape[2])
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None (or give a "
                             f"DataFrame with a {self.label_column!r} column)")
        labels = column_or_1d(y, warn=True)
        check_classification_targets(labels)
        if len(labels) != len(values):
            raise ValueError(f"X has {len(values)} samples but y has {len(labels)} labels; give one label per row")
        classes, y_index = np.unique(labels, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y has only one class, {classes[0]!r}; a classifier needs at least two classes")
        if len(values) < 2:
            raise ValueError("Found 1 sample; training (BatchNorm) needs at least 2 samples")
        class_names = [str(c) for c in classes]
        if self.baseline and baselines.aeon_problem():
            raise ImportError(baselines.aeon_problem())

        normalization = fit_normalization(values, filled)
        train_x = normalize(values, normalization, lengths)
        table = _Layout(values, lengths, class_names, channel_names, feature_columns, y_index)
        hyperparameters = model_hyperparameters(model_settings, table)
        device = self._device()
        fit_idx, val_idx = stratified_split(y_index, self.val_fraction, self.seed, class_names)
        x = torch.from_numpy(train_x)
        fit_data = CustomDataset(x[fit_idx], y_index[fit_idx], lengths[fit_idx]).to(device)
        val_data = CustomDataset(x[val_idx], y_index[val_idx], lengths[val_idx]).to(device)
        # the baseline on the same rows as the script's (all training rows, raw values), and its teacher, as the script
        started = time.perf_counter()
        fitted_baseline = baselines.fit_baseline(values, y_index, lengths, self.seed) if self.baseline else None
        seconds = time.perf_counter() - started
        teacher, taught = (baseline_teacher(fitted_baseline, values, y_index, lengths, fit_idx, training_settings,
                                            self.baseline, device) if self.distill else (None, None))
        # The script seeds torch once before building the model; forked here, so the caller's generator is untouched.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            model = build_model(hyperparameters).to(device)
            history, state, epoch, val_acc, val_loss = train_model(model, fit_data, val_data, training_settings, None,
                                                                   log=lambda message: None, teacher=teacher)
        model.load_state_dict(state)
        checkpoint = training_checkpoint(model, hyperparameters, table, normalization, (epoch, val_acc, val_loss),
                                         train_x, train_background(train_x, lengths, BACKGROUND_ROWS, self.seed),
                                         "int" if classes.dtype.kind in "iu" else "str", self.seed, val_idx,
                                         dataclasses.asdict(training_settings), taught)
        checkpoint["estimator"] = {"params": {name: value.item() if isinstance(value, np.generic) else value
                                              for name, value in self.get_params().items()},
                                   "classes": classes.tolist()}
        self._set_fitted(model, checkpoint, classes)
        self.history_ = history
        self.baseline_, self.baseline_seconds_ = fitted_baseline, seconds if self.baseline else None
        return self

    def _set_fitted(self, model, checkpoint, classes):
        self.model_ = model.to(self._device()).eval()
        self.checkpoint_ = checkpoint
        self.classes_ = classes
        self.n_channels_ = len(checkpoint["channel_names"])
        self.n_timepoints_ = checkpoint["hyperparameters"]["sequence_length"]
        self.n_features_in_ = self.n_channels_ * self.n_timepoints_

    # -------------------------------------------------------------------------
    # Prediction
    def _raw(self, X):
        """(rows (N, C, L) float32 as given, NaN after each row's end, lengths (N,)) in the fitted layout."""
        if isinstance(X, pd.DataFrame):
            values, lengths, _ = self._frame_rows(X, self.checkpoint_)
        else:
            values, lengths = self._rows(X, self.n_timepoints_ if isinstance(X, (list, tuple)) else None)
            self._check_layout(values)
        return values, lengths

    def _normalized(self, X):
        """(normalized rows (N, C, L) float32, zero after each row's end, lengths (N,)) as fed to the model."""
        values, lengths = self._raw(X)
        return normalize(values, self.checkpoint_["normalization"], lengths), lengths

    def predict_proba(self, X) -> np.ndarray:
        """(n_cases, n_classes) softmax probabilities, columns in classes_ order; temperature-scaled when the
        estimator was fitted with val_fraction > 0 (docs/trust.md)."""
        check_is_fitted(self)
        x, lengths = self._normalized(X)
        return calibration.scaled_probabilities(predict_logits(self.model_, x, lengths=lengths).cpu().numpy(),
                                                trust_state.temperature(self.checkpoint_))

    def predict(self, X) -> np.ndarray:
        """(n_cases,) the most likely class of each row, from classes_."""
        probabilities = self.predict_proba(X)  # first: it says when the estimator is not fitted
        return self.classes_[probabilities.argmax(1)]

    # -------------------------------------------------------------------------
    # The baseline beside the network (BASELINE; docs/measurements/baseline.md)
    def _baseline_indices(self, X) -> np.ndarray:
        check_is_fitted(self)
        if self.baseline_ is None:
            raise ValueError("no baseline was fitted: baseline='' or an estimator loaded from a checkpoint (which "
                             "holds the network alone); fit with baseline='minirocket'")
        values, lengths = self._raw(X)
        return baselines.baseline_predictions(self.baseline_, values, lengths)

    def baseline_predict(self, X) -> np.ndarray:
        """(n_cases,) the class the baseline (fitted on the training rows in fit()) gives each row, from classes_."""
        return self.classes_[self._baseline_indices(X)]

    def _class_indices(self, labels: list):
        """(N,) int64 position in classes_ of each of labels, or None when one of them is not in classes_."""
        index = {label: k for k, label in enumerate(self.classes_.tolist())}
        if any(label not in index for label in labels):
            return None
        return np.array([index[label] for label in labels], dtype=np.int64)

    def baseline_summary(self, X, y=None) -> dict:
        """The baseline beside the network on the rows X, as the script's metrics.json["baseline"]: with labels y,
        the baseline's accuracy ("test_accuracy") and macro F1, and the shares of the rows both get right, only
        the network, only the baseline, neither ("agreement"); always, the share of rows where the two predict the
        same class, and the baseline's fit seconds."""
        base = self._baseline_indices(X)
        network = self.predict_proba(X).argmax(1)
        if y is None:
            y_index = None
        else:
            labels = column_or_1d(y, warn=True)
            y_index = self._class_indices(labels.tolist())
            if len(labels) != len(base) or y_index is None:
                raise ValueError(f"y needs one label per row of X, each one of classes_ {self.classes_.tolist()}")
        return baselines.baseline_summary(y_index, network, base, len(self.classes_), self.baseline_seconds_)

    # -------------------------------------------------------------------------
    # Explanation
    def explain(self, X, methods=("shap", "integrated_gradients"), target=None, background_rows=BACKGROUND_ROWS,
                shap_method="permutation", shap_segments_per_channel=10, shap_permutations=0, shap_subwindows=5,
                ig_steps=64, occlusion_window=10) -> dict:
        """Attributions of the rows of X, with the script's explainers and settings (the keyword arguments are
        its constants of the same names). Returns a dict of arrays:
        "inputs" (N, C, L): the rows normalized, as fed to the model (every map is over these, 0 after a row's
        end); "lengths" (N,); "logits" (N, K); "target" (N,): the class each map explains (target: one label,
        a label per row, or None: the predicted class);
        "shap" (N, C, L, K): interventional Shapley values of every class's logit (windows of
        shap_segments_per_channel per channel are the players, the fitted SHAP background the reference), with
        "shap_base_values" (N, K): row i's values add up to logits[i] - shap_base_values[i];
        any other name of attributions.METHODS ("integrated_gradients", "saliency", "occlusion", "gradcam",
        "lrp_epsilon", ...): its map (N, C, L) of the target class."""
        from hybrid_explain.explainers import attributions
        from hybrid_explain.explainers import shapley
        from hybrid_explain.pipeline import stages

        check_is_fitted(self)
        methods = [methods] if isinstance(methods, str) else list(methods)
        unknown = [name for name in methods if name not in attributions.METHODS]
        if unknown:
            raise ValueError(f"unknown methods {unknown}; choose among {', '.join(attributions.METHODS)}")
        x, lengths = self._normalized(X)
        model, device = self.model_, next(self.model_.parameters()).device
        x = torch.from_numpy(x).to(device)
        variable_rows = bool((lengths < x.shape[2]).any())
        logits = predict_logits(model, x, lengths=lengths).cpu().numpy()
        if target is None:
            target_index = logits.argmax(1)
        else:
            target_index = self._class_indices(np.broadcast_to(np.asarray(target, dtype=object), (len(x),)).tolist())
            if target_index is None:
                raise ValueError(f"target names a class that is not in classes_ {self.classes_.tolist()}")
        result = {"inputs": x.cpu().numpy(), "lengths": lengths, "logits": logits,
                  "target": self.classes_[target_index]}
        columns = self.checkpoint_["feature_columns"]
        feature_names = None if _is_series(columns) else columns  # a table's features: each its own SHAP player
        with torch.backends.cudnn.flags(enabled=False):  # cuDNN's LSTM has no backward pass in eval mode
            if "shap" in methods:
                if "background" not in self.checkpoint_:
                    raise ValueError("this checkpoint carries no SHAP background (written before version 0.9.0); "
                                     "train again, or ask for methods without 'shap'")
                background = self.checkpoint_["background"][:background_rows].to(device)
                background_lengths = own_lengths(self.checkpoint_.get("background_lengths"), background)
                background_lengths = np.asarray(background_lengths)[:len(background)]
                variable = variable_rows or bool((background_lengths < x.shape[2]).any())
                if variable and shap_method == "deep":
                    raise ValueError("shap_method='deep' cannot be told where a row ends, and these rows differ in "
                                     "length; use 'permutation' or 'exact'")
                if variable:
                    groups = stages.shap_players_per_row(x.shape[1:], lengths, feature_names, shap_segments_per_channel)
                    base = shapley.expected_outputs(model_at_lengths(model), background, background_lengths, lengths)
                else:
                    groups = stages.shap_players(x.shape[1:], feature_names, shap_segments_per_channel)
                    base = np.broadcast_to(predict_logits(model, background).cpu().numpy().mean(0), logits.shape)
                values, _, _ = stages.shap_values_for(shap_method, model, x, background, groups,
                                                      shap_permutations, shap_subwindows, self.seed,
                                                      lengths if variable else None,
                                                      background_lengths if variable else None)
                result.update(shap=values, shap_base_values=np.array(base))
            others = [name for name in methods if name != "shap"]
            maps, _ = attributions.compute_maps(attributions.method_functions(
                {"ig_steps": ig_steps, "occlusion_window": occlusion_window, "seed": self.seed}, others), model, x,
                                                torch.from_numpy(target_index).to(device),
                                                torch.from_numpy(lengths).to(device) if variable_rows else None)
        result.update(maps)
        return result

    # -------------------------------------------------------------------------
    # Persistence: the script's checkpoint; pickle keeps the checkpoint and rebuilds the network from it
    def save(self, path):
        """Write the checkpoint (the script's format: model.load_model and --train=False read it)."""
        check_is_fitted(self)
        save_checkpoint(self.checkpoint_, path)

    @classmethod
    def load(cls, path, device="auto"):
        """A fitted estimator from a checkpoint written by save() or by the script."""
        model, checkpoint = load_model(path)
        saved = checkpoint.get("estimator") or {}
        # the script's checkpoint: the model's arguments and (format 2) the training settings it was trained with
        settings = {**checkpoint.get("training", {}), **checkpoint["hyperparameters"]}
        params = saved.get("params") or {name: settings[name] for name in cls._get_param_names() if name in settings}
        estimator = cls(**{**params, "device": device})
        classes = saved["classes"] if saved else class_values(checkpoint)  # the script's: ints where they were
        estimator._set_fitted(model, checkpoint, np.asarray(classes))
        estimator.history_ = []
        estimator.baseline_, estimator.baseline_seconds_ = None, None  # the checkpoint holds the network alone
        return estimator

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("model_", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "checkpoint_" in state:
            model = build_model(self.checkpoint_["hyperparameters"])
            model.load_state_dict(self.checkpoint_["model_state_dict"])
            self.model_ = model.to(self._device()).eval()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags


class _Layout:
    """What model_hyperparameters and training_checkpoint read of a training table: its values (N, C, L), lengths,
    class names and, for the checkpoint, its channel names, columns and labels (class indices)."""

    def __init__(self, X, lengths, class_names, channel_names, feature_columns, y):
        self.X, self.lengths, self.class_names = X, lengths, class_names
        self.channel_names, self.feature_columns, self.y = channel_names, feature_columns, y
