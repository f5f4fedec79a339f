"""Global importance figures (explainers/global_importance.py): many rows, coarse players, with intervals."""
import matplotlib.pyplot as plt
import numpy as np

from hybrid_explain.figures import drawing
from hybrid_explain.figures.base import CATEGORICAL, SIGNED_CMAP, category_style, grid_shape, heatmap, save, wrapped

NO_INFORMATION_COLOR = "#bbbbbb"  # bars of groups whose evidence interval contains zero


def interval_errors(entries):
    """(mean, [mean - low, high - mean]) of {"mean", "low", "high"} entries; no interval draws no error bar."""
    mean = np.array([e["mean"] for e in entries])
    low = np.array([e["mean"] if e["low"] is None else e["low"] for e in entries])
    high = np.array([e["mean"] if e["high"] is None else e["high"] for e in entries])
    return mean, np.stack([mean - low, high - mean])


@drawing.in_background
def global_channel_figure(section, class_names, path):
    """Channels ranked by mean |evidence| over all rows with their intervals (grey: no measurable information),
    beside the same importance per predicted class."""
    overall = section["channel_importance"]
    names = sorted(overall, key=lambda c: -overall[c]["mean"])
    mean, errors = interval_errors([overall[c] for c in names])
    present = [k for k in class_names if k in section["per_class"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.32 * len(names) + 2.2), layout="constrained",
                                      gridspec_kw={"width_ratios": [1.3, max(1.0, 0.28 * len(present))]})
    colors = [CATEGORICAL[0] if overall[c]["informative"] is not False else NO_INFORMATION_COLOR for c in names]
    y = np.arange(len(names))
    left.barh(y, mean, xerr=errors, color=colors, capsize=3, error_kw={"linewidth": 1.0})
    for i, c in enumerate(names):
        if overall[c]["informative"] is False:
            left.text(mean[i] + errors[1, i], i, "  no measurable information", va="center", fontsize=8,
                      color="#555555")
    left.set_yticks(y, names, fontsize=9)
    left.set_ylim(len(names) - 0.5, -0.5)
    left.set_xlim(0, 1.35 * float((mean + errors[1]).max() or 1.0))
    left.grid(axis="x", color="#e0e0e0")
    left.set_axisbelow(True)
    left.set_xlabel("mean |Shapley value| of the channel (logit units)")
    left.set_title(f"Channels ranked, all {section['rows']} rows ({section['confidence']:.0%} intervals)",
                   fontsize=10)
    matrix = np.array([[section["per_class"][k]["channel_importance"][c]["mean"] for k in present] for c in names])
    heatmap(right, matrix, names, [wrapped(k + no_interval_note(section["per_class"][k]["rows"]), 1.2, 8)
                                   for k in present], "Reds", (0, float(matrix.max()) or 1.0), "mean |value|")
    for i, c in enumerate(names):
        for j, k in enumerate(present):
            if section["per_class"][k]["channel_importance"][c]["informative"] is False:
                right.text(j, i, "\u2205", ha="center", va="center", fontsize=12, color="#333333")
    right.set_title("per predicted class (\u2205 = no measurable information)", fontsize=10)
    fig.suptitle(wrapped("What the model relies on: Shapley value of each whole channel for the predicted class's "
                         "logit minus the mean logit; grey = no measurable information (the interval of its "
                         "contrast between the class's rows and the others contains zero)", 11), fontsize=11)
    save(fig, path)


def no_interval_note(rows) -> str:
    """" (n=1: no interval)" for a class explained by too few rows for an interval (global_importance), else ""."""
    from hybrid_explain.explainers.global_importance import MIN_INTERVAL_ROWS

    return f" (n={rows}: no interval)" if rows < MIN_INTERVAL_ROWS else ""


def class_heading(name, rows):
    """A class's panel title in the global figures."""
    return f"predicted {name}" + (no_interval_note(rows) or f" ({rows} rows)")


