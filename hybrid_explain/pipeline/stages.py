"""The pipeline's stages after training, in the order `train_explain.run()` calls them. Each stage computes
with the explanation modules, draws with plots.py, writes its files through `path(name)` (a file in the
run's staging folder) and returns its section of metrics.json:

    predictions_outputs(scored, path)                                    -> predictions.csv's summary
    evaluation_outputs(scored, path)                                     -> metrics of the test set (labels only)
    shap_outputs(model, samples, background, config, path)              -> (section, SHAP values)
    gradcam_outputs(model, samples, path)                                -> section
    attention_outputs(model, samples, path)                              -> section
    global_outputs(model, scored, background, config, path)              -> section (many rows, coarse players)
    attribution_outputs(model, samples, scored, shap, chosen, config, path) -> section
    counterfactual_outputs(model, samples, shap_values, guides, config, path) -> (entries, summary)

`scored` is every row of the test (or new) file with the model's predictions (`score`), `samples` the few
rows explained (`Samples`, chosen by `rows_to_explain`).
Gradient stages run through the LSTM: on CUDA, call them inside torch.backends.cudnn.flags(enabled=False).
"""
import math
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from hybrid_explain.explainers import attributions
from hybrid_explain.metrics import checks, prediction_difference
from hybrid_explain.explainers import counterfactuals
import data_loader
from hybrid_explain.explainers import global_importance
from hybrid_explain.figures import plots
from hybrid_explain.explainers import regions
from hybrid_explain.explainers import shapley
from hybrid_explain.model import ensemble_size, full_lengths, model_at_lengths, predict_logits, row_lengths
from hybrid_explain.pipeline.progress import Silent


@dataclass
class Samples:
    """Rows fed to the model, with what it said about them: the one record every stage and figure takes."""
    x: torch.Tensor  # (N, C, L) normalized, as fed to the model, on its device
    rows: np.ndarray  # (N,) row numbers in the test file
    y_true: Optional[np.ndarray]  # (N,) class indices; None for a file without labels
    y_pred: np.ndarray  # (N,) predicted class indices
    probabilities: np.ndarray  # (N, K) softmax of the logits
    class_names: list
    channel_names: list
    feature_names: Optional[list] = None  # a table's column names (features are not time steps); None for series
    lengths: Optional[np.ndarray] = None  # (N,) each row's series length, x[i, :, :lengths[i]]; None: all full length

    def __len__(self):
        return len(self.rows)

    def __getstate__(self):
        """Pickled (to a drawing process, drawing.py) with its inputs on the CPU: a forked process must not use CUDA."""
        return {**self.__dict__, "x": self.x.detach().cpu() if torch.is_tensor(self.x) else self.x}

    def subset(self, index) -> "Samples":
        index = np.asarray(index, dtype=np.int64)
        return Samples(self.x[torch.as_tensor(index, device=self.x.device)], self.rows[index],
                       None if self.y_true is None else self.y_true[index], self.y_pred[index], self.probabilities[index], self.class_names, self.channel_names,
                       self.feature_names, None if self.lengths is None else self.lengths[index])

    @property
    def inputs(self) -> np.ndarray:
        return self.x.detach().cpu().numpy()

    @property
    def own_lengths(self) -> np.ndarray:
        """(N,) each row's length, the full width where lengths is None."""
        return full_lengths(self.lengths, self.x)

    @property
    def length_tensor(self) -> Optional[torch.Tensor]:
        """lengths as the model takes them, on x's device; None when every row is full length (the fast path)."""
        return row_lengths(self.lengths, self.x.shape[2], self.x.device)

    def least_confident(self, count: int) -> np.ndarray:
        """Indices of the `count` rows whose predicted class has the lowest probability, least confident first."""
        return np.argsort(self.probabilities.max(axis=1), kind="stable")[:count]

    @property
    def labelled(self) -> bool:
        return self.y_true is not None

    def describe(self, i: int) -> dict:
        """Row i for metrics.json: its file row, predicted class and confidence, and its true class when known."""
        return {"row": int(self.rows[i]), **({"true": self.class_names[self.y_true[i]]} if self.labelled else {}),
                "predicted": self.class_names[self.y_pred[i]], "confidence": float(self.probabilities[i].max())}


CHUNK_ROWS = 10_000  # rows of a file scored at once when it is read in parts (--train=False)


