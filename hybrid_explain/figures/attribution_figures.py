"""The attribution suite's figures (explainers/attributions.py): several methods' maps for the predicted class,
their comparison, regions, the faithfulness curves and the misclassified rows."""
import matplotlib.pyplot as plt
import numpy as np

from hybrid_explain.figures import drawing
from hybrid_explain.figures.base import (NO_BETTER_THAN_RANDOM, SIGNED_CMAP, bar_comparison, grid_shape, heatmap,
                                         line_comparison, own_steps, probability, sample_heading, save, signal_note)
from hybrid_explain.figures.strips import attribution_figure, attribution_grid_figure, drawing_bins


def unit_scaled(attribution):
    """The map divided by its largest |value|: methods in different units share one colour scale."""
    bound = float(np.abs(attribution).max())
    return attribution / bound if bound > 0 else attribution


def method_sample_figures(maps, methods, samples, path, unfaithful=()):
    """maps: method -> (N, C, L); methods: name -> attributions.Method (its label and whether it is signed). Per
    sample one figure with every method, each map scaled to its largest |value|. unfaithful: the methods whose
    deletion curve is no better than random on this run, said in their panels' titles."""
    names = list(maps)
    signed = [methods[name].signed for name in names]
    unsigned = [methods[name].label for name, s in zip(names, signed) if not s]
    titles = [methods[name].label + ("\n(no better than random)" if name in unfaithful else "") for name in names]
    warning = (f"\n{', '.join(methods[name].label for name in names if name in unfaithful)}: deletion curve "
               f"{NO_BETTER_THAN_RANDOM}" if any(name in unfaithful for name in names) else "")
    for i in range(len(samples)):
        steps = own_steps(samples, i)
        attribution_grid_figure(samples.inputs[i][:, :steps], [unit_scaled(maps[name][i][:, :steps]) for name in names],
                                titles, signed, samples.channel_names,
                                f"Attribution for the predicted class, {sample_heading(samples, i)}\n"
                                "each method scaled to its largest |value|; red supports the predicted class, blue "
                                "opposes it" + (f"\n(unsigned, white to red: {', '.join(unsigned)}); " if unsigned
                                                else "; ") + signal_note(samples.feature_names) + warning,
                                path(f"attribution_sample_{i}.png"), feature_names=samples.feature_names)


@drawing.in_background
def method_overlay_figure(maps, samples, i, segments, path):
    """Sample i: |attribution| summed over channels, scaled to a peak of 1, per method over time;
    named segments (name, start, end) shaded. Long series are drawn as bin maxima; a table's features as
    grouped bars."""
    length = own_steps(samples, i)
    curves = [unit_scaled(np.abs(m[i][:, :length]).sum(axis=0)) for m in maps.values()]
    fig, ax = plt.subplots(figsize=(10, 4.0), layout="constrained")
    ylabel = "|attribution| summed over channels\n(scaled to a peak of 1)"
    if samples.feature_names is not None:
        bar_comparison(ax, samples.feature_names, curves, list(maps), ylabel, stacked=False)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, clear of the axis label
        ax.set_xlim(0, 1.12)
    else:
        edges = drawing_bins(length)
        for k, (name, start, end) in enumerate(segments):
            ax.axvspan(start - 0.5, end - 0.5, color="#f0f0f0" if k % 2 else "#e0e0e0", zorder=0)
            ax.text((start + end - 1) / 2, 1.04, name, ha="center", va="bottom", fontsize=8)
        line_comparison(ax, edges[:-1], [np.maximum.reduceat(c, edges[:-1]) for c in curves], list(maps),
                        "time step", ylabel, legend_outside=True)
        ax.set_ylim(0, 1.12)
    ax.set_title(f"Methods compared on {sample_heading(samples, i)}")
    save(fig, path)