@drawing.in_background
def global_window_figure(section, class_means, positions, edges, axis_label, class_names, window_labels,
                         channel_names, feature_names, path, top_channels=3):
    """Per predicted class: mean |Shapley value| of each time window (bars between the window's edges, with
    intervals; grey = no measurable information) drawn over the class's mean signal of its top channels.
    class_means (K, C, P) at positions (P,), edges (W + 1,): on one axis, named axis_label (time steps, or per cent
    of each row's own length)."""
    present = [k for k, name in enumerate(class_names) if name in section["per_class"]]
    grid_rows, grid_columns = grid_shape(len(present), 1 if len(present) <= 2 else 2 if len(present) <= 6 else 3)
    fig, axes = plt.subplots(grid_rows, grid_columns, figsize=({1: 8.5, 2: 11.0, 3: 13.0}[grid_columns],
                                                               2.6 * grid_rows + 0.9), squeeze=False, layout="constrained")
    widths, starts = np.diff(edges), edges[:-1]
    centres = starts + widths / 2
    for ax, k in zip(axes.ravel(), present):
        entry = section["per_class"][class_names[k]]
        windows = [entry["window_importance"][label] for label in window_labels]
        mean, errors = interval_errors(windows)
        colors = ["#DDCC77" if w["informative"] is not False else NO_INFORMATION_COLOR for w in windows]
        # the class's mean signal behind, the importance bars on top (half transparent) with their intervals
        ranked = sorted(channel_names, key=lambda c: -entry["channel_importance"][c]["mean"])[:top_channels]
        for j, c in enumerate(ranked):
            ax.plot(positions, class_means[k, channel_names.index(c)], linewidth=1.0, alpha=0.8, label=c,
                    marker="o" if feature_names is not None else None, markersize=3,
                    **{**category_style(j), "linestyle": "-" if feature_names is None else "none"})
        ax.set_ylabel("class mean, z-scored (lines)", fontsize=8)
        ax.tick_params(labelsize=8)
        bars = ax.twinx()
        bars.bar(starts, mean, width=widths, align="edge", color=colors, alpha=0.55, edgecolor="#8a7a2a",
                 linewidth=0.8)
        if windows[0]["low"] is not None:  # one or two rows: no interval, and no caps that would suggest one
            bars.errorbar(centres, mean, yerr=errors, fmt="none", ecolor="black", capsize=2, linewidth=0.9)
        bars.set_ylim(0, 1.15 * float((mean + errors[1]).max() or 1.0))
        bars.set_ylabel("mean |value| (bars)", fontsize=8)
        bars.tick_params(labelsize=8)
        bars.legend(*ax.get_legend_handles_labels(), loc="upper left", fontsize=7, title="top channels",
                    title_fontsize=7, framealpha=0.85)
        ax.set_title(wrapped(class_heading(class_names[k], entry["rows"]), 4, 10), fontsize=10)
        if feature_names is not None:
            step = max(1, -(-len(feature_names) // 20))
            ax.set_xticks(range(0, len(feature_names), step), feature_names[::step], rotation=45, ha="right",
                          rotation_mode="anchor", fontsize=7)
        ax.set_xlabel(axis_label, fontsize=8)
        ax.set_xlim(edges[0], edges[-1])
    for ax in axes.ravel()[len(present):]:
        ax.axis("off")
    fig.suptitle(wrapped("Where in time the model looks, per predicted class: bars = mean |Shapley value| of each "
                         f"{'feature' if feature_names is not None else 'time window'} (all channels together) with "
                         f"{section['confidence']:.0%} intervals, grey = no measurable information; lines = the "
                         "class's mean signal of its most important channels", fontsize=11,
                         width_inches={1: 8.5, 2: 11.0, 3: 13.0}[grid_columns]), fontsize=11)
    save(fig, path)


@drawing.in_background
def global_map_figure(cell_map, edges, axis_label, channel_names, class_names, present, feature_names, rows, path):
    """cell_map (K, C, W): per predicted class the mean signed Shapley value of each channel x window cell, drawn
    between the windows' edges (W + 1,) on an axis named axis_label. present: class -> its section."""
    channels = cell_map.shape[1]
    shown = [k for k, name in enumerate(class_names) if name in present]
    bound = float(np.abs(cell_map[shown]).max()) or 1.0
    grid_rows, grid_columns = grid_shape(len(shown), 1 if len(shown) <= 3 else 2 if len(shown) <= 8 else 3)
    fig, axes = plt.subplots(grid_rows, grid_columns, figsize=({1: 8.0, 2: 9.5, 3: 11.0}[grid_columns],
                                                               (0.2 * channels + 0.9) * grid_rows + 0.8),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    for ax, k in zip(axes.ravel(), shown):
        image = ax.pcolormesh(edges, np.arange(channels + 1) - 0.5, cell_map[k], cmap=SIGNED_CMAP, vmin=-bound,
                              vmax=bound)
        ax.set_ylim(channels - 0.5, -0.5)
        ax.set_yticks(range(channels), channel_names, fontsize=8 if channels <= 12 else 6)
        ax.set_title(class_heading(class_names[k], present[class_names[k]]["rows"]), fontsize=10)
        ax.set_xlabel(axis_label, fontsize=9)
        ax.tick_params(labelbottom=True)
    for ax in axes.ravel()[len(shown):]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, label="mean Shapley value (logit units)", shrink=0.8 if grid_rows > 1 else 1.0)
    fig.suptitle(f"Mean Shapley value per channel x {'feature' if feature_names is not None else 'time window'} "
                 f"for the predicted class, per class ({rows} rows);\nred raises the class's logit above the "
                 "mean logit, blue lowers it", fontsize=11)
    save(fig, path)


def global_figures(section, class_means, positions, edges, axis_label, cell_map, channel_names, class_names,
                   window_labels, feature_names, path):
    """global_channels.png, global_windows_per_class.png and global_map_per_class.png; positions, edges and
    axis_label as global_window_figure takes them."""
    global_channel_figure(section, class_names, path("global_channels.png"))
    global_window_figure(section, class_means, positions, edges, axis_label, class_names, window_labels,
                         channel_names, feature_names, path("global_windows_per_class.png"))
    global_map_figure(cell_map, edges, axis_label, channel_names, class_names, section["per_class"], feature_names,
                      section["rows"], path("global_map_per_class.png"))


@drawing.in_background
def explained_rows_figure(per_class: dict, channel_names, window_labels, rows: int, path):
    """Every explained row (EXPLAIN_ROWS="all", pipeline/parts.py): per predicted class, the share of its rows whose
    largest |SHAP value| is in each channel (left) and in each time window (right)."""
    classes = list(per_class)
    channel_share = np.array([[per_class[k]["top_channel"][c] / per_class[k]["rows"] for c in channel_names]
                              for k in classes])
    window_share = np.array([[per_class[k]["top_window"][w] / per_class[k]["rows"] for w in window_labels]
                             for k in classes])
    height = 0.35 * len(classes) + 2.4
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, height), layout="constrained",
                                      gridspec_kw={"width_ratios": [max(1.0, 0.3 * len(channel_names)),
                                                                    max(1.0, 0.3 * len(window_labels))]})
    labels = [f"{k} ({per_class[k]['rows']})" for k in classes]
    heatmap(left, channel_share, labels, channel_names, "Blues", (0, 1))
    heatmap(right, window_share, None, window_labels, "Blues", (0, 1), "share of the class's rows")
    left.set(title="top channel", ylabel="predicted class (rows)")
    right.set(title="top time window (all channels)")
    right.set_yticks([])
    fig.suptitle(wrapped(f"Where SHAP puts each row's largest evidence: {rows:,} explained rows, by predicted class",
                         12), fontsize=11)
    save(fig, path)