class FileRows:
    """The normalized rows of a CSV read in parts of CHUNK_ROWS, read again when some rows are needed: stands in for
    Samples.x of a file that need not fit in memory (Samples only indexes it, `rows[index]`, and reads .device)."""

    def __init__(self, path, layout, label_column, normalization, device, reference=None, missing_values="interpolate"):
        self.path, self.layout, self.label_column, self.reference = path, layout, label_column, reference
        self.normalization, self.device, self.missing_values = normalization, device, missing_values

    def parts(self):
        return data_loader.iter_table(self.path, self.layout, self.label_column, CHUNK_ROWS, self.reference,
                                      self.missing_values)

    def __getitem__(self, index) -> torch.Tensor:
        wanted = np.asarray(index.cpu() if torch.is_tensor(index) else index, dtype=np.int64)
        found = {}
        for part in self.parts():
            first, count = part.row_indices[0], len(part.row_indices)
            for row in wanted[(wanted >= first) & (wanted < first + count)]:
                found[int(row)] = part.X[row - first], part.lengths[row - first]
        X = np.stack([found[int(row)][0] for row in wanted]) if len(wanted) else \
            np.zeros((0, len(self.layout["channel_names"]), len(self.layout["feature_columns"]) //
                      len(self.layout["channel_names"])), np.float32)
        lengths = np.array([found[int(row)][1] for row in wanted], dtype=np.int64)
        return torch.from_numpy(data_loader.normalize(X, self.normalization, lengths)).to(self.device)


def score(model, parts, x, normalization, counts=None, progress=Silent) -> Samples:
    """Every row of a file with the model's predictions. parts: the file's tables (data_loader.SeriesTable) in file
    order, scored one at a time; x: its rows as the model is fed them (a tensor, or FileRows); counts: a
    data_loader.SeriesCounts that counts the parts' lengths and filled cells as they are read (None: not counted);
    progress as in shap_outputs, told the rows of each part read and scored."""
    probabilities, labels, rows, lengths = [], [], [], []
    with progress("reading and scoring", None, "row") as step:
        for part in parts:
            if counts is not None:
                counts.add(part)
            logits = predict_logits(model, data_loader.normalize(part.X, normalization, part.lengths),
                                    lengths=part.lengths)
            probabilities.append(torch.softmax(logits.float(), 1).cpu().numpy())
            labels.append(part.y)
            rows.append(part.row_indices)
            lengths.append(part.lengths)
            step(len(part.X))
    probabilities = np.concatenate(probabilities)
    y = None if labels[0] is None else np.concatenate(labels)
    lengths = np.concatenate(lengths)
    return Samples(x, np.concatenate(rows), y, probabilities.argmax(1), probabilities, list(part.class_names),
                   list(part.channel_names), part.feature_names,
                   lengths if (lengths < part.X.shape[2]).any() else None)


def round_robin(y: np.ndarray, count: int) -> np.ndarray:
    """`count` rows taken round-robin over the classes y in file order, so every class is shown."""
    by_class = [list(np.flatnonzero(y == k)) for k in np.unique(y)]
    chosen = []
    while len(chosen) < min(count, len(y)):
        for rows in by_class:
            if rows and len(chosen) < count:
                chosen.append(rows.pop(0))
    return np.array(sorted(chosen), dtype=np.int64)


def rows_to_explain(scored: Samples, rule, count: int) -> np.ndarray:
    """Indices of the rows to explain: explicit indices (a list), the `count` least confident rows
    ("least_confident"), or round-robin over the true classes, or the predicted ones without labels ("")."""
    if isinstance(rule, list):
        return np.array(rule, dtype=np.int64)
    if rule == "least_confident":
        return np.sort(scored.least_confident(count))
    return round_robin(scored.y_true if scored.labelled else scored.y_pred, count)


# -----------------------------------------------------------------------------
# Predictions
def predictions_outputs(scored: Samples, path, least_confident: int = 10) -> dict:
    """predictions.csv: one row per row of the file, in file order (row, predicted, one probability per class,
    and with labels true and correct); returns the predicted class distribution and the least confident rows."""
    import pandas as pd

    # one frame built at once: a column inserted per class fragments it (pandas warns from a few hundred classes)
    frame = pd.DataFrame({"row": scored.rows, "predicted": np.array(scored.class_names)[scored.y_pred],
                          **{name: scored.probabilities[:, k] for k, name in enumerate(scored.class_names)}})
    if scored.labelled:
        frame["true"] = np.array(scored.class_names)[scored.y_true]
        frame["correct"] = scored.y_true == scored.y_pred
    frame.to_csv(path("predictions.csv"), index=False)
    counts = np.bincount(scored.y_pred, minlength=len(scored.class_names))
    return {"rows": len(scored), "labelled": scored.labelled,
            "predicted_class_counts": dict(zip(scored.class_names, counts.tolist())),
            **({"true_class_counts": dict(zip(scored.class_names, np.bincount(
                scored.y_true, minlength=len(scored.class_names)).tolist()))} if scored.labelled else {}),
            "least_confident": [scored.describe(i) for i in scored.least_confident(least_confident)]}


