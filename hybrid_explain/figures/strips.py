"""Series drawn with an attribution strip under or over them: one helper per layout (a channel, a band per channel,
bars for a table's features), shared by SHAP, Grad-CAM and the attribution suite. Long series are aggregated for
drawing only (every value was computed), so 12 channels x 1,500 steps stay legible."""
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patheffects
from matplotlib.ticker import MaxNLocator

from hybrid_explain.explainers.regions import window_edges
from hybrid_explain.figures import drawing
from hybrid_explain.figures.base import MAX_DRAWN_STEPS, SIGNED_CMAP, UNSIGNED_CMAP, save, signal_note, wrapped


def drawing_bins(length, limit=MAX_DRAWN_STEPS):
    """Edges of the bins a series is aggregated into for drawing: one bin per step up to `limit` steps."""
    return window_edges(length, limit)


def envelope(signal, limit=MAX_DRAWN_STEPS):
    """(steps, values) to draw: every step of a short series; of a long one each bin's minimum and maximum in
    time order, so spikes survive the thinning."""
    if len(signal) <= limit:
        return np.arange(len(signal)), signal
    edges = drawing_bins(len(signal), limit // 2)
    steps = np.concatenate([np.sort([a + signal[a:b].argmin(), a + signal[a:b].argmax()])
                            for a, b in zip(edges[:-1], edges[1:])])
    return steps, signal[steps]


def strongest_per_bin(attribution, limit=MAX_DRAWN_STEPS):
    """The attribution to colour: per drawing bin the value of largest magnitude (sign kept)."""
    edges = drawing_bins(len(attribution), limit)
    return attribution[[a + np.abs(attribution[a:b]).argmax() for a, b in zip(edges[:-1], edges[1:])]]


def feature_bars(ax, values, attribution, limits, cmap, feature_names):
    """A table's features as bars coloured by their attribution, named on the x axis (no line joins them)."""
    mappable = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(*limits), cmap)
    ax.bar(range(len(values)), values, color=mappable.to_rgba(attribution), edgecolor="black", linewidth=0.6)
    ax.axhline(0, color="black", linewidth=0.6)
    step = max(1, -(-len(feature_names) // 30))  # at most 30 names, so they stay legible
    ax.set_xticks(range(0, len(feature_names), step), feature_names[::step], rotation=45, ha="right",
                  rotation_mode="anchor", fontsize=8)
    return mappable


BAND_ROWS = 6  # image rows of a channel's band in channel_bands; one empty row separates two bands


def channel_bands(ax, signals, attributions, limits, cmap, channel_names=None, value_ticks=True):
    """Every channel of one map in one axes, top to bottom: each band holds the channel's attribution as a colour
    strip under its signal (a black line scaled to the band, with value ticks when value_ticks). One axes and one
    image for all channels rather than one of each per channel: axes, their ticks and their layout are most of a
    figure's drawing time. signals, attributions (C, L); channel_names label the bands (None: unlabelled)."""
    channels, length = signals.shape
    strips = np.stack([strongest_per_bin(a) for a in attributions])  # (C, bins)
    # BAND_ROWS rows per channel and an empty (NaN, transparent) row between channels, as one image
    rows = np.full((channels, BAND_ROWS + 1, strips.shape[1]), np.nan)
    rows[:, :BAND_ROWS] = strips[:, None, :]
    period = BAND_ROWS + 1
    image = ax.imshow(rows.reshape(-1, strips.shape[1])[:-1], aspect="auto", cmap=cmap, vmin=limits[0],
                      vmax=limits[1], extent=[-0.5, length - 0.5, channels - 1 / period, 0], interpolation="nearest")
    width = 1.0 if length <= 200 else 0.6
    halo = [patheffects.Stroke(linewidth=width + 1.2, foreground="white"), patheffects.Normal()]  # shows on any colour
    ticks, labels = [], []
    for c in range(channels):
        top, bottom = c, c + BAND_ROWS / period
        low, high = float(signals[c].min()), float(signals[c].max())
        pad = 0.1 * (high - low) + 1e-3
        low_edge, scale = low - pad, (bottom - top) / (high - low + 2 * pad)

        def to_band(values):
            return bottom - (np.asarray(values, dtype=float) - low_edge) * scale

        steps, values = ([-0.5, 0.5], [signals[c, 0]] * 2) if length == 1 else envelope(signals[c])
        ax.plot(steps, to_band(values), color="black", linewidth=width, path_effects=halo)
        ax.add_patch(matplotlib.patches.Rectangle((-0.5, top), length, bottom - top, fill=False, linewidth=0.8))
        if value_ticks:
            shown = [v for v in MaxNLocator(3).tick_values(low, high) if low - pad <= v <= high + pad]
            ticks += list(to_band(shown))
            labels += [f"{v:.3g}".replace("-", "\u2212") for v in shown]
    ax.set(xlim=(-0.5, length - 0.5), ylim=(channels - 1 / period, 0))
    ax.spines[:].set_visible(False)
    ax.set_yticks(ticks, labels)
    if channel_names is not None:
        ax.set_yticks(np.arange(channels) + BAND_ROWS / period / 2, channel_names, minor=True)
    # The names stand left of the value ticks (tick 3.5 + pad 3.5 points, then up to 0.84 em of 8 points per
    # character: a minus sign; digits 0.64 em), as y labels would.
    ax.tick_params(axis="y", which="minor", length=0, pad=12 + 5.5 * max(map(len, labels), default=0), labelsize=10)
    ax.tick_params(axis="both", which="major", labelsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(6, integer=True, min_n_ticks=1))
    return image


def signal_with_attribution(ax, signal, attribution, limits, cmap, channel_name, value_ticks=True,
                            feature_names=None):
    """One channel: the signal as a black line over a colour strip of the attribution at each step; for a table
    (feature_names given) bars of the feature values coloured by their attribution."""
    if feature_names is None:
        return channel_bands(ax, signal[None], attribution[None], limits, cmap, [channel_name], value_ticks)
    image = feature_bars(ax, signal, attribution, limits, cmap, feature_names)
    ax.set_ylabel(channel_name, rotation=0, ha="right", va="center")
    if not value_ticks:
        ax.tick_params(axis="y", left=False, labelleft=False)
    return image


def map_panel(fig, cell, signals, attribution, limits, cmap, channel_names, value_ticks, feature_names):
    """One map of a sample in a figure's grid cell: every channel's band in one axes for a series, one axes of
    bars per channel for a table. Returns (its axes, top to bottom; the image of its colour scale)."""
    if feature_names is None:
        ax = fig.add_subplot(cell)
        return [ax], channel_bands(ax, signals, attribution, limits, cmap, channel_names, value_ticks)
    axes = [fig.add_subplot(part) for part in cell.subgridspec(len(signals), 1, hspace=0.25)]
    for c, ax in enumerate(axes):
        image = signal_with_attribution(ax, signals[c], attribution[c], limits, cmap,
                                        channel_names[c] if channel_names else "", value_ticks, feature_names)
        ax.tick_params(labelbottom=c == len(axes) - 1)
    return axes, image


def step_axis_label(feature_names):
    return "time step" if feature_names is None else "feature"


@drawing.in_background
def attribution_figure(signals, attributions, columns, channel_names, title, colorbar_label, path, signed=True,
                       feature_names=None, bound=None):
    """Rows = channels, columns = attribution maps (e.g. for the predicted and the true class), one colour scale.
    signals (C, L); attributions: list of (C, L) arrays, one per column with `columns` titles. bound: the colour
    scale's end, shared with other figures (None: the largest |value| of these maps)."""
    channels, length = signals.shape
    width = 3.9 * len(columns) + 1.6
    fig = plt.figure(figsize=(width, 0.55 * channels + 1.5), layout="constrained")
    cells = fig.add_gridspec(1, len(columns))
    bound = bound or max(float(np.abs(a).max()) for a in attributions) or 1.0
    limits = (-bound, bound) if signed else (0.0, bound)
    cmap = SIGNED_CMAP if signed else UNSIGNED_CMAP
    every_axes = []
    for j, (column, attribution) in enumerate(zip(columns, attributions)):
        axes, image = map_panel(fig, cells[0, j], signals, attribution, limits, cmap,
                                channel_names if j == 0 else None, j == 0, feature_names)
        axes[0].set_title(wrapped(column, 3.9, 10), fontsize=10)
        axes[-1].set_xlabel(step_axis_label(feature_names))
        every_axes += axes
    fig.colorbar(image, ax=every_axes, label=colorbar_label, shrink=min(1.0, 4.0 / channels + 0.3), aspect=25)
    fig.suptitle(wrapped(f"{title}; {signal_note(feature_names)}", width), fontsize=11)
    fig.get_layout_engine().set(h_pad=0.02, hspace=0.01)
    save(fig, path)


@drawing.in_background
def attribution_grid_figure(signals, attributions, titles, signed, channel_names, title, path, columns=4,
                            feature_names=None):
    """Many maps of one sample, each scaled to its largest |value|: each map (C, L) is a column of channel panels,
    and the columns wrap into blocks of `columns`, so eight methods x twelve channels stay legible. Signed maps
    share a diverging scale [-1, 1], unsigned ones a sequential [0, 1]; each has its colour bar.
    signals (C, L); attributions: list of (C, L) arrays titled by `titles`, signed[k] says which scale."""
    channels, length = signals.shape
    columns = min(columns, len(titles))
    blocks = -(-len(titles) // columns)
    panel = 1.0 if feature_names is None else 2.6  # a table's bars need the height to be read
    ratios = ([panel * channels + 0.25 * (channels - 1), 1.9 if feature_names is None else 3.2] * blocks)[:-1]
    width = 2.8 * columns + 2.4
    title = wrapped(title, width)
    # above the first panels: a quarter inch per line of the title and of the first block's tallest panel title
    top = 0.25 * (title.count("\n") + 1 + max(column.count("\n") + 1 for column in titles[:columns]))
    height = 0.42 * sum(ratios) + 0.4 + top  # spacer rows: x labels, the next titles
    grid = plt.GridSpec(len(ratios), columns, height_ratios=ratios, hspace=0.0, wspace=0.08, left=0.9 / width,
                        right=1 - 1.5 / width, top=1 - top / height, bottom=0.45 / height)
    fig = plt.figure(figsize=(width, height))
    images = {}
    for k, (column, attribution, is_signed) in enumerate(zip(titles, attributions, signed)):
        block, j = divmod(k, columns)
        limits, cmap = ((-1.0, 1.0), SIGNED_CMAP) if is_signed else ((0.0, 1.0), UNSIGNED_CMAP)
        axes, images[is_signed] = map_panel(fig, grid[2 * block, j], signals, attribution, limits, cmap,
                                            channel_names if j == 0 else None, False, feature_names)
        axes[0].set_title(column)
        axes[-1].set_xlabel(step_axis_label(feature_names), fontsize=9)
    bars = [(True, "signed / largest |value|"), (False, "unsigned / largest")]
    bars = [(key, label) for key, label in bars if key in images]
    # the colour bars stand beside the panels and their titles, below the figure's title
    low, span = 0.45 / height, 1 - (top - 0.5 + 0.45) / height
    for k, (key, label) in enumerate(bars):
        bottom, size = ((0.53, 0.47) if k == 0 else (0.0, 0.47)) if len(bars) > 1 else (0.15, 0.7)
        fig.colorbar(images[key], cax=fig.add_axes((1 - 1.15 / width, low + bottom * span, 0.15 / width,
                                                     size * span)), label=label)
    fig.suptitle(title, fontsize=11, y=1 - 0.1 / height, va="top")
    save(fig, path)
