"""The pipeline's stages after training, in the order `train_explain.run()` runs them, behind one contract
(pytorch-grad-cam's shape: the base class runs the steps, each stage fills them):

    compute(run) -> Result     the stage's arrays and its metrics.json keys; touches no file
    save(result, run, path)    writes its files through path(name) (a file in the run's staging folder)
    draw(result, run, path)    queues its figures (drawn in the drawing processes, figures/drawing.py)

`run` is the RunContext: the model, the explanation settings, `scored` (every row of the test or new file with the
model's predictions, from `score`), `samples` (the rows explained, chosen by `rows_to_explain`), the SHAP
background, the counterfactual guides, and every earlier stage's Result by name (`run.results["shap"]`), so that a
later stage reads what an earlier one computed by name, never by position. A stage can be computed on a tiny model
without an output folder (tests/test_stages.py).

    PredictionsStage    predictions.csv                          EvaluationStage    test accuracy, confusion matrix
    ShapStage           shap_values.npz, SHAP figures            GlobalStage        global_importance.npz
    AttributionStage    attributions.npz, faithfulness, sanity   GradCamStage       Grad-CAM figures
    AttentionStage      attention heatmaps and statistics        CounterfactualStage counterfactuals.npz

Gradient stages run through the LSTM: on CUDA, run them inside torch.backends.cudnn.flags(enabled=False).
"""
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

import data_loader
from hybrid_explain import baseline
from hybrid_explain.config import ExplainConfig
from hybrid_explain.explainers import attributions, counterfactuals, global_importance, regions, shapley
from hybrid_explain.figures import (attribution_figures, base, counterfactual_figures, global_figures,
                                    gradcam_attention_figures, shap_figures, strips, summary_figures)
from hybrid_explain.metrics import checks, prediction_difference
from hybrid_explain.model import ensemble_size, predict_logits
from hybrid_explain.series import model_at_lengths, model_lengths, own_lengths
from hybrid_explain.pipeline.progress import Silent
from hybrid_explain.figures import trust_figures
from hybrid_explain.trust import representation
from hybrid_explain.trust import state as trust_state_of
from hybrid_explain.trust import summary as trust_summary


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
    trust: Optional[dict] = None  # per row (hybrid_explain/trust/state.row_scores): "prediction_sets" (N, K) bool, "ood_scores" (N,), "ood_flags" (N,); None: the checkpoint has no trust state

    def __len__(self):
        return len(self.rows)

    def __getstate__(self):
        """Pickled (to a drawing process, drawing.py) with its inputs on the CPU: a forked process must not use CUDA."""
        return {**self.__dict__, "x": self.x.detach().cpu() if torch.is_tensor(self.x) else self.x}

    def subset(self, index) -> "Samples":
        index = np.asarray(index, dtype=np.int64)
        return Samples(self.x[torch.as_tensor(index, device=self.x.device)], self.rows[index],
                       None if self.y_true is None else self.y_true[index], self.y_pred[index], self.probabilities[index], self.class_names, self.channel_names,
                       self.feature_names, None if self.lengths is None else self.lengths[index],
                       None if self.trust is None else {name: values[index] for name, values in self.trust.items()})

    @property
    def inputs(self) -> np.ndarray:
        return self.x.detach().cpu().numpy()

    @property
    def own_lengths(self) -> np.ndarray:
        """(N,) each row's length, the full width where lengths is None."""
        return own_lengths(self.lengths, self.x)

    @property
    def length_tensor(self) -> Optional[torch.Tensor]:
        """lengths as the model takes them, on x's device; None when every row is full length (the fast path)."""
        return model_lengths(self.lengths, self.x.shape[2], self.x.device)

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
        self._reader = self._last = None  # the file read so far by _parts_from, and its last part

    def __getstate__(self):
        return {**self.__dict__, "_reader": None, "_last": None}  # a file being read does not travel

    def parts(self):
        return data_loader.iter_table(self.path, self.layout, self.label_column, CHUNK_ROWS, self.reference,
                                      self.missing_values)

    def _parts_from(self, row: int):
        """The file's parts from the one holding `row` on. A read of rows at or after the last read's part (every
        row explained, part after part) goes on where that read stopped, so the file is read once, not once a
        part."""
        if self._last is not None and self._last.row_indices[0] <= row:
            yield self._last
        else:
            self._reader = self.parts()
        for part in self._reader:
            self._last = part
            yield part

    def __getitem__(self, index) -> torch.Tensor:
        wanted = np.asarray(index.cpu() if torch.is_tensor(index) else index, dtype=np.int64)
        found = {}
        for part in self._parts_from(int(wanted.min())) if len(wanted) else ():
            first, count = part.row_indices[0], len(part.row_indices)
            for row in wanted[(wanted >= first) & (wanted < first + count)]:
                found[int(row)] = part.X[row - first], part.lengths[row - first]
            if len(found) == len(set(wanted.tolist())):
                break
        X = np.stack([found[int(row)][0] for row in wanted]) if len(wanted) else \
            np.zeros((0, len(self.layout["channel_names"]), len(self.layout["feature_columns"]) //
                      len(self.layout["channel_names"])), np.float32)
        lengths = np.array([found[int(row)][1] for row in wanted], dtype=np.int64)
        return torch.from_numpy(data_loader.normalize(X, self.normalization, lengths)).to(self.device)