# -----------------------------------------------------------------------------
# Evaluation
def evaluation_outputs(scored: Samples, path) -> dict:
    """Confusion matrix figure and classification_report.txt for the test set; returns accuracy and macro F1."""
    from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

    labels = list(range(len(scored.class_names)))
    report = classification_report(scored.y_true, scored.y_pred, labels=labels, target_names=scored.class_names,
                                   zero_division=0, digits=3)
    with open(path("classification_report.txt"), "w", encoding="utf-8") as f:
        f.write(report)
    plots.confusion_matrix_figure(confusion_matrix(scored.y_true, scored.y_pred, labels=labels), scored.class_names,
                                  path("confusion_matrix.png"))
    return {"test_accuracy": float(accuracy_score(scored.y_true, scored.y_pred)),
            "test_macro_f1": float(f1_score(scored.y_true, scored.y_pred, labels=labels, average="macro",
                                            zero_division=0))}


# -----------------------------------------------------------------------------
# SHAP
def windows_per_channel(length: int, feature_names, requested: int) -> int:
    """Time windows per channel for SHAP players and region shares: each feature of a table is its own."""
    return length if feature_names is not None else requested


def shap_players(samples_shape, feature_names, segments_per_channel: int) -> np.ndarray:
    """(C, L) player ids: the windows of each channel (windows_per_channel)."""
    channels, length = samples_shape
    return shapley.player_groups(channels, length, windows_per_channel(length, feature_names, segments_per_channel))


def shap_players_per_row(samples_shape, lengths, feature_names, segments_per_channel: int) -> np.ndarray:
    """(N, C, L) player ids of rows of their own lengths: each row's own steps cut into windows as shap_players
    cuts a full row; -1 after its end (no player)."""
    channels, width = samples_shape
    return shapley.groups_per_row(lambda n: shap_players((channels, n), feature_names, segments_per_channel),
                                  channels, width, lengths)


def check_exact_shap_is_feasible(config, channels, length, feature_names=None):
    players = int(shap_players((channels, length), feature_names, config["SHAP_SEGMENTS_PER_CHANNEL"]).max()) + 1
    if config["SHAP_METHOD"] == "exact" and players > shapley.EXACT_MAX_PLAYERS:
        raise shapley.ShapSettingError(f"SHAP_METHOD='exact' enumerates 2^players coalitions and this data has "
                                       f"{players} players "
                                       f"({channels} channels x {players // channels} windows), more than "
                                       f"{shapley.EXACT_MAX_PLAYERS}; use --shap_method=permutation or fewer "
                                       "--shap_segments_per_channel")


def shap_values_for(method, model, x, background, groups, config, lengths=None, background_lengths=None,
                    step=lambda count=1: None):
    """(values (N, C, L, K), seconds, estimated relative error (N,) or None for DeepExplainer) for one SHAP method;
    with lengths, rows of their own lengths (groups per row); step(count) after each sample's values."""
    start = time.perf_counter()
    if method == "deep":
        values, error = shapley.deep_shap(model, x, background), None
        step(len(x))
    else:
        # A sample at a time, to say how far it is: a sample's values do not depend on the others explained.
        values, error = [], []
        for i in range(len(x)):
            own = {} if lengths is None else {"lengths": lengths[i:i + 1], "background_lengths": background_lengths}
            row_values, row_error = shapley.interventional_shap(
                model if lengths is None else model_at_lengths(model), x[i:i + 1], background,
                groups if lengths is None else groups[i:i + 1], method=method,
                num_permutations=config["SHAP_PERMUTATIONS"] or None, seed=config["SEED"], return_error=True,
                split=config["SHAP_SUBWINDOWS"] if method == "permutation" else 1, **own)
            values.append(row_values)
            error.append(row_error)
            step()
        values, error = np.concatenate(values), np.concatenate(error)
    return values, time.perf_counter() - start, error


