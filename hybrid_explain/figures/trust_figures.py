"""Figures of how far to trust each prediction: the reliability diagram and, per explained row, the training rows
most like it in the model's representation. Like every figure they draw arrays the pipeline computed."""
import matplotlib.pyplot as plt
import numpy as np

from hybrid_explain.figures import drawing
from hybrid_explain.figures.base import CATEGORICAL, save, wrapped
from hybrid_explain.figures.strips import envelope

MAX_CHANNELS_DRAWN = 6  # channels overlaid in one small panel of the similar-cases figure


@drawing.in_background
def reliability_figure(before, after, ece_before, ece_after, path):
    """Accuracy against mean confidence per bin (reliability_bins tables), before and, when after is given,
    after temperature scaling; the rows in each bin below."""
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(5.6, 5.4), sharex=True, height_ratios=[3, 1],
                                     layout="constrained")
    edges = np.array(before["edges"])
    centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    tables = [("before scaling", before, ece_before, 0)] + ([("after scaling", after, ece_after, 1)] if after else [])
    for label, table, ece, k in tables:
        shown = [i for i, n in enumerate(table["rows"]) if n]
        ax.plot([table["confidence"][i] for i in shown], [table["accuracy"][i] for i in shown], marker="o",
                color=CATEGORICAL[k], label=f"{label} (ECE {ece:.3f})")
        counts.bar(centres + (k - 0.5 * (len(tables) - 1)) * width / len(tables), table["rows"],
                   width / len(tables), color=CATEGORICAL[k])
    ax.set(xlim=(0, 1), ylim=(0, 1.02), ylabel="share predicted right",
           title=wrapped(f"Reliability: {sum(before['rows'])} labelled rows, {len(centres)} bins", 5.6))
    ax.grid(color="#e0e0e0")
    ax.legend(loc="upper left", framealpha=1)
    counts.set(xlabel="confidence (probability of the predicted class)", ylabel="rows")
    save(fig, path)


@drawing.in_background
def similar_cases_figure(series, length, heading, cases, case_lengths, captions, channel_names, path):
    """The explained row (series (C, L) up to length) beside its nearest training rows cases (k, C, L), each in its
    own panel with all of its channels (at most MAX_CHANNELS_DRAWN) overlaid; captions: one per case."""
    panels = 1 + len(cases)
    fig, axes = plt.subplots(1, panels, figsize=(2.6 * panels, 2.6), sharey=True, squeeze=False,
                             layout="constrained")
    rows = [(series, length, "this row")] + [(case, n, caption) for case, n, caption in zip(cases, case_lengths,
                                                                                               captions)]
    for ax, (values, n, title) in zip(axes[0], rows):
        for c in range(min(len(values), MAX_CHANNELS_DRAWN)):
            steps, drawn = envelope(values[c, :n])
            ax.plot(steps, drawn, linewidth=0.9, color=CATEGORICAL[c % len(CATEGORICAL)],
                    label=channel_names[c])
        ax.set_title(wrapped(title, 2.6, 9), fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(wrapped(heading, 2.6 * panels), fontsize=10)
    save(fig, path)