def score(model, parts, x, normalization, counts=None, progress=Silent, trust=None, level=0.9,
          false_alarm_rate=0.01) -> Samples:
    """Every row of a file with the model's predictions. parts: the file's tables (data_loader.SeriesTable) in file
    order, scored one at a time; x: its rows as the model is fed them (a tensor, or FileRows); counts: a
    data_loader.SeriesCounts that counts the parts' lengths and filled cells as they are read (None: not counted);
    progress(description, total, unit): a progress.Progress-like context, told the rows of each part read and scored. trust: the checkpoint's trust state
    (None: none), which scales the probabilities and gives each row its prediction set at `level` and its
    out-of-distribution score and flag at `false_alarm_rate` (Samples.trust)."""
    probabilities, labels, rows, lengths, per_row = [], [], [], [], []
    with progress("reading and scoring", None, "row") as step:
        for part in parts:
            if counts is not None:
                counts.add(part)
            logits, features = representation.logits_and_features(
                model, data_loader.normalize(part.X, normalization, part.lengths), lengths=part.lengths)
            scaled, sets, ood_scores, ood_flags = trust_state_of.row_scores(
                trust, logits.float().cpu().numpy(), features.cpu().numpy(), level, false_alarm_rate)
            probabilities.append(scaled.astype(np.float32))
            per_row.append({"prediction_sets": sets, "ood_scores": ood_scores, "ood_flags": ood_flags})
            labels.append(part.y)
            rows.append(part.row_indices)
            lengths.append(part.lengths)
            step(len(part.X))
    probabilities = np.concatenate(probabilities)
    y = None if labels[0] is None else np.concatenate(labels)
    lengths = np.concatenate(lengths)
    return Samples(x, np.concatenate(rows), y, probabilities.argmax(1), probabilities, list(part.class_names),
                   list(part.channel_names), part.feature_names,
                   lengths if (lengths < part.X.shape[2]).any() else None,
                   None if trust is None else {name: np.concatenate([p[name] for p in per_row]) for name in per_row[0]})


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
# The stage contract
@dataclass
class Result:
    """What a stage computed: `metrics`, the keys it adds to metrics.json; `arrays`, what its files hold and later
    stages read, by name; `lines`, what the console says about it."""
    metrics: dict
    arrays: dict = field(default_factory=dict)
    lines: list = field(default_factory=list)


@dataclass
class RunContext:
    """What the stages after training read, and each stage's Result by its name."""
    model: torch.nn.Module
    config: ExplainConfig
    scored: Samples
    samples: Samples
    background: torch.Tensor  # (B, C, L) normalized SHAP background rows, on the model's device
    background_lengths: Optional[np.ndarray] = None  # (B,) their lengths; None: all full length
    guides: tuple = (None, None, None)  # counterfactual guides: rows (G, C, L), labels (G,) or None, lengths or None
    progress: Callable = Silent  # progress(description, total, unit), a progress.Progress-like context
    results: dict = field(default_factory=dict)


class Stage:
    """One stage after training. A subclass sets `name` (the key of its Result in RunContext.results) and `phase`
    (its key in metrics.json's timings_s) and fills compute(); save() and draw() default to nothing."""
    name = ""
    phase = ""

    def applies(self, run: RunContext) -> bool:
        """Whether the stage runs for this run (e.g. the evaluation needs labels)."""
        return True

    def compute(self, run: RunContext) -> Result:
        raise NotImplementedError

    def save(self, result: Result, run: RunContext, path) -> None:
        """Write the stage's files (none by default)."""

    def draw(self, result: Result, run: RunContext, path) -> None:
        """Queue the stage's figures (none by default)."""

    def __call__(self, run: RunContext, path) -> Result:
        result = self.compute(run)
        self.save(result, run, path)
        self.draw(result, run, path)
        run.results[self.name] = result
        return result


def run_stages(stages, run: RunContext, path, log=print, lap=lambda phase: None) -> dict:
    """Run each stage that applies, in order: its console lines, then lap(its phase); returns the metrics.json
    keys of all of them."""
    metrics = {}
    for stage in stages:
        if stage.applies(run):
            result = stage(run, path)
            metrics.update(result.metrics)
            for line in result.lines:
                log(line)
            lap(stage.phase)
    return metrics


# -----------------------------------------------------------------------------
# Predictions and evaluation
class PredictionsStage(Stage):
    """predictions.csv: one row per row of the file, in file order (row, predicted, one probability per class, and
    with labels true and correct), and trust.csv beside it (row, prediction_set, ood_score, out_of_distribution);
    metrics: the predicted class distribution and the least confident rows."""
    name, phase = "predictions", "evaluate"
    least_confident = 10

    def compute(self, run):
        scored = run.scored
        names = np.array(scored.class_names)
        columns = {"row": scored.rows, "predicted": names[scored.y_pred],
                   **{name: scored.probabilities[:, k] for k, name in enumerate(scored.class_names)}}
        if scored.labelled:
            columns.update(true=names[scored.y_true], correct=scored.y_true == scored.y_pred)
        arrays = {"columns": columns}
        if scored.trust is not None:
            # trust.csv, beside predictions.csv, whose columns other than row, predicted, true and correct are the
            # class probabilities (the contract's layout, which tools read); the set's classes are joined by "|"
            # (empty: no class plausible enough; docs/trust.md)
            arrays["trust_columns"] = {
                "row": scored.rows, "prediction_set": ["|".join(names[row]) for row in scored.trust["prediction_sets"]],
                "ood_score": scored.trust["ood_scores"], "out_of_distribution": scored.trust["ood_flags"]}
        counts = np.bincount(scored.y_pred, minlength=len(scored.class_names))
        section = {"rows": len(scored), "labelled": scored.labelled,
                   "predicted_class_counts": dict(zip(scored.class_names, counts.tolist())),
                   **({"true_class_counts": dict(zip(scored.class_names, np.bincount(
                       scored.y_true, minlength=len(scored.class_names)).tolist()))} if scored.labelled else {}),
                   "least_confident": [scored.describe(i) for i in scored.least_confident(self.least_confident)]}
        return Result({"predictions": section}, arrays)

    def save(self, result, run, path):
        import pandas as pd

        # one frame built at once: a column inserted per class fragments it (pandas warns from a few hundred classes)
        pd.DataFrame(result.arrays["columns"]).to_csv(path("predictions.csv"), index=False)
        if "trust_columns" in result.arrays:
            pd.DataFrame(result.arrays["trust_columns"]).to_csv(path("trust.csv"), index=False)