def shap_outputs(model, samples: Samples, background: torch.Tensor, config, path,
                 background_lengths: Optional[np.ndarray] = None, progress=Silent) -> tuple[dict, np.ndarray]:
    """Run the chosen SHAP method (or all of them), write shap_values.npz and the SHAP figures;
    returns (the metrics.json section, values (N, C, L, K) of the chosen method). background_lengths (B,): the
    background rows' lengths (None: all full length); rows of different lengths are explained as shapley.py says.
    progress(description, total, unit): a progress.Progress-like context that is told each sample done."""
    x = samples.x
    groups = shap_players(x.shape[1:], samples.feature_names, config["SHAP_SEGMENTS_PER_CHANNEL"])
    available = len(background)
    automatic = not config["SHAP_PERMUTATIONS"]
    if config["SHAP_METHOD"] in ("permutation", "all") and config["SHAP_SUBWINDOWS"] > 1 and automatic:
        # the automatic budget's walks over fewer rows, so that coarse to fine can split (shapley.budget_background);
        # permutations given by the user are spent over every row, as asked
        rows, permutations = shapley.budget_background(available, int(groups.max()) + 1, x.shape[2], None,
                                                       config["SHAP_MIN_PAIRS_PER_ROW"])
        if len(rows) < available:
            background = background[torch.as_tensor(rows, device=background.device)]
            background_lengths = None if background_lengths is None else np.asarray(background_lengths)[rows]
            config = {**config, "SHAP_PERMUTATIONS": permutations}
    outputs_logits = predict_logits(model, x, lengths=samples.lengths).cpu().numpy()
    expected_value = predict_logits(model, background, lengths=background_lengths).cpu().numpy().mean(0)
    windows = int(groups.max()) // x.shape[1] + 1
    variable = samples.lengths is not None or row_lengths(background_lengths, x.shape[2]) is not None
    lengths = base_values = None
    if variable:
        lengths = samples.own_lengths
        background_lengths = full_lengths(background_lengths, background)
        groups = shap_players_per_row(x.shape[1:], lengths, samples.feature_names, config["SHAP_SEGMENTS_PER_CHANNEL"])
        base_values = shapley.expected_outputs(model_at_lengths(model), background, background_lengths, lengths)
    methods = [config["SHAP_METHOD"]]
    if config["SHAP_METHOD"] == "all":
        # Exact enumeration costs 2^players model calls per background row: only for few players.
        methods = ["permutation", "exact", "deep"] if groups.max() + 1 <= 12 else ["permutation", "deep"]
        if variable:  # DeepExplainer cannot be told where a row ends
            methods.remove("deep")
    elif config["SHAP_METHOD"] == "deep" and variable:
        raise shapley.ShapSettingError("SHAP_METHOD='deep' (shap.DeepExplainer) cannot be told where a row ends, and "
                                       "these rows differ in length; use --shap_method=permutation or exact")
    comparison = []
    with progress("SHAP", len(methods) * len(x), "sample") as step:
        for method in methods:
            values, seconds, sampling_error = shap_values_for(method, model, x, background, groups, config, lengths,
                                                              background_lengths, step)
            errors = shapley.additivity_errors(values, outputs_logits,
                                               expected_value if base_values is None else base_values)
            comparison.append({"method": method, "seconds": seconds,
                               "additivity_rel_error_median": float(np.median(errors)),
                               "additivity_rel_error_max": float(errors.max()), "values": values,
                               **({} if sampling_error is None else
                                  {"estimated_rel_error": [None if np.isnan(e) else float(e) for e in sampling_error]})})
    chosen = comparison[0]
    values = chosen["values"]
    lengths_fields = {} if not variable else {"lengths": lengths, "background_lengths": background_lengths,
                                              "expected_values": base_values}
    np.savez(path("shap_values.npz"), values=values, inputs=samples.inputs, background=background.cpu().numpy(),
             expected_value=expected_value, outputs=outputs_logits, indices=samples.rows,
             class_names=np.array(samples.class_names), **lengths_fields)
    plots.shap_figures(values, samples, windows, path)
    summary = {"method": chosen["method"], "explained_output": "logits", "num_background": len(background),
               "background_rows_available": available, "min_pairs_per_row": config["SHAP_MIN_PAIRS_PER_ROW"],
               "num_explained": len(x), "segments_per_channel": windows,
               "players": int(groups.max()) + 1, "seconds": chosen["seconds"],
               **({"subwindows": config["SHAP_SUBWINDOWS"]} if chosen["method"] == "permutation" else {}),
               **({"background_rule": "each explained row's own steps are the players; a background row is cut to "
                                      "its length or held at its last observed value up to it; values add up to "
                                      "f(x) - expected_values[i] (shap_values.npz)"} if variable else {}),
               "additivity_rel_error_median": chosen["additivity_rel_error_median"],
               "additivity_rel_error_max": chosen["additivity_rel_error_max"]}
    if "estimated_rel_error" in chosen:  # per explained sample: standard error of the values / their norm
        summary["estimated_rel_error"] = chosen["estimated_rel_error"]
    if chosen["method"] == "permutation":
        # Rounded up to a multiple of the background size so that every background row is used equally.
        wanted = config["SHAP_PERMUTATIONS"] or shapley.default_permutations(summary["players"], x.shape[2])
        summary["permutations"] = math.ceil(wanted / len(background)) * len(background)
    if len(comparison) > 1:
        summary["comparison"] = [{k: v for k, v in row.items() if k != "values"} for row in comparison]
    return summary, values


