"""SHAP figures: the summary over the explained samples, per class, and each sample's values along its channels."""
import matplotlib.pyplot as plt
import numpy as np

from hybrid_explain.explainers.regions import span_label, span_sums, window_edges, window_spans
from hybrid_explain.figures import drawing
from hybrid_explain.figures.base import (MAX_CLASSES_DRAWN, SIGNED_CMAP, bar_comparison, grid_shape, own_steps,
                                         sample_heading, save)
from hybrid_explain.figures.strips import attribution_figure, step_axis_label


def shap_figures(values, samples, windows, path):
    """values (N, C, L, K). Summary bar of the top windows, a per-class heatmap, and per sample the values
    along each channel for the predicted and the true class. windows: the SHAP players per channel."""
    shap_summary_figures(values, samples, windows, path("shap_summary_bar.png"), path("shap_summary_per_class.png"))
    class_names, channel_names, features = samples.class_names, samples.channel_names, samples.feature_names
    for i in range(len(values)):
        pred = int(samples.y_pred[i])
        true = pred if samples.y_true is None else int(samples.y_true[i])
        columns = [f"for the predicted class {class_names[pred]}"]
        maps = [values[i, :, :, pred]]
        if true != pred:
            columns.append(f"for the true class {class_names[true]}")
            maps.append(values[i, :, :, true])
        steps = own_steps(samples, i)
        attribution_figure(samples.inputs[i][:, :steps], [m[:, :steps] for m in maps], columns, channel_names,
                           f"SHAP values, {sample_heading(samples, i)}\nred raises the logit, blue lowers it",
                           "SHAP value per step (logit units):\neach window's value spread\nequally over its steps",
                           path(f"shap_sample_{i}.png"), feature_names=features)


@drawing.in_background
def shap_summary_figures(values, samples, windows, bar_path, per_class_path):
    """values (N, C, L, K): the summary bar of the top windows and the per-class heatmap of mean values."""
    n, channels, length, k = values.shape
    class_names, channel_names, features = samples.class_names, samples.channel_names, samples.feature_names
    spans = window_spans(length, windows)
    per_window = span_sums(values, spans)  # (N, C, W, K): one value per SHAP player
    names = [f"{channel_names[c]} {span_label(a, b, features)}" if channels > 1 or features is None
             else span_label(a, b, features) for c in range(channels) for a, b in spans]
    importance = np.abs(per_window).mean(axis=0).reshape(-1, k)  # (C*W, K)
    top = np.argsort(importance.sum(1))[::-1][:15]
    # Figures grow with the classes drawn: the MAX_CLASSES_DRAWN with the largest values, the rest as one series.
    shown = np.sort(np.argsort(importance.sum(0))[::-1][:MAX_CLASSES_DRAWN])
    rest = np.setdiff1d(np.arange(k), shown)
    series = importance[top][:, shown].T
    series_names = [class_names[c] for c in shown]
    if len(rest):
        series = np.vstack([series, importance[top][:, rest].sum(1)])
        series_names.append(f"the other {len(rest)} classes")
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(top) + 1.5), layout="constrained")
    bar_comparison(ax, [names[i] for i in top], series, series_names,
                   "mean |SHAP value| over explained samples (logit units),\nstacked by class", legend_title="class")
    ax.set_title(f"Most important {'features' if features is not None else 'channel x time windows'} "
                 f"({n} explained test samples)")
    save(fig, bar_path)

    mean_values = per_window.mean(axis=0)[:, :, shown]  # (C, W, shown classes)
    drawn = f"; the {len(shown)} of {k} classes with the largest values" if len(rest) else ""
    class_names, k = [class_names[c] for c in shown], len(shown)
    bound = float(np.abs(mean_values).max()) or 1.0
    grid_rows, grid_columns = grid_shape(k, 1 if k <= 3 else 2 if k <= 8 else 3)
    fig, axes = plt.subplots(grid_rows, grid_columns, figsize=({1: 8.0, 2: 9.5, 3: 11.0}[grid_columns],
                                                               (0.2 * channels + 0.9) * grid_rows + 0.8),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    edges = window_edges(length, windows)
    for cls, ax in enumerate(axes.ravel()):
        if cls >= k:
            ax.axis("off")
            continue
        # pcolormesh on the window edges: each cell is exactly one SHAP player, drawn over its steps
        image = ax.pcolormesh(edges, np.arange(channels + 1) - 0.5, mean_values[:, :, cls], cmap=SIGNED_CMAP,
                              vmin=-bound, vmax=bound)
        ax.set_ylim(channels - 0.5, -0.5)
        ax.set_yticks(range(channels), channel_names, fontsize=8 if channels <= 12 else 6)
        if features is not None:
            ax.set_xticks((edges[:-1] + edges[1:]) / 2, [span_label(a, b, features) for a, b in spans],
                          rotation=45, ha="right", rotation_mode="anchor", fontsize=8)
        ax.set_title(f"class {class_names[cls]}", fontsize=10)
        if cls + grid_columns >= k:
            ax.set_xlabel(step_axis_label(features))
            ax.tick_params(labelbottom=True)
    fig.colorbar(image, ax=axes, label="mean SHAP value (logit units)", shrink=0.8 if grid_rows > 1 else 1.0)
    fig.suptitle(f"Mean SHAP value per channel and {'feature' if features is not None else 'time window'}, per "
                 f"class ({n} explained test samples{drawn});\nred raises the class logit, blue lowers it", fontsize=11)
    save(fig, per_class_path)
