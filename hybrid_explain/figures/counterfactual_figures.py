"""Counterfactual figures (explainers/counterfactuals.py): each sample beside the nearest change that flips it."""
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from hybrid_explain.figures import drawing
from hybrid_explain.figures.base import CATEGORICAL, own_steps, probability, sample_heading, save, wrapped
from hybrid_explain.figures.strips import envelope, step_axis_label


def counterfactual_caption(entry, channels):
    """What the search found for one sample, in words, for its figure's title; channels: how many the data has."""
    toward = f"counterfactual toward {entry['target']}"
    if not entry["found"]:
        return f"{toward}: none found ({entry['reason']}); the original is drawn alone"
    start, end = entry["changed_steps"]
    changed = entry["changed_channels"]
    where = f"all {channels} channels" if len(changed) == channels > 1 else ", ".join(changed)
    return (f"{toward}: steps {start}-{end - 1} of {where} from the nearest "
            f"{entry['target']} training series; the model then says {entry['predicted']}, "
            f"{probability(entry['probability_before'])} \u2192 {entry['probability_after']:.2f} for {entry['target']}")


def counterfactual_figures(inputs, series, mask, entries, samples, path):
    """Per sample, every channel's original (black) with the counterfactual's changed stretch overlaid (colour) and
    shaded. inputs, series (N, C, L) normalized (series NaN where none was found), mask (N, C, L) changed cells."""
    for i in range(len(inputs)):
        counterfactual_figure(inputs[i], series[i], mask[i], entries[i], samples, i,
                              path(f"counterfactual_sample_{i}.png"))


@drawing.in_background
def counterfactual_figure(inputs, series, mask, entry, samples, i, path):
    """Sample i's figure of counterfactual_figures; inputs, series, mask (C, L)."""
    channels, length = inputs.shape
    steps = np.arange(length)
    marker = "o" if length <= 30 else None
    colour = CATEGORICAL[1]
    own = own_steps(samples, i)  # each series drawn to its own length
    fig, axes = plt.subplots(channels, 1, figsize=(9.5, 0.62 * channels + 1.6), squeeze=False, sharex=True,
                             layout="constrained")
    for c, ax in enumerate(axes[:, 0]):
        ax.plot(*envelope(inputs[c, :own]), color="black", linewidth=1.0, marker=marker, markersize=2.5,
                label="original")
        changed = np.flatnonzero(mask[c])
        if len(changed):
            start, end = changed[0], changed[-1] + 1
            ax.axvspan(start - 0.5, end - 0.5, color=colour, alpha=0.15, linewidth=0)
            # one step beyond each end, so the overlay joins the original where the stretch begins and ends
            shown = slice(max(0, start - 1), min(own, end + 1))
            ax.plot(steps[shown], series[c, shown], color=colour, linewidth=1.8, marker=marker,
                    markersize=3, label="counterfactual")
        ax.set_ylabel(samples.channel_names[c], rotation=0, ha="right", va="center")
        ax.yaxis.set_major_locator(MaxNLocator(2))
        ax.tick_params(labelsize=8)
    if samples.feature_names is not None:
        ticks = range(0, length, max(1, -(-length // 30)))
        axes[-1, 0].set_xticks(ticks, [samples.feature_names[t] for t in ticks], rotation=45, ha="right",
                               rotation_mode="anchor", fontsize=8)
    else:
        axes[-1, 0].xaxis.set_major_locator(MaxNLocator(8, integer=True))
    axes[-1, 0].set_xlabel(step_axis_label(samples.feature_names))
    handles = [h for ax in axes[:, 0] for h in ax.get_lines()]
    labels = {line.get_label(): line for line in handles}
    axes[0, 0].legend(list(labels.values()), list(labels), loc="lower left", bbox_to_anchor=(0, 1.02), ncol=2,
                      fontsize=8, frameon=False)
    fig.suptitle(wrapped(f"Counterfactual, {sample_heading(samples, i)}\n{counterfactual_caption(entry, channels)}; "
                         "z-scored values, shaded: the changed steps", 9.5), fontsize=10)
    save(fig, path)