# -----------------------------------------------------------------------------
# Global importance
def global_outputs(model, scored: Samples, background: torch.Tensor, config, path,
                   background_lengths: Optional[np.ndarray] = None, progress=Silent) -> dict:
    """Group Shapley values of whole channels, whole time windows and channel x window cells for up to
    GLOBAL_EXPLAIN_ROWS rows of the file (seeded, stratified over the predicted classes): global_importance.npz,
    the global figures, and the metrics.json section (importance with bootstrap intervals, overall and per
    predicted class). Rows of different lengths: each row's windows are the tenths (SHAP_SEGMENTS_PER_CHANNEL)
    of its own length, labelled in per cent of the length. progress: told each row of each grouping."""
    start = time.perf_counter()
    index = global_importance.choose_rows(scored.y_pred, config["GLOBAL_EXPLAIN_ROWS"], config["SEED"])
    rows = scored.subset(index)
    length = rows.x.shape[2]
    windows = windows_per_channel(length, rows.feature_names, config["SHAP_SEGMENTS_PER_CHANNEL"])
    spans = regions.window_spans(length, windows)
    labels = [regions.span_label(a, b, rows.feature_names) for a, b in spans]
    if rows.lengths is not None:  # each row's windows are tenths of its own length, as the SHAP stage's players
        labels = [f"{100 * a / length:.0f}-{100 * b / length:.0f} %" for a, b in spans]
    with progress(f"global importance ({', '.join(global_importance.GROUPINGS)})",
                  len(rows) * len(global_importance.GROUPINGS), "row") as step:
        arrays, section = global_importance.global_importance(model, rows.x, background, rows.y_pred,
                                                              rows.channel_names, rows.class_names, windows,
                                                              config["SEED"], labels, rows.lengths,
                                                              background_lengths, step)
    if rows.lengths is None:  # every row full length: windows and class means at their steps
        positions = np.arange(length)
        class_means = np.stack([rows.inputs[rows.y_pred == k].mean(axis=0) if (rows.y_pred == k).any()
                                else np.zeros(rows.inputs.shape[1:]) for k in range(len(rows.class_names))])
        edges, axis_label, relative = regions.window_edges(length, windows) - 0.5, plots.step_axis_label(
            rows.feature_names), {}
    else:  # each row's windows are shares of its own length: drawn on one relative axis
        positions, class_means = global_importance.relative_class_means(rows.inputs, rows.lengths, rows.y_pred,
                                                                        len(rows.class_names))
        edges = global_importance.relative_window_edges(rows.lengths, windows)
        axis_label, relative = "share of each row's own length (%)", {"relative_window_edges": edges}
    np.savez(path("global_importance.npz"), **arrays, rows=rows.rows, predicted=rows.y_pred,
             **({"true": rows.y_true} if rows.labelled else {}), class_mean_inputs=class_means,
             class_mean_positions=positions, window_edges=regions.window_edges(length, windows), **relative,
             channel_names=np.array(rows.channel_names), class_names=np.array(rows.class_names),
             window_labels=np.array(labels))
    plots.global_figures(section, class_means, positions, edges, axis_label, arrays["class_mean_cell_evidence"],
                         rows.channel_names, rows.class_names, labels, rows.feature_names, path)
    section["seconds"]["total"] = time.perf_counter() - start
    return section


# -----------------------------------------------------------------------------
# Grad-CAM and attention
def gradcam_outputs(model, samples: Samples, path, better_than_random=None) -> dict:
    """One Grad-CAM figure per explained sample (target: its predicted class), all on one colour scale.
    better_than_random: the attribution suite's deletion check of Grad-CAM (None: the suite did not run it)."""
    with attributions.GradCAM(model, model.gradcam_layer) as cam:
        maps = cam.attribute(samples.x, lengths=samples.length_tensor).cpu().numpy()
    members = ensemble_size(model)
    plots.gradcam_figures(maps, samples, path, members, better_than_random)
    layer = "last conv block (conv2)" + (f" of each of the {members} networks, the mean of their maps" if members > 1
                                         else "")
    return {"layer": layer, "target": "predicted class", "num_explained": len(samples),
            "colour_scale": "one for all explained samples: 0 to the largest value of any",
            "better_than_random": better_than_random}


def attention_outputs(model, samples: Samples, path) -> dict:
    """Per-head attention heatmaps of every explained sample and the heads' statistics."""
    lengths = samples.length_tensor
    with attributions.AttentionRecorder(model.attention) as recorder:
        weights = recorder.record(model, samples.x, lengths=lengths).cpu()
    steps = None if lengths is None else model.pooled_lengths(lengths, samples.x.shape[2])[1].cpu().numpy()
    members = ensemble_size(model)
    plots.attention_figures(weights.numpy(), samples, path, steps, members)
    return {**attributions.attention_statistics(weights, steps), "networks": members}


