"""Figures of the pipeline. One helper per kind of figure (signal with an attribution strip, heatmap,
bar comparison), shared by SHAP, Grad-CAM and attention. Figures never run the model: they draw
arrays the pipeline computed. Signed attributions use a diverging, colour-blind-safe map centred
on zero; non-negative maps (Grad-CAM, attention) a sequential one."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 120
SIGNED_CMAP = "RdBu_r"  # red = pushes towards the class, blue = away; colour-blind safe
POSITIVE_CMAP = "viridis"
MAX_DRAWN_STEPS = 1000  # longer series are thinned for drawing only; every value was computed


def save(fig, path):
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def training_curves(history, best_epoch, path_stem):
    """Loss and accuracy per epoch for the training and validation parts, as PNG and EPS."""
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric, label in zip(axes, ["loss", "accuracy"], ["cross-entropy loss", "accuracy"]):
        ax.plot(epochs, [row[f"train_{metric}"] for row in history], label="training")
        ax.plot(epochs, [row[f"val_{metric}"] for row in history], label="validation")
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"kept: epoch {best_epoch}")
        ax.set(xlabel="epoch", ylabel=label, title=f"{label.capitalize()} per epoch")
        ax.grid(color="#e0e0e0")
        ax.legend(loc="best", fontsize=9, framealpha=1)  # opaque: the EPS backend has no transparency
    fig.tight_layout()
    fig.savefig(f"{path_stem}.eps", format="eps", bbox_inches="tight")
    save(fig, f"{path_stem}.png")


def confusion_matrix_figure(matrix, class_names, path):
    import seaborn as sns

    size = max(4.5, 0.6 * len(class_names) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", xticklabels=class_names, yticklabels=class_names,
                cbar_kws={"label": "test samples"}, ax=ax, square=True)
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"Test confusion matrix ({np.trace(matrix)}/{matrix.sum()} correct)")
    ax.tick_params(axis="x", rotation=45)
    ax.tick_params(axis="y", rotation=0)
    save(fig, path)


def drawn_steps(length):
    """Indices of the steps drawn: all of them up to MAX_DRAWN_STEPS, else evenly thinned."""
    return np.unique(np.linspace(0, length - 1, min(length, MAX_DRAWN_STEPS)).round().astype(int))


def signal_with_attribution(ax, signal, attribution, limits, cmap, channel_name):
    """One channel: the signal as a line over a colour strip of the attribution at each step."""
    steps = drawn_steps(len(signal))
    low, high = float(signal.min()), float(signal.max())
    pad = 0.1 * (high - low) + 1e-3
    image = ax.imshow(attribution[steps][None, :], aspect="auto", cmap=cmap, vmin=limits[0], vmax=limits[1],
                      extent=[-0.5, len(signal) - 0.5, low - pad, high + pad], interpolation="nearest")
    if len(signal) == 1:
        ax.plot([-0.5, 0.5], [signal[0]] * 2, color="black", linewidth=1.5)
    else:
        ax.plot(steps, signal[steps], color="black", linewidth=1.0)
    ax.set_ylabel(channel_name, rotation=0, ha="right", va="center", fontsize=9)
    ax.tick_params(labelsize=8)
    return image


def attribution_figure(signals, attributions, columns, channel_names, title, colorbar_label, path, signed=True):
    """Rows = channels, columns = attribution maps (e.g. for the predicted and the true class).
    signals (C, L); attributions: list of (C, L) arrays, one per column with `columns` titles."""
    channels, length = signals.shape
    fig, axes = plt.subplots(channels, len(columns), figsize=(6.5 * len(columns), 0.9 * channels + 1.6),
                             squeeze=False, sharex=True)
    bound = max(float(np.abs(a).max()) for a in attributions) or 1.0
    limits = (-bound, bound) if signed else (0.0, bound)
    cmap = SIGNED_CMAP if signed else POSITIVE_CMAP
    for j, (column, attribution) in enumerate(zip(columns, attributions)):
        for c in range(channels):
            image = signal_with_attribution(axes[c, j], signals[c], attribution[c], limits, cmap,
                                            channel_names[c] if j == 0 else "")
        axes[0, j].set_title(column, fontsize=10)
        axes[-1, j].set_xlabel("time step")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 0.9, 0.97))
    bar = fig.add_axes((0.92, 0.15, 0.015, 0.7))
    fig.colorbar(image, cax=bar, label=colorbar_label)
    save(fig, path)


def heatmap(ax, matrix, row_labels, column_labels, cmap, limits, colorbar_label, extent=None):
    image = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=limits[0], vmax=limits[1], interpolation="nearest",
                      extent=extent)
    if row_labels is not None:
        ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    if column_labels is not None:
        ax.set_xticks(range(len(column_labels)), column_labels, fontsize=8, rotation=45, ha="right")
    plt.colorbar(image, ax=ax, label=colorbar_label, fraction=0.046, pad=0.04)
    return image


def bar_comparison(ax, labels, series, series_names, xlabel):
    """Horizontal bars, one group per label, stacked by series (e.g. classes)."""
    left = np.zeros(len(labels))
    colors = plt.get_cmap("tab10")
    for k, (values, name) in enumerate(zip(series, series_names)):
        ax.barh(range(len(labels)), values, left=left, label=name, color=colors(k % 10))
        left += values
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=8, loc="lower right", title="class")


def window_edges(length, segments):
    return np.linspace(0, length, min(segments, length) + 1).round().astype(int)


def per_window(values, segments):
    """Sum (.., C, L, ...) attributions over `segments` time windows per channel -> (.., C, W, ...)."""
    edges = window_edges(values.shape[2], segments)
    return np.stack([values[:, :, a:b].sum(axis=2) for a, b in zip(edges[:-1], edges[1:])], axis=2), edges


def shap_figures(values, inputs, y_true, y_pred, class_names, channel_names, segments, path):
    """values (N, C, L, K). Summary bar of the top windows, a per-class heatmap, and per sample the values
    along each channel for the predicted and the true class."""
    n, channels, length, k = values.shape
    windows, edges = per_window(values, segments)  # (N, C, W, K)
    names = [f"{channel_names[c]} t{edges[w]}-{edges[w + 1] - 1}" for c in range(channels)
             for w in range(len(edges) - 1)]
    importance = np.abs(windows).mean(axis=0).reshape(-1, k)  # (C*W, K)
    top = np.argsort(importance.sum(1))[::-1][:15]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(top) + 1.6))
    bar_comparison(ax, [names[i] for i in top], importance[top].T, class_names,
                   "mean |SHAP value| over explained samples (logit units), stacked by class")
    ax.set_title(f"Most important channel x time windows ({n} explained test samples)")
    save(fig, path("shap_summary_bar.png"))

    mean_values = windows.mean(axis=0)  # (C, W, K)
    bound = float(np.abs(mean_values).max()) or 1.0
    fig, axes = plt.subplots(k, 1, figsize=(9, (0.3 * channels + 1.0) * k + 0.6), squeeze=False)
    for cls in range(k):
        ax = axes[cls, 0]
        heatmap(ax, mean_values[:, :, cls], channel_names, None, SIGNED_CMAP, (-bound, bound), "mean SHAP (logit)",
                extent=[0, length, channels - 0.5, -0.5])
        ax.set_yticks(range(channels), channel_names, fontsize=8)
        ax.set(title=f"class {class_names[cls]}: mean SHAP value per channel and time window", xlabel="time step")
    fig.tight_layout()
    save(fig, path("shap_summary_per_class.png"))

    for i in range(n):
        pred, true = int(y_pred[i]), int(y_true[i])
        columns = [f"predicted class {class_names[pred]}"]
        maps = [values[i, :, :, pred]]
        if true != pred:
            columns.append(f"true class {class_names[true]}")
            maps.append(values[i, :, :, true])
        verdict = "correct" if pred == true else "WRONG"
        attribution_figure(inputs[i], maps, columns, channel_names,
                           f"SHAP values, explained sample {i} (true {class_names[true]}, predicted "
                           f"{class_names[pred]}: {verdict}); red raises the class logit, blue lowers it",
                           "SHAP value (logit units)", path(f"shap_sample_{i}.png"))


def gradcam_figures(maps, inputs, y_true, y_pred, probabilities, class_names, channel_names, rows, path):
    """maps (N, L) non-negative Grad-CAM over time, drawn under every channel of each sample."""
    for i in range(len(maps)):
        pred, true = int(y_pred[i]), int(y_true[i])
        cam = np.broadcast_to(maps[i], inputs[i].shape)
        attribution_figure(inputs[i], [cam], [f"Grad-CAM for predicted class {class_names[pred]} "
                                              f"(p = {probabilities[i, pred]:.2f})"], channel_names,
                           f"Grad-CAM, explained sample {i} (test row {rows[i]}, true {class_names[true]})",
                           "Grad-CAM (last conv block)", path(f"gradcam_sample_{i}.png"), signed=False)


def attention_figures(attention, length, y_true, y_pred, class_names, rows, path):
    """attention (N, H, T, T): per sample one heatmap per head and their mean, axes in input time steps."""
    n, heads, t, _ = attention.shape
    for i in range(n):
        maps = list(attention[i]) + [attention[i].mean(axis=0)]
        titles = [f"head {h}" for h in range(heads)] + ["mean of heads"]
        columns = min(3, len(maps))
        grid_rows = -(-len(maps) // columns)
        fig, axes = plt.subplots(grid_rows, columns, figsize=(4.6 * columns, 4.0 * grid_rows), squeeze=False)
        for ax, matrix, title in zip(axes.ravel(), maps, titles):
            heatmap(ax, matrix, None, None, POSITIVE_CMAP, (0.0, float(matrix.max()) or 1.0), "attention weight",
                    extent=[0, length, length, 0])
            ax.set(title=title, xlabel="attended step (key)", ylabel="attending step (query)")
        for ax in axes.ravel()[len(maps):]:
            ax.axis("off")
        fig.suptitle(f"Self-attention, explained sample {i} (test row {rows[i]}, true {class_names[int(y_true[i])]}, "
                     f"predicted {class_names[int(y_pred[i])]}); {t} LSTM steps over {length} input steps", fontsize=10)
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        save(fig, path(f"attention_sample_{i}.png"))
