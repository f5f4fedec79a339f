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


# -----------------------------------------------------------------------------
# Attribution suite (attributions.py): several methods' maps for the predicted class
def unit_scaled(attribution):
    """The map divided by its largest |value|: methods in different units share one colour scale."""
    bound = float(np.abs(attribution).max())
    return attribution / bound if bound > 0 else attribution


def sample_verdict(i, y_true, y_pred, probabilities, class_names):
    pred, true = int(y_pred[i]), int(y_true[i])
    return (f"true {class_names[true]}, predicted {class_names[pred]} (p = {probabilities[i, pred]:.2f}, "
            f"{'correct' if pred == true else 'WRONG'})")


def attribution_grid_figure(signals, attributions, titles, channel_names, title, colorbar_label, path, columns=4):
    """Many maps of one sample on one colour scale: each map (C, L) is a column of channel panels, and the
    columns wrap into blocks of `columns`, so eight methods x twelve channels stay legible.
    signals (C, L); attributions: list of (C, L) arrays titled by `titles`."""
    channels, length = signals.shape
    columns = min(columns, len(titles))
    blocks = -(-len(titles) // columns)
    ratios = ([1.0] * channels + [1.8]) * blocks  # a spacer row holds x labels and the next titles
    ratios = ratios[:-1]
    width, height = 3.7 * columns + 2.0, 0.55 * sum(ratios) + 1.3
    grid = plt.GridSpec(len(ratios), columns, height_ratios=ratios, hspace=0.3, wspace=0.18, left=1.0 / width,
                        right=1 - 1.2 / width, top=1 - 0.9 / height, bottom=0.45 / height)
    fig = plt.figure(figsize=(width, height))
    bound = max(float(np.abs(a).max()) for a in attributions) or 1.0
    for k, (column, attribution) in enumerate(zip(titles, attributions)):
        block, j = divmod(k, columns)
        axes = [fig.add_subplot(grid[block * (channels + 1) + c, j]) for c in range(channels)]
        for c, ax in enumerate(axes):
            image = signal_with_attribution(ax, signals[c], attribution[c], (-bound, bound), SIGNED_CMAP,
                                            channel_names[c] if j == 0 else "")
            ax.tick_params(labelbottom=c == channels - 1)
        axes[0].set_title(column, fontsize=10)
        axes[-1].set_xlabel("time step", fontsize=9)
    fig.colorbar(image, cax=fig.add_axes((1 - 0.95 / width, 0.2, 0.15 / width, 0.6)), label=colorbar_label)
    fig.suptitle(title, fontsize=11, y=1 - 0.15 / height, va="top")
    save(fig, path)


def method_sample_figures(maps, inputs, y_true, y_pred, probabilities, class_names, channel_names, path):
    """maps: method -> (N, C, L). Per sample one figure with every method, each map scaled to [-1, 1]."""
    for i in range(len(inputs)):
        attribution_grid_figure(inputs[i], [unit_scaled(m[i]) for m in maps.values()], list(maps), channel_names,
                                f"Attribution for the predicted class, explained sample {i}: "
                                f"{sample_verdict(i, y_true, y_pred, probabilities, class_names)}\n"
                                "each method scaled to its largest |value|; red supports the predicted class, "
                                "blue opposes it (saliency and Grad-CAM are unsigned)",
                                "attribution / its largest |value|", path(f"attribution_sample_{i}.png"))


def line_comparison(ax, x, series, names, xlabel, ylabel, reference=None, reference_name=None):
    """One coloured line per named series, and an optional black dashed reference (e.g. a random control)."""
    colors = plt.get_cmap("tab10")
    for k, (values, name) in enumerate(zip(series, names)):
        ax.plot(x, values, color=colors(k % 10), label=name, linewidth=1.4)
    if reference is not None:
        ax.plot(x, reference, color="black", linestyle="--", linewidth=1.4, label=reference_name)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(color="#e0e0e0")
    ax.legend(fontsize=8, loc="best", framealpha=0.9)


def method_overlay_figure(maps, i, y_true, y_pred, probabilities, class_names, segments, path):
    """Sample i: |attribution| summed over channels, scaled to a peak of 1, per method over time;
    named segments (name, start, end) shaded."""
    length = next(iter(maps.values())).shape[2]
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for k, (name, start, end) in enumerate(segments):
        ax.axvspan(start - 0.5, end - 0.5, color="#f0f0f0" if k % 2 else "#e0e0e0", zorder=0)
        ax.text((start + end - 1) / 2, 1.04, name, ha="center", va="bottom", fontsize=8)
    line_comparison(ax, np.arange(length), [unit_scaled(np.abs(m[i]).sum(axis=0)) for m in maps.values()], list(maps),
                    "time step", "|attribution| summed over channels\n(scaled to a peak of 1)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_ylim(0, 1.12)
    ax.set_title(f"Methods compared on explained sample {i}: "
                 f"{sample_verdict(i, y_true, y_pred, probabilities, class_names)}", fontsize=10)
    save(fig, path)


def method_comparison_figure(summary, random_control, sanity_threshold, path):
    """summary: method -> metrics of attributions.attribution_outputs. Deletion and insertion areas beside the
    random ordering, the randomization sanity correlation beside its threshold, and the seconds per method."""
    names = list(summary)
    panels = [("deletion_auc", "deletion AUC (lower = more faithful)", random_control["deletion_auc"],
               "random ordering"),
              ("insertion_auc", "insertion AUC (higher = more faithful)", random_control["insertion_auc"],
               "random ordering"),
              ("sanity_rank_correlation", "rank correlation with the\nrandomized model's maps (lower = better)",
               sanity_threshold, "flag threshold"),
              ("seconds", "seconds for all explained samples", None, None)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 0.4 * len(names) + 1.8), sharey=True)
    for ax, (key, label, reference, reference_name) in zip(axes, panels):
        values = np.array([np.nan if summary[m][key] is None else summary[m][key] for m in names], dtype=float)
        bar_comparison(ax, names, [np.nan_to_num(values)], [label], label)
        ax.get_legend().remove()
        for k, value in enumerate(values):
            flag = " flagged" if key == "sanity_rank_correlation" and summary[names[k]]["insensitive_to_model"] else ""
            ax.text(0 if np.isnan(value) else value, k, " n/a" if np.isnan(value) else f" {value:.2f}{flag}",
                    va="center", fontsize=8)
        if reference is not None:
            ax.axvline(reference, color="black", linestyle="--", label=f"{reference_name} ({reference:.2f})")
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22 - 0.1 * ("\n" in label)))
        ax.set_xlim(0, 1.35 * max(np.nanmax(values, initial=0), reference or 0) or 1)
    fig.suptitle("Attribution methods compared: faithfulness (deletion, insertion), sanity and cost", fontsize=11)
    fig.tight_layout()
    save(fig, path)