class EvaluationStage(Stage):
    """With labels: test accuracy and macro F1, classification_report.txt and the confusion matrix figure; without,
    the accuracy is None and the console says why."""
    name, phase = "evaluation", "evaluate"

    def compute(self, run):
        from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

        scored = run.scored
        if not scored.labelled:
            return Result({"test_accuracy": None, "test_macro_f1": None}, {}, [
                "the file has no labels: wrote predictions.csv and the explanations; accuracy, the confusion matrix "
                "and misclassified rows need labels"])
        labels = list(range(len(scored.class_names)))
        accuracy = float(accuracy_score(scored.y_true, scored.y_pred))
        macro_f1 = float(f1_score(scored.y_true, scored.y_pred, labels=labels, average="macro", zero_division=0))
        report = classification_report(scored.y_true, scored.y_pred, labels=labels, target_names=scored.class_names,
                                       zero_division=0, digits=3)
        return Result({"test_accuracy": accuracy, "test_macro_f1": macro_f1},
                      {"report": report, "confusion": confusion_matrix(scored.y_true, scored.y_pred, labels=labels)},
                      [f"test accuracy {accuracy:.4f}, macro F1 {macro_f1:.4f}"])

    def save(self, result, run, path):
        if "report" in result.arrays:
            with open(path("classification_report.txt"), "w", encoding="utf-8") as f:
                f.write(result.arrays["report"])

    def draw(self, result, run, path):
        if "confusion" in result.arrays:
            summary_figures.confusion_matrix_figure(result.arrays["confusion"], run.scored.class_names,
                                          path("confusion_matrix.png"))


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
    players = int(shap_players((channels, length), feature_names, config.shap_segments_per_channel).max()) + 1
    if config.shap_method == "exact" and players > shapley.EXACT_MAX_PLAYERS:
        raise shapley.ShapSettingError(f"SHAP_METHOD='exact' enumerates 2^players coalitions and this data has "
                                       f"{players} players "
                                       f"({channels} channels x {players // channels} windows), more than "
                                       f"{shapley.EXACT_MAX_PLAYERS}; use --shap_method=permutation or fewer "
                                       "--shap_segments_per_channel")


def shap_values_for(method, model, x, background, groups, permutations: int, subwindows: int, seed: int,
                    lengths=None, background_lengths=None, step=lambda count=1: None):
    """(values (N, C, L, K), seconds, estimated relative error (N,) or None for DeepExplainer) for one SHAP method;
    permutations, subwindows: SHAP_PERMUTATIONS and SHAP_SUBWINDOWS; with lengths, rows of their own lengths
    (groups per row); step(count) after each sample's values."""
    start = time.perf_counter()
    if method == "deep":
        values, error = shapley.deep_shap(model, x, background), None
        step(len(x))
    else:
        # A sample at a time, to say how far it is: a sample's values do not depend on the others explained.
        values, error = [], []
        for i in range(len(x)):
            row_values, row_error = shapley.row_shap(
                model, x, i, background, groups, lengths, background_lengths, method=method,
                num_permutations=permutations or None, seed=seed, return_error=True,
                split=subwindows if method == "permutation" else 1)
            values.append(row_values)
            error.append(row_error)
            step()
        values, error = np.concatenate(values), np.concatenate(error)
    return values, time.perf_counter() - start, error


def window_labels(length: int, windows: int, feature_names=None, own_lengths=False) -> list[str]:
    """Labels of the windows of each channel: steps of a full-length row ("t20-29"), a table's features, or with
    own_lengths (rows of different lengths, each cut into windows of its own length, as the SHAP players are) shares
    of the length ("20-30 %")."""
    spans = regions.window_spans(length, windows)
    if own_lengths:
        return [f"{100 * a / length:.0f}-{100 * b / length:.0f} %" for a, b in spans]
    return [regions.span_label(a, b, feature_names) for a, b in spans]


