"""Figures of the pipeline. One helper per kind of figure (signal with an attribution strip, heatmap,
bar comparison, line comparison), shared by SHAP, Grad-CAM, attention and the other attribution methods.
Figures never run the model: they draw arrays the pipeline computed. Signed attributions use a diverging,
colour-blind-safe map centred on zero; non-negative maps (Grad-CAM, attention) a sequential one; lines and
bars per method or class Paul Tol's colour-blind-safe "muted" palette. Long series are aggregated for
drawing only (every value was computed), so 12 channels x 1,500 steps stay legible."""
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.layout_engine import ConstrainedLayoutEngine  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from hybrid_explain.figures import drawing  # noqa: E402
from hybrid_explain.explainers.regions import span_label, span_sums, window_edges, window_spans  # noqa: E402

DPI = 120  # about one image pixel per CSS pixel in report.html at these figure widths
SIGNED_CMAP = "RdBu_r"  # red = pushes towards the class, blue = away; colour-blind safe, white at zero
POSITIVE_CMAP = "viridis"  # attention heatmaps
UNSIGNED_CMAP = "Reds"  # non-negative attribution strips (Grad-CAM): white at zero like SIGNED_CMAP
CATEGORICAL = ["#332288", "#CC6677", "#44AA99", "#DDCC77", "#882255", "#88CCEE", "#999933", "#AA4499", "#117733"]
LINESTYLES = ["-", (0, (5, 2)), (0, (1, 1.2)), (0, (6, 2, 1.5, 2))]  # tell overlapping lines apart
MAX_CLASSES_DRAWN = 12  # classes drawn one by one in the SHAP summaries; the others are summed or left out
MAX_FIGURE_INCHES = 30  # the largest side of a figure that grows with the classes: 3,600 pixels at DPI
MAX_DRAWN_STEPS = 400  # longer series are aggregated into this many bins for drawing
plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9,
                     "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 12,
                     "savefig.facecolor": "white"})


def signal_note(feature_names):
    """Which values the figure draws: the model's input, before a per_series network z-scores each row itself."""
    what = "the input as the model receives it (z-scored with the training file's per-channel statistics)"
    return f"black line: {what}" if feature_names is None else f"bar height: {what}"


_layouts = {}  # layout_key -> what the layout placed; per process (each drawing process keeps its own)


def save(fig, path):
    """Write the figure and close it. Its layout (a constrained layout, or the crop of a figure laid out by hand)
    needs a draw of its own besides the one that writes the file, and is computed once per layout_key in a
    process: the five samples' figures of a kind differ in their data and titles, not in what the layout measures.
    A figure with a layout engine already fits its contents to its size and is not cropped.
    zlib level 1: the files are about as small as at the default level 6, and written in a fraction of its time."""
    fig.set_dpi(DPI)  # laid out at the resolution it is written at
    engine = fig.get_layout_engine()
    key = layout_key(fig)
    if key not in _layouts:
        fig.draw_without_rendering()  # runs the layout engine, if any
        _layouts[key] = (fig.get_tightbbox().padded(0.08) if engine is None  # the crop bbox_inches="tight" computes
                         else ([ax.get_position(original=True) for ax in fig.axes],
                               None if fig._suptitle is None else fig._suptitle.get_position()))
    if engine is None:
        fig.savefig(path, dpi=DPI, bbox_inches=_layouts[key], pil_kwargs={"compress_level": 1})
    else:
        axes_places, title_place = _layouts[key]
        for ax, place in zip(fig.axes, axes_places):
            ax.set_position(place, which="original")  # the active place follows at the draw (an aspect, a colour bar)
        if title_place is not None:
            fig._suptitle.set_position(title_place)
        fig.set_layout_engine(None)
        fig.savefig(path, dpi=DPI, pil_kwargs={"compress_level": 1})
    plt.close(fig)


def layout_key(fig) -> tuple:
    """What a constrained layout measures, as values: the figure's size and layout settings, and per axes its
    place in its grid, its tick labels (as its locators and formatters will draw them), axis labels, texts and
    legend; titles by their line count, since the figures wrap every title to the width it has. Two figures
    with equal keys get the same layout (tests/test_report.py checks the pixels)."""
    def lines(text):
        return None if text is None else (text.get_text().count("\n") + 1 if text.get_text() else 0,
                                          text.get_fontsize())

    def texts(artists):
        return tuple((a.get_text(), a.get_fontsize(), a.get_rotation(), a.get_visible()) for a in artists)

    def ticks(axis):
        key = []
        for locator, formatter, settings in ((axis.get_major_locator(), axis.get_major_formatter(), axis._major_tick_kw),
                                             (axis.get_minor_locator(), axis.get_minor_formatter(), axis._minor_tick_kw)):
            low, high = sorted(axis.get_view_interval())
            locations = [v for v in locator() if low - 1e-9 * (high - low) <= v <= high + 1e-9 * (high - low)]  # drawn
            labels = list(formatter.format_ticks(locations))
            key.append((tuple(labels), tuple(sorted(map(str, settings.items())))))
        return tuple(key)

    def axes_key(ax):
        spec = ax.get_subplotspec()
        legend = ax.get_legend()
        return (None if spec is None else (spec.get_geometry(), spec.get_gridspec().get_geometry()),
                ax.get_axes_locator() is not None, ax.axison, ax.get_visible(), lines(ax.title),
                ticks(ax.xaxis), ticks(ax.yaxis), texts([ax.xaxis.label, ax.yaxis.label, *ax.texts]),
                None if legend is None else texts(legend.get_texts()))
    def suptitle(title):
        """A cropped figure's crop reaches a title wider than its axes: such a title counts with its text."""
        if title is None or engine is not None:
            return lines(title)
        extent = title.get_window_extent(fig.canvas.get_renderer()).transformed(fig.transFigure.inverted())
        places = [ax.get_position() for ax in fig.axes]
        inside = min(p.x0 for p in places) <= extent.x0 and extent.x1 <= max(p.x1 for p in places)
        return lines(title) if inside else texts([title])

    engine = fig.get_layout_engine()
    return (tuple(fig.get_size_inches()), None if engine is None else tuple(sorted(map(str, engine.get().items()))),
            suptitle(fig._suptitle), texts(t for t in fig.texts if t is not fig._suptitle),
            tuple(axes_key(ax) for ax in fig.axes))


