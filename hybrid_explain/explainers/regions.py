"""Cutting a series into time regions: the one window formula that SHAP players, figures, region shares and
drawing bins share, and the named segments of ATTRIBUTION_SEGMENTS.

A region is a span (start, end) of steps, end exclusive. `window_edges(length, windows)` cuts `length` steps
into min(windows, length) contiguous windows whose sizes differ by at most one; step t lies in window
floor(t * W / length).
"""
import numpy as np


class SegmentError(ValueError):
    """ATTRIBUTION_SEGMENTS that cannot be read or do not fit the series; the message is one line."""


def window_edges(length: int, windows: int) -> np.ndarray:
    """(W + 1,) int edges of W = min(windows, length) windows: window w holds steps edges[w] .. edges[w + 1] - 1."""
    if length < 1 or windows < 1:
        raise ValueError(f"window_edges needs positive sizes, got length={length}, windows={windows}")
    count = min(windows, length)
    return -(-np.arange(count + 1) * length // count)  # ceil(w * L / W): the first step t with floor(t W / L) = w


def window_spans(length: int, windows: int) -> list[tuple[int, int]]:
    edges = window_edges(length, windows)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def window_of_step(length: int, windows: int) -> np.ndarray:
    """(length,) window index of every step, consistent with window_edges."""
    return np.repeat(np.arange(min(windows, length)), np.diff(window_edges(length, windows)))


def span_label(start: int, end: int, feature_names=None) -> str:
    """"t20-29" for a span of steps; the feature's name for a one-feature span of a table."""
    if feature_names is not None:
        return feature_names[start] if end - start == 1 else f"{feature_names[start]}..{feature_names[end - 1]}"
    return f"t{start}" if end - start == 1 else f"t{start}-{end - 1}"


def span_sums(values: np.ndarray, spans, axis: int = 2) -> np.ndarray:
    """values summed over each span of steps along `axis`; that axis becomes one entry per span."""
    values = np.asarray(values)
    index = [slice(None)] * values.ndim
    parts = []
    for start, end in spans:
        index[axis] = slice(start, end)
        parts.append(values[tuple(index)].sum(axis=axis))
    return np.stack(parts, axis=axis)


def parse_segments(text: str, length: int) -> list[tuple[str, int, int]]:
    """"P:0-20,QRS:20-45,T:45-100" -> [("P", 0, 20), ...]; steps start..end-1; "" -> []."""
    segments = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, span = item.rpartition(":")
        start, _, end = span.partition("-")
        try:
            start, end = int(start), int(end)
        except ValueError:
            raise SegmentError(f"ATTRIBUTION_SEGMENTS item {item!r} is not name:start-end, e.g. QRS:20-45") from None
        if not name or not 0 <= start < end <= length:
            raise SegmentError(f"ATTRIBUTION_SEGMENTS item {item!r} needs a name and 0 <= start < end <= {length} "
                               f"(the series length; end is exclusive)")
        segments.append((name, start, end))
    return segments