class ShapStage(Stage):
    """The chosen SHAP method (or all of them, compared) on the explained samples: shap_values.npz, the SHAP figures
    and metrics["shap"]. arrays["values"] (N, C, L, K) are the chosen method's values. Rows of different lengths are
    explained as shapley.py says (each row's own steps are the players)."""
    name, phase = "shap", "shap"

    def compute(self, run):
        config, model, samples, x = run.config, run.model, run.samples, run.samples.x
        background, background_lengths = run.background, run.background_lengths
        groups = shap_players(x.shape[1:], samples.feature_names, config.shap_segments_per_channel)
        available, permutations = len(background), config.shap_permutations
        if config.shap_method in ("permutation", "all") and config.shap_subwindows > 1 and not permutations:
            # the automatic budget's walks over fewer rows, so that coarse to fine can split
            # (shapley.budget_background); permutations given by the user are spent over every row, as asked
            rows, permutations = shapley.budget_background(available, int(groups.max()) + 1, x.shape[2], None,
                                                           config.shap_min_pairs_per_row)
            if len(rows) < available:
                background = background[torch.as_tensor(rows, device=background.device)]
                background_lengths = None if background_lengths is None else np.asarray(background_lengths)[rows]
            else:
                permutations = config.shap_permutations
        outputs = predict_logits(model, x, lengths=samples.lengths).cpu().numpy()
        expected_value = predict_logits(model, background, lengths=background_lengths).cpu().numpy().mean(0)
        windows = int(groups.max()) // x.shape[1] + 1
        variable = samples.lengths is not None or model_lengths(background_lengths, x.shape[2]) is not None
        lengths = base_values = None
        if variable:
            lengths = samples.own_lengths
            background_lengths = own_lengths(background_lengths, background)
            groups = shap_players_per_row(x.shape[1:], lengths, samples.feature_names, config.shap_segments_per_channel)
            base_values = shapley.expected_outputs(model_at_lengths(model), background, background_lengths, lengths)
        methods = shap_methods(config.shap_method, int(groups.max()) + 1, variable)
        comparison = []
        with run.progress("SHAP", len(methods) * len(x), "sample") as step:
            for method in methods:
                values, seconds, sampling_error = shap_values_for(
                    method, model, x, background, groups, permutations, config.shap_subwindows, config.seed,
                    lengths, background_lengths, step)
                errors = shapley.additivity_errors(values, outputs, expected_value if base_values is None else base_values)
                comparison.append({"method": method, "seconds": seconds,
                                   "additivity_rel_error_median": float(np.median(errors)),
                                   "additivity_rel_error_max": float(errors.max()), "values": values,
                                   **({} if sampling_error is None else {"estimated_rel_error": [
                                       None if np.isnan(e) else float(e) for e in sampling_error]})})
        chosen = comparison[0]
        summary = {"method": chosen["method"], "explained_output": "logits", "num_background": len(background),
                   "background_rows_available": available, "min_pairs_per_row": config.shap_min_pairs_per_row,
                   "num_explained": len(x), "segments_per_channel": windows,
                   "players": int(groups.max()) + 1, "seconds": chosen["seconds"],
                   **({"subwindows": config.shap_subwindows} if chosen["method"] == "permutation" else {}),
                   **({"background_rule": "each explained row's own steps are the players; a background row is cut "
                                          "to its length or held at its last observed value up to it; values add up "
                                          "to f(x) - expected_values[i] (shap_values.npz)"} if variable else {}),
                   "additivity_rel_error_median": chosen["additivity_rel_error_median"],
                   "additivity_rel_error_max": chosen["additivity_rel_error_max"]}
        if "estimated_rel_error" in chosen:  # per explained sample: standard error of the values / their norm
            summary["estimated_rel_error"] = chosen["estimated_rel_error"]
        if chosen["method"] == "permutation":
            # Rounded up to a multiple of the background size so that every background row is used equally.
            wanted = permutations or shapley.default_permutations(summary["players"], x.shape[2])
            summary["permutations"] = math.ceil(wanted / len(background)) * len(background)
        if len(comparison) > 1:
            summary["comparison"] = [{k: v for k, v in row.items() if k != "values"} for row in comparison]
        arrays = {"values": chosen["values"], "inputs": samples.inputs, "background": background.cpu().numpy(),
                  "expected_value": expected_value, "outputs": outputs, "indices": samples.rows,
                  "class_names": np.array(samples.class_names),
                  **({} if not variable else {"lengths": lengths, "background_lengths": background_lengths,
                                              "expected_values": base_values})}
        return Result({"shap": summary}, arrays, [
            f"SHAP ({summary['method']}): additivity error median {summary['additivity_rel_error_median']:.3g}, "
            f"max {summary['additivity_rel_error_max']:.3g}"])

    def save(self, result, run, path):
        np.savez(path("shap_values.npz"), **result.arrays)

    def draw(self, result, run, path):
        shap_figures.shap_figures(result.arrays["values"], run.samples, result.metrics["shap"]["segments_per_channel"], path)


def shap_methods(setting: str, players: int, variable: bool) -> list[str]:
    """The SHAP methods SHAP_METHOD asks for, the chosen one first: "all" compares them (exact enumeration costs
    2^players model calls per background row, so only for few players; DeepExplainer cannot be told where a row
    ends)."""
    if setting == "all":
        methods = ["permutation", "exact", "deep"] if players <= 12 else ["permutation", "deep"]
        return [m for m in methods if not (variable and m == "deep")]
    if setting == "deep" and variable:
        raise shapley.ShapSettingError("SHAP_METHOD='deep' (shap.DeepExplainer) cannot be told where a row ends, and "
                                       "these rows differ in length; use --shap_method=permutation or exact")
    return [setting]


# -----------------------------------------------------------------------------
# Global importance
class GlobalStage(Stage):
    """Group Shapley values of whole channels, whole time windows and channel x window cells for up to
    GLOBAL_EXPLAIN_ROWS rows of the file (seeded, stratified over the predicted classes): global_importance.npz,
    the global figures, and metrics["global"] (importance with bootstrap intervals, overall and per predicted
    class). Rows of different lengths: each row's windows are the tenths (SHAP_SEGMENTS_PER_CHANNEL) of its own
    length, labelled in per cent of the length."""
    name, phase = "global", "global"

    def applies(self, run):
        return run.config.global_explain_rows > 0

    def compute(self, run):
        start = time.perf_counter()
        config = run.config
        rows = run.scored.subset(global_importance.choose_rows(run.scored.y_pred, config.global_explain_rows,
                                                               config.seed))
        length = rows.x.shape[2]
        windows = windows_per_channel(length, rows.feature_names, config.shap_segments_per_channel)
        labels = window_labels(length, windows, rows.feature_names, rows.lengths is not None)
        with run.progress(f"global importance ({', '.join(global_importance.GROUPINGS)})",
                          len(rows) * len(global_importance.GROUPINGS), "row") as step:
            arrays, section = global_importance.global_importance(
                run.model, rows.x, run.background, rows.y_pred, rows.channel_names, rows.class_names, windows,
                config.seed, labels, rows.lengths, run.background_lengths, step)
        if rows.lengths is None:  # every row full length: windows and class means at their steps
            positions = np.arange(length)
            class_means = np.stack([rows.inputs[rows.y_pred == k].mean(axis=0) if (rows.y_pred == k).any()
                                    else np.zeros(rows.inputs.shape[1:]) for k in range(len(rows.class_names))])
            relative = {}
        else:  # each row's windows are shares of its own length: drawn on one relative axis
            positions, class_means = global_importance.relative_class_means(rows.inputs, rows.lengths, rows.y_pred,
                                                                            len(rows.class_names))
            relative = {"relative_window_edges": global_importance.relative_window_edges(rows.lengths, windows)}
        arrays.update(rows=rows.rows, predicted=rows.y_pred, **({"true": rows.y_true} if rows.labelled else {}),
                      class_mean_inputs=class_means, class_mean_positions=positions,
                      window_edges=regions.window_edges(length, windows), **relative,
                      channel_names=np.array(rows.channel_names), class_names=np.array(rows.class_names),
                      window_labels=np.array(labels))
        section["seconds"]["total"] = time.perf_counter() - start
        top = max(section["channel_importance"].items(), key=lambda kv: kv[1]["mean"])[0]
        return Result({"global": section}, arrays, [f"global importance over {section['rows']} rows: top channel {top}"])

    def save(self, result, run, path):
        np.savez(path("global_importance.npz"), **result.arrays)

    def draw(self, result, run, path):
        a, scored = result.arrays, run.scored
        if "relative_window_edges" in a:
            edges, axis_label = a["relative_window_edges"], "share of each row's own length (%)"
        else:
            edges, axis_label = a["window_edges"] - 0.5, strips.step_axis_label(scored.feature_names)
        global_figures.global_figures(result.metrics["global"], a["class_mean_inputs"], a["class_mean_positions"], edges,
                             axis_label, a["class_mean_cell_evidence"], scored.channel_names, scored.class_names,
                             a["window_labels"].tolist(), scored.feature_names, path)