def wrapped(text, width_inches, fontsize=11):
    """Text broken into lines that fit a figure `width_inches` wide, so long class names never clip a title."""
    columns = max(20, int(width_inches * 72 / (0.5 * fontsize)))
    return "\n".join(textwrap.fill(line, columns) for line in text.split("\n"))


def probability(p):
    """"p = 0.79" with no-break spaces, so a wrapped title never splits it."""
    return f"p\u00a0=\u00a0{p:.2f}"


def category_style(k):
    """Colour and line style of the k-th method or class: colour-blind safe, distinct even where lines overlap."""
    return {"color": CATEGORICAL[k % len(CATEGORICAL)], "linestyle": LINESTYLES[k % len(LINESTYLES)]}


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


# -----------------------------------------------------------------------------
# Series drawn with an attribution strip
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


# -----------------------------------------------------------------------------
# Heatmaps, bars and lines
def heatmap(ax, matrix, row_labels, column_labels, cmap, limits, colorbar_label=None, extent=None):
    """A matrix as an image; a colorbar of its own only when colorbar_label is given."""
    image = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=limits[0], vmax=limits[1], interpolation="nearest",
                      extent=extent)
    if row_labels is not None:
        ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    if column_labels is not None:
        ax.set_xticks(range(len(column_labels)), column_labels, fontsize=8, rotation=45, ha="right",
                      rotation_mode="anchor")
    if colorbar_label:
        plt.colorbar(image, ax=ax, label=colorbar_label, fraction=0.046, pad=0.04)
    return image


def grid_shape(panels, max_columns):
    columns = min(panels, max_columns)
    return -(-panels // columns), columns


def bar_comparison(ax, labels, series, series_names, xlabel, legend_title=None, stacked=True):
    """Horizontal bars, one row per label; several series are stacked (e.g. classes) or grouped side by side,
    with a legend outside the axes so it never covers a bar. Returns the bars' y positions per series."""
    left = np.zeros(len(labels))
    height = 0.8 if stacked else 0.8 / len(series)
    positions = []
    for k, (values, name) in enumerate(zip(series, series_names)):
        y = np.arange(len(labels)) + (0 if stacked else (k - (len(series) - 1) / 2) * height)
        ax.barh(y, values, height=height, left=left if stacked else 0, label=name,
                color=CATEGORICAL[k % len(CATEGORICAL)])
        positions.append(y)
        if stacked:
            left = left + values
    ax.set_yticks(range(len(labels)), labels, fontsize=9)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", color="#e0e0e0")
    ax.set_axisbelow(True)
    if len(series) > 1 and stacked:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title=legend_title)
    elif len(series) > 1:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), ncol=len(series), title=legend_title)
    return positions


def line_comparison(ax, x, series, names, xlabel, ylabel, reference=None, reference_name=None, legend_outside=False):
    """One coloured line per named series, and an optional black dashed reference (e.g. a random control)."""
    for k, (values, name) in enumerate(zip(series, names)):
        ax.plot(x, values, label=name, linewidth=1.6, **category_style(k))
    if reference is not None:
        ax.plot(x, reference, color="black", linestyle="--", linewidth=1.8, label=reference_name)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(color="#e0e0e0")
    if legend_outside:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax.legend(loc="best", framealpha=0.9)


# -----------------------------------------------------------------------------
# Data summary (drawn by the report from the training table)
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


# -----------------------------------------------------------------------------
# SHAP, Grad-CAM and attention
def sample_heading(samples, i, what="explained sample"):
    """The one title line of a per-sample figure: which row, its true and predicted class, how sure, right or not."""
    pred = int(samples.y_pred[i])
    predicted = f"predicted {samples.class_names[pred]} ({probability(samples.probabilities[i, pred])}"
    if samples.y_true is None:
        return f"{what} {i}: row {samples.rows[i]} (no label), {predicted})"
    true = int(samples.y_true[i])
    return (f"{what} {i}: test row {samples.rows[i]}, true {samples.class_names[true]}, {predicted}, "
            f"{'correct' if pred == true else 'WRONG'})")


def own_steps(samples, i) -> int:
    """Steps of sample i's own series: per-sample figures draw each series to its own length, not the padding."""
    return samples.x.shape[2] if getattr(samples, "lengths", None) is None else int(samples.lengths[i])


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


NO_BETTER_THAN_RANDOM = "no better than random on this run: do not read meaning into it"


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


# -----------------------------------------------------------------------------
# Attribution suite (attributions.py): several methods' maps for the predicted class
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


# -----------------------------------------------------------------------------
# Counterfactuals (counterfactuals.py)
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


# Global importance (many rows, coarse players)
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