def region_figure(matrices, channel_names, column_labels, regions, num_samples, path):
    """matrices: method -> (C, R) mean signed share of attribution per channel and region; one heatmap per method."""
    names = list(matrices)
    columns = 2 if len(names) > 1 else 1
    grid_rows = -(-len(names) // columns)
    channels, width = next(iter(matrices.values())).shape
    fig, axes = plt.subplots(grid_rows, columns, figsize=(max(5.5, 0.45 * width + 2.5) * columns,
                                                          (0.28 * channels + 1.6) * grid_rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        bound = float(np.abs(matrices[name]).max()) or 1.0
        heatmap(ax, matrices[name], channel_names, column_labels, SIGNED_CMAP, (-bound, bound),
                "signed share of |attribution|")
        ax.set_title(name, fontsize=10)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(f"Attribution per channel and {regions}: each sample's map divided by its total |attribution|, "
                 f"mean over {num_samples} explained samples (red supports the predicted class)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    save(fig, path)


def faithfulness_figure(fractions, deletion, insertion, random_deletion, random_insertion, summary, random_control,
                        num_samples, path):
    """deletion, insertion: method -> mean curve over the fractions of features deleted / inserted."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, curves, key, verb in [(axes[0], deletion, "deletion_auc", "set to the baseline"),
                                  (axes[1], insertion, "insertion_auc", "restored from the baseline")]:
        line_comparison(ax, fractions, list(curves.values()),
                        [f"{name} (AUC {summary[name][key]:.2f})" for name in curves],
                        f"fraction of features {verb}, most attributed first",
                        "probability of the predicted class",
                        random_deletion if key == "deletion_auc" else random_insertion,
                        f"random ordering (AUC {random_control[key]:.2f})")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{key.split('_')[0].capitalize()} curves ({'lower' if key == 'deletion_auc' else 'higher'} "
                     f"area = more faithful), mean of {num_samples} samples", fontsize=10)
    fig.tight_layout()
    save(fig, path)


def misclassified_figures(inputs, predicted_maps, true_maps, y_true, y_pred, probabilities, rows, class_names,
                          channel_names, path):
    """Per misclassified sample: integrated gradients for the predicted and for the true class, one colour scale."""
    for k in range(len(inputs)):
        pred, true = int(y_pred[k]), int(y_true[k])
        attribution_figure(inputs[k], [predicted_maps[k], true_maps[k]],
                           [f"predicted class {class_names[pred]} (p = {probabilities[k, pred]:.2f})",
                            f"true class {class_names[true]} (p = {probabilities[k, true]:.2f})"], channel_names,
                           f"Misclassified test row {rows[k]}: integrated gradients for the predicted and the true "
                           "class; red raises the class logit, blue lowers it",
                           "integrated gradients (logit units)", path(f"misclassified_{k}.png"))