# -----------------------------------------------------------------------------
# Attribution suite
def mean_share(magnitude: np.ndarray) -> list[float]:
    """(N, R) shares of |attribution| per region -> their mean over samples, rounded for metrics.json."""
    return magnitude.mean(axis=0).round(4).tolist()


def confused_pairs(y_true, y_pred, class_names, top=10) -> list[dict]:
    pairs, counts = np.unique(np.stack([y_true, y_pred], axis=1)[y_true != y_pred], axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top]
    return [{"true": class_names[pairs[i, 0]], "predicted": class_names[pairs[i, 1]], "count": int(counts[i])}
            for i in order]


def misclassification_outputs(model, scored: Samples, config, path) -> dict:
    """Integrated gradients for the predicted and the true class of the most confidently misclassified test
    samples (up to MAX_MISCLASSIFIED), one figure each, and the most confused class pairs."""
    wrong = np.flatnonzero(scored.y_pred != scored.y_true)
    shown = wrong[np.argsort(-scored.probabilities[wrong, scored.y_pred[wrong]], kind="stable")]
    mistakes = scored.subset(shown[:config["MAX_MISCLASSIFIED"]])
    if len(mistakes):
        ig = {"integrated_gradients": attributions.method_functions(config)["integrated_gradients"]}
        maps = [attributions.compute_maps(ig, model, mistakes.x, torch.as_tensor(labels, device=mistakes.x.device),
                                          mistakes.length_tensor)[0]["integrated_gradients"]
                for labels in (mistakes.y_pred, mistakes.y_true)]
        plots.misclassified_figures(mistakes, *maps, path)
    shown_rows = [{**mistakes.describe(i), "true_class_probability": float(mistakes.probabilities[i, mistakes.y_true[i]])}
                  for i in range(len(mistakes))]
    return {"count": int(len(wrong)), "of": len(scored), "shown": shown_rows,
            "confused_pairs": confused_pairs(scored.y_true, scored.y_pred, scored.class_names)}


