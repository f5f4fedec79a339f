"""Grad-CAM maps under each sample's channels, and the attention weights per layer and head."""
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from hybrid_explain.figures import drawing
from hybrid_explain.figures.base import (NO_BETTER_THAN_RANDOM, POSITIVE_CMAP, grid_shape, heatmap, own_steps,
                                         sample_heading, save, wrapped)
from hybrid_explain.figures.strips import attribution_figure


def gradcam_figures(maps, samples, path, members=1, better_than_random=None):
    """maps (N, L) non-negative Grad-CAM over time, drawn under every channel of each sample, on one colour scale
    for all samples (0 to the largest value of any): a colour means the same in every figure. members: the
    networks of an ensemble, whose maps were averaged (said in the title). better_than_random: the deletion check's
    verdict (checks.deletion_against_random; None: not checked); False is said in the title."""
    layer = "last conv block" + (f", mean of the {members} networks' maps" if members > 1 else "")
    own = [maps[i][:own_steps(samples, i)] for i in range(len(maps))]
    bound = max(float(m.max()) for m in own) or 1.0
    verdict = f"\nGrad-CAM's deletion curve is {NO_BETTER_THAN_RANDOM}" if better_than_random is False else ""
    for i, cam in enumerate(own):
        pred = int(samples.y_pred[i])
        steps = len(cam)
        attribution_figure(samples.inputs[i][:, :steps], [np.broadcast_to(cam, samples.inputs[i][:, :steps].shape)],
                           [f"for the predicted class {samples.class_names[pred]}"], samples.channel_names,
                           f"Grad-CAM ({layer}), {sample_heading(samples, i)}\none map over time, under "
                           f"every channel{verdict}",
                           f"Grad-CAM ({layer}),\none scale for all {len(maps)} samples:\n0 to their largest value",
                           path(f"gradcam_sample_{i}.png"), signed=False, feature_names=samples.feature_names,
                           bound=bound)


def attention_figures(attention, samples, path, pooled_lengths=None, members=1):
    """attention (N, H, T, T): per sample one heatmap per head and their mean on one colour scale, axes in input
    time steps; the colour bar marks the uniform weight 1/T. pooled_lengths (N,): each row's own LSTM steps
    (None: all T), the part drawn. members: the networks of an ensemble, whose heads lie side by side in H."""
    for i in range(len(attention)):
        t = attention.shape[2] if pooled_lengths is None else int(pooled_lengths[i])
        attention_figure(attention[i, :, :t, :t], samples, i, path(f"attention_sample_{i}.png"), members)


@drawing.in_background
def attention_figure(weights, samples, i, path, members=1):
    """weights (H, T, T) of sample i (its own LSTM steps): one heatmap per head and their mean, over its own
    input steps."""
    heads, t, _ = weights.shape
    length = own_steps(samples, i)
    unit = "step" if samples.feature_names is None else "feature position"
    maps = list(weights) + [weights.mean(axis=0)]
    per_network = heads // members
    titles = ([f"head {h}" for h in range(heads)] + ["mean of the heads"] if members == 1 else
              [f"network {h // per_network}, head {h % per_network}" for h in range(heads)]
              + [f"mean of the {members} networks' heads"])
    grid_rows, columns = grid_shape(len(maps), 3)
    fig, axes = plt.subplots(grid_rows, columns, figsize=(2.9 * columns + 1.2, 2.7 * grid_rows + 0.8),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    top = float(max(m.max() for m in maps)) or 1.0
    for k, ax in enumerate(axes.ravel()):
        if k >= len(maps):
            ax.axis("off")
            continue
        image = heatmap(ax, maps[k], None, None, POSITIVE_CMAP, (0.0, top), extent=[0, length, length, 0])
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(6, integer=True, min_n_ticks=1))
        ax.set_title(titles[k], fontsize=10)
        if k % columns == 0:
            ax.set_ylabel(f"attending {unit} (query)")
        if k + columns >= len(maps):
            ax.set_xlabel(f"attended {unit} (key)")
            ax.tick_params(labelbottom=True)
    spare = axes.ravel()[len(maps):]  # the colour bar goes into an empty cell when there is one
    where = {"cax": spare[0].inset_axes((0.08, 0.05, 0.07, 0.9))} if len(spare) else {"ax": axes, "shrink": 0.8}
    bar = fig.colorbar(image, label=f"attention weight\n(white line: uniform, 1/{t})", **where)
    bar.ax.axhline(1.0 / t, color="white", linewidth=2)
    ensemble = f"; the heads of each of the {members} networks of the ensemble" if members > 1 else ""
    fig.suptitle(wrapped(f"Self-attention, {sample_heading(samples, i)}\n{t} LSTM step{'s' * (t != 1)} drawn "
                         f"over the {length} input {unit}{'s' * (length != 1)}; each query's weights sum to 1"
                         f"{ensemble}",
                         2.9 * columns + 1.2), fontsize=11)
    save(fig, path)
