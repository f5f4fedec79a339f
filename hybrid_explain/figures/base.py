"""What every figure shares: sizes, colours and the palette, saving with a layout computed once per kind of
figure, titles, and the generic helpers (heatmap, bar and line comparisons) the figure families build on. Figures
never run the model: they draw arrays the pipeline computed. Signed attributions use a diverging, colour-blind-safe
map centred on zero; non-negative maps (Grad-CAM, attention) a sequential one; lines and bars per method or class
Paul Tol's colour-blind-safe "muted" palette."""
import textwrap

import matplotlib.pyplot as plt
import numpy as np


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


NO_BETTER_THAN_RANDOM = "no better than random on this run: do not read meaning into it"