# -----------------------------------------------------------------------------
# Attribution suite
class AttributionStage(Stage):
    """Every chosen method's maps for the explained samples (target: their predicted classes; "shap" is the SHAP
    stage's map), attributions.npz (one (N, C, L) array per method, the samples in the order of shap_values.npz),
    their figures, and metrics["attributions"]: per method seconds, deletion and insertion areas and the
    randomization sanity check, the random-ordering control, regions and, with labels, the misclassified rows."""
    name, phase = "attributions", "attributions"

    def __init__(self, methods: list[str]):
        self.methods = methods  # names of attributions.METHODS (ATTRIBUTION_METHODS, checked)

    def applies(self, run):
        return bool(self.methods)

    def compute(self, run):
        config, model, samples, x = run.config, run.model, run.samples, run.samples.x
        n, _, length = x.shape
        segments = regions.parse_segments(config.attribution_segments, length)
        target = torch.as_tensor(samples.y_pred, device=x.device, dtype=torch.long)
        settings = method_settings(config, samples)
        methods = attributions.method_functions(settings, self.methods)
        lengths = samples.length_tensor
        with run.progress("attribution suite", len(methods) + 3, "step") as step:
            maps, seconds = attribution_maps(model, samples, methods, step)
            if "shap" in self.methods:
                shap = run.results["shap"]
                maps["shap"] = shap.arrays["values"][np.arange(n), :, :, samples.y_pred].astype(np.float32)
                seconds["shap"] = shap.metrics["shap"]["seconds"]
            fractions, curves, random_curves = checks.faithfulness(model, x, target, maps, config.seed, lengths)
            step()
            differences = prediction_differences(model, x, maps, config, run.background, run.background_lengths,
                                                 lengths)
            step()
            sanity = checks.sanity_check(methods, model, x, target, maps, config.seed, lengths)
            step()
        shares = {name: attributions.normalized_share(m) for name, m in maps.items()}
        windows = regions.window_spans(length, windows_per_channel(length, samples.feature_names,
                                                                   config.attribution_windows))
        summary = {name: method_summary(name, curves[name], random_curves, fractions, sanity.get(name, {}),
                                        seconds.get(name), np.abs(shares[name]), samples.channel_names, segments)
                   for name in maps}
        for name in maps if differences else ():
            summary[name]["prediction_difference"] = differences["methods"][name]
        random_control = {"deletion_auc": checks.area(random_curves[0], fractions),
                          "insertion_auc": checks.area(random_curves[1], fractions),
                          **({"prediction_difference": differences["random_control"]} if differences else {})}
        section = {
            "target": "logit of the predicted class", "baseline": "zeros in normalized space (the training mean)",
            "num_explained": n, "methods": summary, "random_control": random_control,
            "faithfulness": {"fractions": checks.FAITHFULNESS_FRACTIONS, "curve": "predicted-class probability",
                             "order": "largest attribution first, ties in random order",
                             "better": "deletion_auc lower, insertion_auc higher than the random control"},
            **({"prediction_difference": differences["settings"]} if differences else {}),
            "sanity": {"test": "Spearman rank correlation of |attribution| with a weight-randomized model's maps, "
                               "mean over samples",
                       "threshold": checks.SANITY_THRESHOLD, "seed": config.seed,
                       "not_checked": {"shap": "computed by the pipeline's SHAP stage (it needs the background rows)"}
                       if "shap" in self.methods else {}},
            "windows": len(windows), "segments": [list(s) for s in segments]}
        arrays = {"maps": maps, "shares": shares, "windows": windows, "segments": segments, "fractions": fractions,
                  "curves": curves, "random_curves": random_curves}
        if run.scored.labelled:
            section["misclassified"], arrays["misclassified"] = misclassified(run, settings)
        unfaithful = [name for name, better in better_than_random(summary).items() if not better]
        lines = [f"warning: the deletion curves of {', '.join(unfaithful)} are no better than random on this run: do "
                 f"not read meaning into {'them' if len(unfaithful) > 1 else 'it'}"] if unfaithful else []
        return Result({"attributions": section}, arrays, lines)

    def save(self, result, run, path):
        samples = run.samples
        np.savez(path("attributions.npz"), **result.arrays["maps"],
                 **({} if samples.lengths is None else {"lengths": samples.own_lengths}))

    def draw(self, result, run, path):
        a, section, samples = result.arrays, result.metrics["attributions"], run.samples
        maps, shares, windows, segments, summary = a["maps"], a["shares"], a["windows"], a["segments"], section["methods"]
        n = len(samples)
        attribution_figures.method_sample_figures(maps, attributions.METHODS, samples, path,
                                    [name for name, better in better_than_random(summary).items() if not better])
        attribution_figures.method_overlay_figure(maps, samples, 0, segments, path("attribution_overlay.png"))
        attribution_figures.method_comparison_figure(summary, section["random_control"], checks.SANITY_THRESHOLD,
                                       path("attribution_comparison.png"))
        attribution_figures.region_figure({name: regions.span_sums(s, windows).mean(axis=0) for name, s in shares.items()},
                            samples.channel_names, [regions.span_label(a, b, samples.feature_names) for a, b in windows],
                            "features" if samples.feature_names is not None else f"{len(windows)} time windows", n,
                            path("attribution_regions.png"))
        if segments:
            attribution_figures.region_figure({name: regions.span_sums(s, [(a, b) for _, a, b in segments]).mean(axis=0)
                                 for name, s in shares.items()}, samples.channel_names,
                                [f"{name} {regions.span_label(a, b)}" for name, a, b in segments], "named segments", n,
                                path("attribution_segments.png"))
        curves, random_curves = a["curves"], a["random_curves"]
        attribution_figures.faithfulness_figure(a["fractions"], {name: c[0].mean(axis=0) for name, c in curves.items()},
                                  {name: c[1].mean(axis=0) for name, c in curves.items()},
                                  random_curves[0].mean(axis=0), random_curves[1].mean(axis=0), summary,
                                  section["random_control"], n, path("attribution_faithfulness.png"))
        if a.get("misclassified"):
            attribution_figures.misclassified_figures(*a["misclassified"], path)