def attribution_outputs(model, samples: Samples, scored: Samples, shap: dict, chosen: list, config, path,
                        progress=Silent, background=None, background_lengths=None) -> dict:
    """Every method's maps for the explained samples (target: their predicted classes), written to
    attributions.npz (one (N, C, L) array per method, the samples in the order of shap_values.npz) with
    their figures; returns the metrics.json section: per method seconds, deletion and insertion areas, cumulative
    prediction difference and preservation (CPD_FRACTION > 0; fill values zero and, given the SHAP background rows
    (B, C, L) and their lengths, the background mean), the randomization sanity check, the random-ordering control,
    regions and misclassifications.

    shap: {"values": (N, C, L, K) the SHAP stage's values, "seconds": its time}; chosen: the methods to run
    (names of attributions.METHODS, "shap" for the SHAP stage's map); progress as in shap_outputs, told each
    method's maps, the faithfulness curves and the sanity check done."""
    x = samples.x
    n, channels, length = x.shape
    segments = regions.parse_segments(config["ATTRIBUTION_SEGMENTS"], length)
    target = torch.as_tensor(samples.y_pred, device=x.device, dtype=torch.long)
    if samples.feature_names is not None:  # a table's features are not neighbours in time: occlude one at a time
        config = {**config, "OCCLUSION_WINDOW": 1}
    methods = attributions.method_functions(config, chosen)
    lengths = samples.length_tensor
    maps, seconds = {}, {}
    with progress("attribution suite", len(methods) + 3, "step") as step:
        for name, method in methods.items():  # one at a time, to say how far it is
            computed = attributions.compute_maps({name: method}, model, x, target, lengths)
            maps[name], seconds[name] = computed[0][name], computed[1][name]
            step()
        if "shap" in chosen:
            maps["shap"] = np.asarray(shap["values"])[np.arange(n), :, :, samples.y_pred].astype(np.float32)
            seconds["shap"] = shap["seconds"]
        np.savez(path("attributions.npz"), **maps, **({} if lengths is None else {"lengths": samples.own_lengths}))

        fractions, curves, random_curves = checks.faithfulness(model, x, target, maps, config["SEED"], lengths)
        step()
        differences = prediction_differences(model, x, maps, config, background, background_lengths, lengths)
        step()
        sanity = checks.sanity_check(methods, model, x, target, maps, config["SEED"], lengths)
        step()
    shares = {name: attributions.normalized_share(m) for name, m in maps.items()}
    windows = regions.window_spans(length, windows_per_channel(length, samples.feature_names,
                                                               config["ATTRIBUTION_WINDOWS"]))
    summary = {}
    for name in maps:
        checked, magnitude = sanity.get(name, {}), np.abs(shares[name])
        summary[name] = {"seconds": seconds.get(name), "deletion_auc": checks.area(curves[name][0], fractions),
                         "insertion_auc": checks.area(curves[name][1], fractions),
                         "deletion_auc_minus_random": checks.deletion_against_random(curves[name][0], random_curves[0],
                                                                                     fractions),
                         "sanity_rank_correlation": checked.get("rank_correlation"),
                         "sanity_signed_rank_correlation": checked.get("signed_rank_correlation"),
                         "insensitive_to_model": checked.get("insensitive_to_model"),
                         "signed": attributions.METHODS[name].signed,
                         "channel_share": dict(zip(samples.channel_names, mean_share(magnitude.sum(axis=2))))}
        if differences:
            summary[name]["prediction_difference"] = differences["methods"][name]
        if segments:
            spans = [(a, b) for _, a, b in segments]
            summary[name]["segment_share"] = dict(zip([s[0] for s in segments],
                                                      mean_share(regions.span_sums(magnitude, spans).sum(axis=1))))
    random_control = {"deletion_auc": checks.area(random_curves[0], fractions),
                      "insertion_auc": checks.area(random_curves[1], fractions),
                      **({"prediction_difference": differences["random_control"]} if differences else {})}

    plots.method_sample_figures(maps, attributions.METHODS, samples, path,
                                [name for name, better in better_than_random(summary).items() if not better])
    plots.method_overlay_figure(maps, samples, 0, segments, path("attribution_overlay.png"))
    plots.method_comparison_figure(summary, random_control, checks.SANITY_THRESHOLD, path("attribution_comparison.png"))
    plots.region_figure({name: regions.span_sums(s, windows).mean(axis=0) for name, s in shares.items()},
                        samples.channel_names,
                        [regions.span_label(a, b, samples.feature_names) for a, b in windows],
                        "features" if samples.feature_names is not None else f"{len(windows)} time windows", n,
                        path("attribution_regions.png"))
    if segments:
        plots.region_figure({name: regions.span_sums(s, [(a, b) for _, a, b in segments]).mean(axis=0)
                             for name, s in shares.items()}, samples.channel_names,
                            [f"{name} {regions.span_label(a, b)}" for name, a, b in segments], "named segments", n,
                            path("attribution_segments.png"))
    plots.faithfulness_figure(fractions, {name: c[0].mean(axis=0) for name, c in curves.items()},
                              {name: c[1].mean(axis=0) for name, c in curves.items()},
                              random_curves[0].mean(axis=0), random_curves[1].mean(axis=0), summary, random_control, n,
                              path("attribution_faithfulness.png"))
    return {
        "target": "logit of the predicted class", "baseline": "zeros in normalized space (the training mean)",
        "num_explained": n, "methods": summary, "random_control": random_control,
        "faithfulness": {"fractions": checks.FAITHFULNESS_FRACTIONS, "curve": "predicted-class probability",
                         "order": "largest attribution first, ties in random order",
                         "better": "deletion_auc lower, insertion_auc higher than the random control"},
        **({"prediction_difference": differences["settings"]} if differences else {}),
        "sanity": {"test": "Spearman rank correlation of |attribution| with a weight-randomized model's maps, "
                           "mean over samples",
                   "threshold": checks.SANITY_THRESHOLD, "seed": config["SEED"],
                   "not_checked": {"shap": "computed by the pipeline's SHAP stage (it needs the background rows)"}
                   if "shap" in chosen else {}},
        "windows": len(windows), "segments": [list(s) for s in segments],
        **({"misclassified": misclassification_outputs(model, scored, config, path)} if scored.labelled else {}),
    }


def prediction_differences(model, x, maps: dict, config, background=None, background_lengths=None,
                           lengths=None) -> dict:
    """CPD and CPP (metrics/prediction_difference.py) of every map and of a seeded random map, the control, with
    zero fill and (given background rows) the background mean: {"methods": name -> fill -> {"cpd", "cpp"} means,
    "random_control": fill -> {"cpd", "cpp"}, "settings": what metrics.json says of them}; {} with CPD_FRACTION 0."""
    if not config["CPD_FRACTION"]:
        return {}
    start = time.perf_counter()
    fills = ("zero",) if background is None else ("zero", "background_mean")
    random_map = np.random.default_rng(config["SEED"]).random(x.shape).astype(np.float32)
    per_sample = prediction_difference.prediction_difference(
        model, x, {**maps, RANDOM_CONTROL: random_map}, config["SEED"], fills, background, config["CPD_FRACTION"],
        lengths, background_lengths, prediction_difference.MAX_REMOVALS)
    means = prediction_difference.summary(per_sample)
    return {"methods": {name: means[name] for name in maps}, "random_control": means[RANDOM_CONTROL],
            "settings": {"fraction": config["CPD_FRACTION"], "max_removals": prediction_difference.MAX_REMOVALS,
                         "fills": {fill: FILL_WORDS[fill] for fill in fills},
                         "order": "cpd: largest |attribution| first; cpp: smallest first; ties in random order",
                         "distance": "mean over the classes of |change of the softmax probability|, summed over the "
                                     "removals, mean over the samples",
                         "better": "cpd higher, cpp lower than the random control",
                         "seconds": time.perf_counter() - start}}


