"""The run's summary figures: training curves, the confusion matrix and example rows of the training table."""
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from hybrid_explain.figures import drawing
from hybrid_explain.figures.base import CATEGORICAL, MAX_FIGURE_INCHES, category_style, save, wrapped
from hybrid_explain.figures.strips import envelope, step_axis_label


@drawing.in_background
def training_curves(history, best_epoch, path_stem):
    """Loss and accuracy per epoch for the training and (when there is one) validation parts, as PNG and EPS."""
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric, label in zip(axes, ["loss", "accuracy"], ["cross-entropy loss", "accuracy"]):
        ax.plot(epochs, [row[f"train_{metric}"] for row in history], label="training", **category_style(0))
        validation = [row[f"val_{metric}"] for row in history]
        if not np.isnan(validation).all():  # VAL_FRACTION=0 has no validation part to draw
            ax.plot(epochs, validation, label="validation", color=CATEGORICAL[1])
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"kept: epoch {best_epoch}")
        ax.set(xlabel="epoch", ylabel=label, title=f"{label.capitalize()} per epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(color="#e0e0e0")
        ax.legend(loc="best", framealpha=1)  # opaque: the EPS backend has no transparency
    fig.tight_layout()
    fig.savefig(f"{path_stem}.eps", format="eps", bbox_inches="tight")
    save(fig, f"{path_stem}.png")


@drawing.in_background
def confusion_matrix_figure(matrix, class_names, path):
    import seaborn as sns

    # The figure grows with the classes up to MAX_FIGURE_INCHES (its pixels would grow as their square), where
    # the cells stop having room for a name: class indices then label every few rows.
    size = min(max(4.5, 0.55 * len(class_names) + 2.5), MAX_FIGURE_INCHES)
    named = 0.55 * len(class_names) + 2.5 <= MAX_FIGURE_INCHES
    fig, ax = plt.subplots(figsize=(size + 1, size))
    sns.heatmap(matrix, annot=len(class_names) <= 20, fmt="d", cmap="Blues",
                xticklabels=class_names if named else "auto", yticklabels=class_names if named else "auto",
                cbar_kws={"label": "test samples"}, ax=ax, square=True)
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"Test confusion matrix ({np.trace(matrix)}/{matrix.sum()} correct)")
    ax.tick_params(axis="x", rotation=45)
    ax.tick_params(axis="y", rotation=0)
    plt.setp(ax.get_xticklabels(), ha="right", rotation_mode="anchor")
    save(fig, path)


@drawing.in_background
def example_series_figure(X, y, class_names, channel_names, path, per_class=3, max_classes=6, max_channels=12,
                          feature_names=None, source="Training data", grouping="", counts=None):
    """A few training series per class: rows = channels (raw values, one y scale per row), columns = classes.
    A table's rows are drawn as dots per named feature, with no line joining unrelated features. counts (K,): the
    rows of each class in the whole file, when X holds only some of them (None: X's own)."""
    counts = np.bincount(y, minlength=len(class_names)) if counts is None else counts
    shown_classes = [k for k in range(len(class_names)) if np.any(y == k)][:max_classes]
    channels = min(X.shape[1], max_channels)
    length = X.shape[2]
    width = max(6.0, 1.75 * len(shown_classes) + 1.4)
    fig, axes = plt.subplots(channels, len(shown_classes), sharex=True, sharey="row", squeeze=False,
                             figsize=(width, 0.7 * channels + 1.3), layout="constrained")
    for j, k in enumerate(shown_classes):
        rows = np.flatnonzero(y == k)[:per_class]
        for c in range(channels):
            ax = axes[c, j]
            for r, row in enumerate(rows):
                steps, values = envelope(X[row, c])
                ax.plot(steps, values, linewidth=0.9, color=CATEGORICAL[r % len(CATEGORICAL)],
                        marker="o" if length == 1 or feature_names is not None else None,
                        linestyle="none" if feature_names is not None else "-", markersize=4)
            ax.yaxis.set_major_locator(MaxNLocator(3))
            if feature_names is None:
                ax.xaxis.set_major_locator(MaxNLocator(4, integer=True, min_n_ticks=1))
            else:
                step = max(1, -(-len(feature_names) // 12))
                ax.set_xticks(range(0, length, step), feature_names[::step], rotation=45, ha="right",
                              rotation_mode="anchor")
            ax.tick_params(labelsize=8)
            if j == 0:
                ax.set_ylabel(channel_names[c], rotation=0, ha="right", va="center")
        axes[0, j].set_title(wrapped(f"{grouping}{class_names[k]}\n({int(counts[k])} rows)", 1.75, 10),
                             fontsize=10)
        axes[-1, j].set_xlabel(step_axis_label(feature_names))
    hidden = []
    if len(shown_classes) < len(class_names):
        hidden.append(f"first {len(shown_classes)} of {len(class_names)} classes")
    if channels < X.shape[1]:
        hidden.append(f"first {channels} of {X.shape[1]} channels")
    fig.suptitle(wrapped(f"{source}: the first {per_class} {'series' if feature_names is None else 'rows'} of "
                         f"each {grouping}class, raw values as in the CSV"
                         + (f" ({', '.join(hidden)})" if hidden else ""), width), fontsize=11)
    save(fig, path)
