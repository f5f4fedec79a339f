"""The pipeline's stages after training, in the order `train_explain.run()` calls them. Each stage computes
with the explanation modules, draws with plots.py, writes its files through `path(name)` (a file in the
run's staging folder) and returns its section of metrics.json:

    predictions_outputs(scored, path)                                    -> predictions.csv's summary
    evaluation_outputs(scored, path)                                     -> metrics of the test set (labels only)
    shap_outputs(model, samples, background, config, path)              -> (section, SHAP values)
    gradcam_outputs(model, samples, path)                                -> section
    attention_outputs(model, samples, path)                              -> section
    attribution_outputs(model, samples, scored, shap, chosen, config, path) -> section

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

import attributions
import checks
import data_loader
import plots
import regions
import shapley
from model import predict_logits


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

    def __len__(self):
        return len(self.rows)

    def subset(self, index) -> "Samples":
        index = np.asarray(index, dtype=np.int64)
        return Samples(self.x[torch.as_tensor(index, device=self.x.device)], self.rows[index],
                       None if self.y_true is None else self.y_true[index], self.y_pred[index], self.probabilities[index], self.class_names, self.channel_names,
                       self.feature_names)

    @property
    def inputs(self) -> np.ndarray:
        return self.x.detach().cpu().numpy()

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

    def __init__(self, path, layout, label_column, normalization, device, reference=None):
        self.path, self.layout, self.label_column, self.reference = path, layout, label_column, reference
        self.normalization, self.device = normalization, device

    def parts(self):
        return data_loader.iter_table(self.path, self.layout, self.label_column, CHUNK_ROWS, self.reference)

    def __getitem__(self, index) -> torch.Tensor:
        wanted = np.asarray(index.cpu() if torch.is_tensor(index) else index, dtype=np.int64)
        found = {}
        for part in self.parts():
            first, count = part.row_indices[0], len(part.row_indices)
            for row in wanted[(wanted >= first) & (wanted < first + count)]:
                found[int(row)] = part.X[row - first]
        X = np.stack([found[int(row)] for row in wanted]) if len(wanted) else \
            np.zeros((0, len(self.layout["channel_names"]), len(self.layout["feature_columns"]) //
                      len(self.layout["channel_names"])), np.float32)
        return torch.from_numpy(data_loader.normalize(X, self.normalization)).to(self.device)


def score(model, parts, x, normalization) -> Samples:
    """Every row of a file with the model's predictions. parts: the file's tables (data_loader.SeriesTable) in file
    order, scored one at a time; x: its rows as the model is fed them (a tensor, or FileRows)."""
    probabilities, labels, rows = [], [], []
    for part in parts:
        logits = predict_logits(model, data_loader.normalize(part.X, normalization))
        probabilities.append(torch.softmax(logits.float(), 1).cpu().numpy())
        labels.append(part.y)
        rows.append(part.row_indices)
    probabilities = np.concatenate(probabilities)
    y = None if labels[0] is None else np.concatenate(labels)
    return Samples(x, np.concatenate(rows), y, probabilities.argmax(1), probabilities, list(part.class_names),
                   list(part.channel_names), part.feature_names)


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

    frame = pd.DataFrame({"row": scored.rows, "predicted": np.array(scored.class_names)[scored.y_pred]})
    for k, name in enumerate(scored.class_names):
        frame[name] = scored.probabilities[:, k]
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


def check_exact_shap_is_feasible(config, channels, length, feature_names=None):
    players = int(shap_players((channels, length), feature_names, config["SHAP_SEGMENTS_PER_CHANNEL"]).max()) + 1
    if config["SHAP_METHOD"] == "exact" and players > shapley.EXACT_MAX_PLAYERS:
        raise shapley.ShapSettingError(f"SHAP_METHOD='exact' enumerates 2^players coalitions and this data has "
                                       f"{players} players "
                                       f"({channels} channels x {players // channels} windows), more than "
                                       f"{shapley.EXACT_MAX_PLAYERS}; use --shap_method=permutation or fewer "
                                       "--shap_segments_per_channel")


def shap_values_for(method, model, x, background, groups, config):
    """(values (N, C, L, K), seconds, estimated relative error (N,) or None for DeepExplainer) for one SHAP method."""
    start = time.perf_counter()
    if method == "deep":
        values, error = shapley.deep_shap(model, x, background), None
    else:
        values, error = shapley.interventional_shap(model, x, background, groups, method=method,
                                                    num_permutations=config["SHAP_PERMUTATIONS"] or None,
                                                    seed=config["SEED"], return_error=True)
    return values, time.perf_counter() - start, error


def shap_outputs(model, samples: Samples, background: torch.Tensor, config, path) -> tuple[dict, np.ndarray]:
    """Run the chosen SHAP method (or all of them), write shap_values.npz and the SHAP figures;
    returns (the metrics.json section, values (N, C, L, K) of the chosen method)."""
    x = samples.x
    outputs_logits = predict_logits(model, x).cpu().numpy()
    expected_value = predict_logits(model, background).cpu().numpy().mean(0)
    groups = shap_players(x.shape[1:], samples.feature_names, config["SHAP_SEGMENTS_PER_CHANNEL"])
    windows = int(groups.max()) // x.shape[1] + 1
    methods = [config["SHAP_METHOD"]]
    if config["SHAP_METHOD"] == "all":
        # Exact enumeration costs 2^players model calls per background row: only for few players.
        methods = ["permutation", "exact", "deep"] if groups.max() + 1 <= 12 else ["permutation", "deep"]
    comparison = []
    for method in methods:
        values, seconds, sampling_error = shap_values_for(method, model, x, background, groups, config)
        errors = shapley.additivity_errors(values, outputs_logits, expected_value)
        comparison.append({"method": method, "seconds": seconds, "additivity_rel_error_median": float(np.median(errors)),
                           "additivity_rel_error_max": float(errors.max()), "values": values,
                           **({} if sampling_error is None else
                              {"estimated_rel_error": [None if np.isnan(e) else float(e) for e in sampling_error]})})
    chosen = comparison[0]
    values = chosen["values"]
    np.savez(path("shap_values.npz"), values=values, inputs=samples.inputs, background=background.cpu().numpy(),
             expected_value=expected_value, outputs=outputs_logits, indices=samples.rows,
             class_names=np.array(samples.class_names))
    plots.shap_figures(values, samples, windows, path)
    summary = {"method": chosen["method"], "explained_output": "logits", "num_background": len(background),
               "num_explained": len(x), "segments_per_channel": windows,
               "players": int(groups.max()) + 1, "seconds": chosen["seconds"],
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
# Grad-CAM and attention
def gradcam_outputs(model, samples: Samples, path) -> dict:
    """One Grad-CAM figure per explained sample (target: its predicted class)."""
    with attributions.GradCAM(model, model.gradcam_layer) as cam:
        maps = cam.attribute(samples.x).cpu().numpy()
    plots.gradcam_figures(maps, samples, path)
    return {"layer": "last conv block (conv2)", "target": "predicted class", "num_explained": len(samples)}


def attention_outputs(model, samples: Samples, path) -> dict:
    """Per-head attention heatmaps of every explained sample and the heads' statistics."""
    with attributions.AttentionRecorder(model.attention) as recorder:
        weights = recorder.record(model, samples.x).cpu()
    plots.attention_figures(weights.numpy(), samples, path)
    return attributions.attention_statistics(weights)


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
        maps = [attributions.compute_maps(ig, model, mistakes.x, torch.as_tensor(labels, device=mistakes.x.device))[0]
                ["integrated_gradients"] for labels in (mistakes.y_pred, mistakes.y_true)]
        plots.misclassified_figures(mistakes, *maps, path)
    shown_rows = [{**mistakes.describe(i), "true_class_probability": float(mistakes.probabilities[i, mistakes.y_true[i]])}
                  for i in range(len(mistakes))]
    return {"count": int(len(wrong)), "of": len(scored), "shown": shown_rows,
            "confused_pairs": confused_pairs(scored.y_true, scored.y_pred, scored.class_names)}