def method_settings(config: ExplainConfig, samples: Samples) -> dict:
    """The attribution methods' settings (attributions.method_functions): the explanation settings, with occlusion
    one feature at a time for a table, whose features are not neighbours in time."""
    settings = dataclasses.asdict(config)
    if samples.feature_names is not None:
        settings["occlusion_window"] = 1
    return settings


def attribution_maps(model, samples: Samples, methods: dict, step=lambda count=1: None) -> tuple[dict, dict]:
    """(name -> (N, C, L) map of each sample's predicted class, name -> seconds) for the methods computed here
    (attributions.method_functions), a method at a time, step() after each."""
    target = torch.as_tensor(samples.y_pred, device=samples.x.device, dtype=torch.long)
    maps, seconds = {}, {}
    for name, method in methods.items():
        computed = attributions.compute_maps({name: method}, model, samples.x, target, samples.length_tensor)
        maps[name], seconds[name] = computed[0][name], computed[1][name]
        step()
    return maps, seconds


def mean_share(magnitude: np.ndarray) -> list[float]:
    """(N, R) shares of |attribution| per region -> their mean over samples, rounded for metrics.json."""
    return magnitude.mean(axis=0).round(4).tolist()


def confused_pairs(y_true, y_pred, class_names, top=10) -> list[dict]:
    pairs, counts = np.unique(np.stack([y_true, y_pred], axis=1)[y_true != y_pred], axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top]
    return [{"true": class_names[pairs[i, 0]], "predicted": class_names[pairs[i, 1]], "count": int(counts[i])}
            for i in order]


def method_summary(name, curves, random_curves, fractions, sanity: dict, seconds, magnitude, channel_names,
                   segments) -> dict:
    """One method's entry of metrics["attributions"]["methods"]."""
    summary = {"seconds": seconds, "deletion_auc": checks.area(curves[0], fractions),
               "insertion_auc": checks.area(curves[1], fractions),
               "deletion_auc_minus_random": checks.deletion_against_random(curves[0], random_curves[0], fractions),
               "sanity_rank_correlation": sanity.get("rank_correlation"),
               "sanity_signed_rank_correlation": sanity.get("signed_rank_correlation"),
               "insensitive_to_model": sanity.get("insensitive_to_model"),
               "signed": attributions.METHODS[name].signed,
               "channel_share": dict(zip(channel_names, mean_share(magnitude.sum(axis=2))))}
    if segments:
        spans = [(a, b) for _, a, b in segments]
        summary["segment_share"] = dict(zip([s[0] for s in segments],
                                            mean_share(regions.span_sums(magnitude, spans).sum(axis=1))))
    return summary


def misclassified(run: RunContext, settings: dict) -> tuple[dict, Optional[tuple]]:
    """(metrics section, (rows, integrated gradients for their predicted class, for their true class) or None) of
    the most confidently misclassified test rows (up to MAX_MISCLASSIFIED), and the most confused class pairs."""
    scored = run.scored
    wrong = np.flatnonzero(scored.y_pred != scored.y_true)
    shown = wrong[np.argsort(-scored.probabilities[wrong, scored.y_pred[wrong]], kind="stable")]
    mistakes = scored.subset(shown[:run.config.max_misclassified])
    figures = None
    if len(mistakes):
        ig = {"integrated_gradients": attributions.method_functions(settings)["integrated_gradients"]}
        figures = (mistakes, *[attributions.compute_maps(ig, run.model, mistakes.x,
                                                         torch.as_tensor(labels, device=mistakes.x.device),
                                                         mistakes.length_tensor)[0]["integrated_gradients"]
                               for labels in (mistakes.y_pred, mistakes.y_true)])
    shown_rows = [{**mistakes.describe(i), "true_class_probability": float(mistakes.probabilities[i, mistakes.y_true[i]])}
                  for i in range(len(mistakes))]
    return {"count": int(len(wrong)), "of": len(scored), "shown": shown_rows,
            "confused_pairs": confused_pairs(scored.y_true, scored.y_pred, scored.class_names)}, figures