RANDOM_CONTROL = "random (control)"
FILL_WORDS = {"zero": "0 in normalized space (the training mean)",
              "background_mean": "the mean of the SHAP background rows at each channel and step"}


def better_than_random(methods: dict) -> dict:
    """method -> whether its deletion curve beats the random ordering, for attribution_outputs' "methods"."""
    return {name: m["deletion_auc_minus_random"]["better_than_random"] for name, m in methods.items()}


# -----------------------------------------------------------------------------
# Counterfactuals
def counterfactual_entry(samples: Samples, i: int, result, x: np.ndarray) -> dict:
    """Sample i's counterfactual for metrics.json; distances in normalized units, None where none was found."""
    names, length = samples.class_names, int(samples.own_lengths[i])
    entry = {"row": int(samples.rows[i]), "original": names[samples.y_pred[i]], "target": names[result.target],
             "found": result.found, "predicted": None if result.predicted is None else names[result.predicted],
             "changed_channels": [], "changed_steps": None, "probability_before": result.probability_before,
             "probability_after": result.probability_after, "l1": None, "l2": None, "share_of_steps_changed": None,
             "share_of_cells_changed": None, "evaluations": result.evaluations, "reason": result.reason}
    if result.found:
        change = result.series - x
        s = result.stretch
        entry.update(changed_channels=[samples.channel_names[c] for c in s.channels], changed_steps=[s.start, s.end],
                     l1=float(np.abs(change).sum()), l2=float(np.sqrt((change ** 2).sum())),
                     share_of_steps_changed=(s.end - s.start) / length, share_of_cells_changed=s.cells / (x.shape[0] * length))
    return entry


def counterfactual_outputs(model, samples: Samples, shap_values: np.ndarray, guides, config, path):
    """A counterfactual per explained sample toward COUNTERFACTUAL_TARGET (or its most likely other class), guided
    by the SHAP values of its predicted class's logit minus the target's; writes counterfactuals.npz and one figure
    per sample. guides: (rows (G, C, L) normalized, their labels (G,) or None: the model's classes stand in, their
    lengths (G,) or None: all full length).
    Returns (one metrics.json entry per sample, the summary)."""
    start = time.perf_counter()
    n = len(samples)
    targets = counterfactuals.target_classes(samples.probabilities, counterfactuals.target_index(
        config["COUNTERFACTUAL_TARGET"], samples.class_names))
    contrasts = shap_values[np.arange(n), :, :, samples.y_pred] - shap_values[np.arange(n), :, :, targets]
    pool, pool_labels, pool_lengths = guides
    results = counterfactuals.counterfactuals(model, samples.x, targets, pool, pool_labels, contrasts,
                                              config["COUNTERFACTUAL_BUDGET"], samples.own_lengths, pool_lengths)
    inputs = samples.inputs
    series = np.stack([r.series if r.found else np.full(inputs.shape[1:], np.nan, np.float32) for r in results])
    mask = np.stack([counterfactuals.stretch_mask(inputs.shape[1:], r.stretch) if r.found
                     else np.zeros(inputs.shape[1:], bool) for r in results])
    np.savez(path("counterfactuals.npz"), counterfactuals=series.astype(np.float32), mask=mask, inputs=inputs,
             indices=samples.rows, targets=targets, found=np.array([r.found for r in results]),
             predicted=np.array([-1 if r.predicted is None else r.predicted for r in results]),
             class_names=np.array(samples.class_names))
    entries = [counterfactual_entry(samples, i, r, inputs[i]) for i, r in enumerate(results)]
    seconds = time.perf_counter() - start
    plots.counterfactual_figures(inputs, series, mask, entries, samples, path)
    found = [e for e in entries if e["found"]]
    summary = {
        "method": "Native Guide: the smallest stretch (one channel or all) of the nearest training series of the "
                  "target class that the model predicts as it, copied into the sample",
        "target": config["COUNTERFACTUAL_TARGET"] or "the most likely other class",
        "guides": f"{len(pool)} training rows" + (" labelled by the model (a checkpoint of an earlier version "
                                                 "carries its SHAP background only)" if pool_labels is None else ""),
        "budget": config["COUNTERFACTUAL_BUDGET"], "num_explained": n, "found_share": len(found) / n if n else None,
        "median_share_of_steps_changed": float(np.median([e["share_of_steps_changed"] for e in found]))
        if found else None, "seconds": seconds}
    return entries, summary