@drawing.in_background
def method_comparison_figure(summary, random_control, sanity_threshold, path):
    """summary: method -> metrics of attributions.attribution_outputs. Deletion and insertion areas beside the
    random ordering, the randomization sanity correlations beside their threshold, and the seconds per method."""
    names = list(summary)
    panels = [(["deletion_auc"], "Deletion AUC (lower = more faithful; red: no clear gain over\nthe random "
                                 "ordering, judged sample by sample)", random_control["deletion_auc"],
               "random ordering"),
              (["insertion_auc"], "Insertion AUC (higher = more faithful)", random_control["insertion_auc"],
               "random ordering"),
              (["sanity_rank_correlation", "sanity_signed_rank_correlation"],
               "Rank correlation with a weight-randomized model's maps\n(lower = better; flagged when both bars "
               "exceed the line)", sanity_threshold, "threshold"),
              (["seconds"], "Seconds for all explained samples", None, None)]
    fig, axes = plt.subplots(2, 2, figsize=(11, 2 * (0.34 * len(names) + 1.6) + 0.4), sharey=True,
                             layout="constrained")
    for ax, (keys, title, reference, reference_name) in zip(axes.ravel(), panels):
        values = np.array([[np.nan if summary[m].get(key) is None else summary[m][key] for m in names]
                           for key in keys], dtype=float)
        legend = ["|attribution|", "signed attribution"] if len(keys) > 1 else [title]
        positions = bar_comparison(ax, names, list(np.nan_to_num(values)), legend, "", stacked=False)
        high = max(np.nanmax(values, initial=0), reference or 0) or 1.0
        low = min(np.nanmin(values, initial=0), 0)
        ax.set_xlim(low - 0.25 * high * (low < 0), 1.3 * high)
        for series, ys in zip(values, positions):
            for k, (value, y) in enumerate(zip(series, ys)):
                insensitive = len(keys) > 1 and bool(summary[names[k]].get("insensitive_to_model"))
                random_like = keys == ["deletion_auc"] and not summary[names[k]]["deletion_auc_minus_random"][
                    "better_than_random"]
                flagged = insensitive or random_like
                text = " not checked" if np.isnan(value) else f" {value:.2f}" + (
                    " flagged" if insensitive else " no better than random" if random_like else "")
                ax.text(0 if np.isnan(value) else max(value, 0), y, text, va="center", fontsize=8,
                        color="#b2182b" if flagged else "black",
                        bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.3, "alpha": 0.8})
        if reference is not None:
            ax.axvline(reference, color="black", linestyle="--", linewidth=1.5)
            title += f"\ndashed: {reference_name} ({reference:.2f})"
        ax.set_title(title, fontsize=10)
    fig.suptitle("Attribution methods compared: faithfulness (deletion, insertion), sanity and cost", fontsize=11)
    save(fig, path)


@drawing.in_background
def region_figure(matrices, channel_names, column_labels, regions, num_samples, path):
    """matrices: method -> (C, R) mean signed share of attribution per channel and region; one heatmap per method."""
    names = list(matrices)
    grid_rows, columns = grid_shape(len(names), 2)
    channels, width = next(iter(matrices.values())).shape
    fig, axes = plt.subplots(grid_rows, columns, figsize=(max(4.5, 0.38 * width + 2.4) * columns,
                                                          (0.2 * channels + 1.3) * grid_rows + 0.5),
                             squeeze=False, layout="constrained")
    for ax, name in zip(axes.ravel(), names):
        bound = float(np.abs(matrices[name]).max()) or 1.0
        heatmap(ax, matrices[name], channel_names, column_labels, SIGNED_CMAP, (-bound, bound), "share")
        ax.set_title(name, fontsize=10)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(f"Attribution per channel and {regions}: each sample's map divided by its total |attribution|,\n"
                 f"mean over {num_samples} explained samples (red supports the predicted class; "
                 "each method has its own colour scale)", fontsize=11)
    save(fig, path)


@drawing.in_background
def faithfulness_figure(fractions, deletion, insertion, random_deletion, random_insertion, summary, random_control,
                        num_samples, path):
    """deletion, insertion: method -> mean curve over the fractions of features deleted / inserted."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    for ax, curves, key, verb in [(axes[0], deletion, "deletion_auc", "set to the baseline"),
                                  (axes[1], insertion, "insertion_auc", "restored from the baseline")]:
        line_comparison(ax, fractions, list(curves.values()),
                        [f"{name} (AUC {summary[name][key]:.2f}"
                         + (", no better than random)" if key == "deletion_auc" and not summary[name][
                             "deletion_auc_minus_random"]["better_than_random"] else ")") for name in curves],
                        f"fraction of features {verb},\nmost attributed first",
                        "probability of the predicted class",
                        random_deletion if key == "deletion_auc" else random_insertion,
                        f"random ordering (AUC {random_control[key]:.2f})")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{key.split('_')[0].capitalize()} curves ({'lower' if key == 'deletion_auc' else 'higher'} "
                     f"area = more faithful)", fontsize=10)
    fig.suptitle("Faithfulness: the predicted class's probability as features are removed or added, "
                 f"mean of {num_samples} samples", fontsize=11)
    save(fig, path)


def misclassified_figures(mistakes, predicted_maps, true_maps, path):
    """Per misclassified sample: integrated gradients for the predicted and for the true class, one colour scale."""
    for k in range(len(mistakes)):
        pred, true = int(mistakes.y_pred[k]), int(mistakes.y_true[k])
        steps = own_steps(mistakes, k)
        attribution_figure(mistakes.inputs[k][:, :steps], [predicted_maps[k][:, :steps], true_maps[k][:, :steps]],
                           [f"for the predicted class {mistakes.class_names[pred]} "
                            f"({probability(mistakes.probabilities[k, pred])})",
                            f"for the true class {mistakes.class_names[true]} "
                            f"({probability(mistakes.probabilities[k, true])})"],
                           mistakes.channel_names,
                           f"Integrated gradients for the predicted and the true class, "
                           f"{sample_heading(mistakes, k, 'misclassified')}\nred raises the logit, blue lowers it",
                           "integrated gradients (logit units)", path(f"misclassified_{k}.png"),
                           feature_names=mistakes.feature_names)