def prediction_differences(model, x, maps: dict, config, background=None, background_lengths=None,
                           lengths=None) -> dict:
    """CPD and CPP (metrics/prediction_difference.py) of every map and of a seeded random map, the control, with
    zero fill and (given background rows) the background mean: {"methods": name -> fill -> {"cpd", "cpp"} means,
    "random_control": fill -> {"cpd", "cpp"}, "settings": what metrics.json says of them}; {} with CPD_FRACTION 0."""
    if not config.cpd_fraction:
        return {}
    start = time.perf_counter()
    fills = ("zero",) if background is None else ("zero", "background_mean")
    random_map = np.random.default_rng(config.seed).random(x.shape).astype(np.float32)
    per_sample = prediction_difference.prediction_difference(
        model, x, {**maps, RANDOM_CONTROL: random_map}, config.seed, fills, background, config.cpd_fraction,
        lengths, background_lengths, prediction_difference.MAX_REMOVALS)
    means = prediction_difference.summary(per_sample)
    return {"methods": {name: means[name] for name in maps}, "random_control": means[RANDOM_CONTROL],
            "settings": {"fraction": config.cpd_fraction, "max_removals": prediction_difference.MAX_REMOVALS,
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
    """method -> whether its deletion curve beats the random ordering, for metrics["attributions"]["methods"]."""
    return {name: m["deletion_auc_minus_random"]["better_than_random"] for name, m in methods.items()}


# -----------------------------------------------------------------------------
# Grad-CAM and attention
class GradCamStage(Stage):
    """One Grad-CAM figure per explained sample (target: its predicted class), all on one colour scale, titled with
    the attribution suite's deletion check of Grad-CAM when the suite ran it."""
    name, phase = "gradcam", "gradcam"

    def compute(self, run):
        model, samples = run.model, run.samples
        with attributions.GradCAM(model, model.gradcam_layer) as cam:
            maps = cam.attribute(samples.x, lengths=samples.length_tensor).cpu().numpy()
        members = ensemble_size(model)
        suite = run.results.get("attributions")
        checked = better_than_random(suite.metrics["attributions"]["methods"]) if suite else {}
        layer = "last conv block (conv2)" + (f" of each of the {members} networks, the mean of their maps"
                                             if members > 1 else "")
        return Result({"gradcam": {"layer": layer, "target": "predicted class", "num_explained": len(samples),
                                   "colour_scale": "one for all explained samples: 0 to the largest value of any",
                                   "better_than_random": checked.get("gradcam")}},
                      {"maps": maps, "members": members})

    def draw(self, result, run, path):
        gradcam_attention_figures.gradcam_figures(result.arrays["maps"], run.samples, path, result.arrays["members"],
                              result.metrics["gradcam"]["better_than_random"])


class AttentionStage(Stage):
    """Per-head attention heatmaps of every explained sample and the heads' statistics."""
    name, phase = "attention", "attention"

    def compute(self, run):
        model, samples = run.model, run.samples
        lengths = samples.length_tensor
        with attributions.AttentionRecorder(model.attention) as recorder:
            weights = recorder.record(model, samples.x, lengths=lengths).cpu()
        steps = None if lengths is None else model.pooled_lengths(lengths, samples.x.shape[2])[1].cpu().numpy()
        members = ensemble_size(model)
        return Result({"attention": {**attributions.attention_statistics(weights, steps), "networks": members}},
                      {"weights": weights.numpy(), "steps": steps, "members": members})

    def draw(self, result, run, path):
        a = result.arrays
        gradcam_attention_figures.attention_figures(a["weights"], run.samples, path, a["steps"], a["members"])


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


class CounterfactualStage(Stage):
    """A counterfactual per explained sample toward COUNTERFACTUAL_TARGET (or its most likely other class), guided
    by the SHAP stage's values of its predicted class's logit minus the target's: counterfactuals.npz, one figure
    per sample, metrics["counterfactuals"] (one entry per sample) and metrics["counterfactual_summary"]."""
    name, phase = "counterfactuals", "counterfactuals"

    def compute(self, run):
        start = time.perf_counter()
        config, samples, n = run.config, run.samples, len(run.samples)
        shap_values = run.results["shap"].arrays["values"]
        targets = counterfactuals.target_classes(samples.probabilities, counterfactuals.target_index(
            config.counterfactual_target, samples.class_names))
        contrasts = shap_values[np.arange(n), :, :, samples.y_pred] - shap_values[np.arange(n), :, :, targets]
        pool, pool_labels, pool_lengths = run.guides
        results = counterfactuals.counterfactuals(run.model, samples.x, targets, pool, pool_labels, contrasts,
                                                  config.counterfactual_budget, samples.own_lengths, pool_lengths)
        inputs = samples.inputs
        series = np.stack([r.series if r.found else np.full(inputs.shape[1:], np.nan, np.float32) for r in results])
        mask = np.stack([counterfactuals.stretch_mask(inputs.shape[1:], r.stretch) if r.found
                         else np.zeros(inputs.shape[1:], bool) for r in results])
        entries = [counterfactual_entry(samples, i, r, inputs[i]) for i, r in enumerate(results)]
        found = [e for e in entries if e["found"]]
        summary = {
            "method": "Native Guide: the smallest stretch (one channel or all) of the nearest training series of the "
                      "target class that the model predicts as it, copied into the sample",
            "target": config.counterfactual_target or "the most likely other class",
            "guides": f"{len(pool)} training rows" + (" labelled by the model (a checkpoint of an earlier version "
                                                     "carries its SHAP background only)" if pool_labels is None else ""),
            "budget": config.counterfactual_budget, "num_explained": n, "found_share": len(found) / n if n else None,
            "median_share_of_steps_changed": float(np.median([e["share_of_steps_changed"] for e in found]))
            if found else None, "seconds": time.perf_counter() - start}
        arrays = {"counterfactuals": series.astype(np.float32), "mask": mask, "inputs": inputs, "indices": samples.rows,
                  "targets": targets, "found": np.array([r.found for r in results]),
                  "predicted": np.array([-1 if r.predicted is None else r.predicted for r in results]),
                  "class_names": np.array(samples.class_names)}
        return Result({"counterfactuals": entries, "counterfactual_summary": summary}, arrays,
                      [f"counterfactuals: {len(found)} of {n} found"])

    def save(self, result, run, path):
        np.savez(path("counterfactuals.npz"), **result.arrays)

    def draw(self, result, run, path):
        a = result.arrays
        counterfactual_figures.counterfactual_figures(a["inputs"], a["counterfactuals"], a["mask"], result.metrics["counterfactuals"],
                                     run.samples, path)


# -----------------------------------------------------------------------------
# Trust in each prediction (hybrid_explain/trust/, docs/trust.md)
UNCALIBRATED = {"temperature": 1.0, "held_out_rows": 0}  # what a checkpoint without a trust state means
NO_TRUST_STATE = ("this checkpoint was written before the tool stored what calibration, prediction sets, "
                  "out-of-distribution flags and similar cases need: its probabilities are uncalibrated; train again "
                  "to get them")


class TrustStage(Stage):
    """Calibration (with labels: the calibration error before and after scaling and reliability.png), the prediction
    sets' size (and with labels coverage), the rows flagged out of distribution and, for each explained row, its
    nearest training rows (similar_cases_<i>.png); a checkpoint without a trust state says so. `fitted`: the
    checkpoint's trust state (hybrid_explain/trust/state.py), or None."""
    name, phase = "trust", "trust"

    def __init__(self, fitted):
        self.fitted = fitted

    def compute(self, run):
        fitted, scored, samples, config = self.fitted, run.scored, run.samples, run.config
        calibrated = trust_summary.calibration_summary(fitted or UNCALIBRATED, scored.probabilities, scored.y_true)
        if fitted is None:
            section = {"reason": NO_TRUST_STATE, "calibration": calibrated}
            return Result({"trust": section}, {"neighbours": []}, trust_lines(section))
        section = {"calibration": calibrated,
                   "conformal": trust_summary.conformal_summary(fitted, scored.trust["prediction_sets"], scored.y_true,
                                                                config.conformal_level),
                   "ood": trust_summary.ood_summary(fitted, scored.trust["ood_scores"], scored.trust["ood_flags"],
                                                    scored.rows, np.array(scored.class_names)[scored.y_pred].tolist(),
                                                    config.ood_false_alarm)}
        neighbours = []
        if len(samples) and config.similar_cases:
            features = representation.logits_and_features(run.model, samples.x, samples.lengths)[1].cpu().numpy()
            section["similar"] = trust_summary.similar_summary(fitted, features, samples.y_pred, samples.class_names,
                                                               config.similar_cases)
            neighbours = [entry.pop("case_indices") for entry in section["similar"]]
        return Result({"trust": section}, {"neighbours": neighbours}, trust_lines(section))

    def draw(self, result, run, path):
        section, fitted, samples = result.metrics["trust"], self.fitted, run.samples
        calibrated = section["calibration"]
        if run.scored.labelled:
            trust_figures.reliability_figure(calibrated["reliability_before"],
                                             calibrated["reliability_after"] if calibrated["calibrated"] else None,
                                             calibrated["ece_before"], calibrated["ece_after"], path("reliability.png"))
        for i, (entry, order) in enumerate(zip(section.get("similar", []), result.arrays["neighbours"])):
            trust_figures.similar_cases_figure(
                samples.inputs[i], base.own_steps(samples, i), base.sample_heading(samples, i),
                fitted["case_series"][order].numpy(), fitted["case_lengths"][order].numpy(),
                [f"training row {n['training_row']}: {n['label']}, distance {n['distance']:.3g}"
                 for n in entry["neighbours"]], samples.channel_names, path(f"similar_cases_{i}.png"))


def trust_lines(section) -> list[str]:
    """The trust section in a few log lines."""
    calibration = section["calibration"]
    measured = "" if "ece_before" not in calibration else (
        f"; ECE {calibration['ece_before']:.3f} before, {calibration['ece_after']:.3f} after" if calibration["calibrated"]
        else f"; ECE {calibration['ece_before']:.3f}") + f" on {calibration.get('rows')} labelled rows"
    lines = [f"calibration: temperature {calibration['temperature']:.3f} from {calibration['held_out_rows']} held-out "
             f"rows{measured}" if calibration["calibrated"] else
             f"calibration: none, the probabilities are uncalibrated (no held-out rows to fit a temperature){measured}"]
    if "reason" in section:
        return [f"trust: {section['reason']}"] + lines
    sets, found = section["conformal"], section["ood"]
    if sets["threshold"] is None:
        lines.append(f"prediction sets: every class in every set ({sets['held_out_rows']} held-out rows, fewer than the "
                     f"{sets['held_out_rows_needed']} that level {sets['level']} needs)")
    else:
        lines.append(f"prediction sets at level {sets['level']}: mean size {sets['mean_set_size']:.2f}"
                     + (f", coverage {sets['coverage']:.3f}" if "coverage" in sets else ""))
    lines.append(f"out of distribution: {found['flagged']} of {found['rows']} rows flagged ({found['score']}, "
                 f"{found['false_alarm_rate']:.0%} of training rows above the threshold)")
    return lines


# -----------------------------------------------------------------------------
# The baseline beside the network (BASELINE)
class BaselineStage(Stage):
    """metrics["baseline"]: the baseline's accuracy, macro F1, seconds and agreement with the network on the same
    test rows (baseline.baseline_summary); a note when a reused checkpoint left no training file to fit it on.
    `fitted`: train_explain.fitted_baseline's, or None."""
    name, phase = "baseline", "evaluate"

    def __init__(self, fitted):
        self.fitted = fitted

    def applies(self, run):
        return bool(run.config.baseline)

    def compute(self, run):
        scored = run.scored
        if self.fitted is None:
            return Result({"baseline": {"classifier": run.config.baseline, "skipped": (
                "--train=False: the baseline is fitted on the training file, which a reused checkpoint's run does "
                "not read")}})
        return Result({"baseline": baseline.baseline_summary(scored.y_true if scored.labelled else None, scored.y_pred,
                                                             self.fitted["predictions"], len(scored.class_names),
                                                             self.fitted["seconds"])})


def explanation_stages(methods: list[str]) -> list[Stage]:
    """The explanation stages in the order they run. The attribution suite runs before Grad-CAM, whose figures say
    when the suite's deletion check finds Grad-CAM no better than random; the counterfactuals read SHAP's values."""
    return [ShapStage(), GlobalStage(), AttributionStage(methods), GradCamStage(), AttentionStage(),
            CounterfactualStage()]