def attribution_outputs(model, samples: Samples, scored: Samples, shap: dict, chosen: list, config, path) -> dict:
    """Every method's maps for the explained samples (target: their predicted classes), written to
    attributions.npz (one (N, C, L) array per method, the samples in the order of shap_values.npz) with
    their figures; returns the metrics.json section: per method seconds, deletion and insertion areas
    and the randomization sanity check, the random-ordering control, regions and misclassifications.

    shap: {"values": (N, C, L, K) the SHAP stage's values, "seconds": its time}; chosen: the methods to run
    (names of attributions.METHODS, "shap" for the SHAP stage's map)."""
    x = samples.x
    n, channels, length = x.shape
    segments = regions.parse_segments(config["ATTRIBUTION_SEGMENTS"], length)
    target = torch.as_tensor(samples.y_pred, device=x.device, dtype=torch.long)
    if samples.feature_names is not None:  # a table's features are not neighbours in time: occlude one at a time
        config = {**config, "OCCLUSION_WINDOW": 1}
    methods = attributions.method_functions(config, chosen)
    maps, seconds = attributions.compute_maps(methods, model, x, target)
    if "shap" in chosen:
        maps["shap"] = np.asarray(shap["values"])[np.arange(n), :, :, samples.y_pred].astype(np.float32)
        seconds["shap"] = shap["seconds"]
    np.savez(path("attributions.npz"), **maps)

    fractions, curves, random_curves = checks.faithfulness(model, x, target, maps, config["SEED"])
    sanity = checks.sanity_check(methods, model, x, target, maps, config["SEED"])
    shares = {name: attributions.normalized_share(m) for name, m in maps.items()}
    windows = regions.window_spans(length, windows_per_channel(length, samples.feature_names,
                                                               config["ATTRIBUTION_WINDOWS"]))
    summary = {}
    for name in maps:
        checked, magnitude = sanity.get(name, {}), np.abs(shares[name])
        summary[name] = {"seconds": seconds.get(name), "deletion_auc": checks.area(curves[name][0], fractions),
                         "insertion_auc": checks.area(curves[name][1], fractions),
                         "sanity_rank_correlation": checked.get("rank_correlation"),
                         "sanity_signed_rank_correlation": checked.get("signed_rank_correlation"),
                         "insensitive_to_model": checked.get("insensitive_to_model"),
                         "signed": attributions.METHODS[name].signed,
                         "channel_share": dict(zip(samples.channel_names, mean_share(magnitude.sum(axis=2))))}
        if segments:
            spans = [(a, b) for _, a, b in segments]
            summary[name]["segment_share"] = dict(zip([s[0] for s in segments],
                                                      mean_share(regions.span_sums(magnitude, spans).sum(axis=1))))
    random_control = {"deletion_auc": checks.area(random_curves[0], fractions),
                      "insertion_auc": checks.area(random_curves[1], fractions)}

    plots.method_sample_figures(maps, attributions.METHODS, samples, path)
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
        "sanity": {"test": "Spearman rank correlation of |attribution| with a weight-randomized model's maps, "
                           "mean over samples",
                   "threshold": checks.SANITY_THRESHOLD, "seed": config["SEED"],
                   "not_checked": {"shap": "computed by the pipeline's SHAP stage (it needs the background rows)"}
                   if "shap" in chosen else {}},
        "windows": len(windows), "segments": [list(s) for s in segments],
        **({"misclassified": misclassification_outputs(model, scored, config, path)} if scored.labelled else {}),
    }
