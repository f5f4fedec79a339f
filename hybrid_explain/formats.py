"""The field's file formats beside CSV, chosen by the extension wherever a CSV is read (training, test, new data):

    .ts, .arff   UCR/UEA files, equal or unequal length, one or more channels (aeon's readers; extra `aeon`)
    .parquet     a table in the CSV layout (pandas; needs pyarrow)
    .npy         X (n, C, L) or (n, L): series without labels (new data to score)
    .npz         X as in .npy and, optionally, y (n,): the labels

Each file becomes a DataFrame in the CSV layout (a label column and `<channel>_t<step>` columns, NaN after a
shorter series' end), which data_loader then checks exactly as it checks a CSV: same rules, same one-line errors.
"""
from pathlib import Path

import numpy as np
import pandas as pd

EXTENSIONS = (".ts", ".arff", ".parquet", ".npy", ".npz")


class FormatError(ValueError):
    """A file of one of these formats that cannot be read; the message is one line (data_loader raises it as its
    DataError)."""


def other_format(path) -> bool:
    """True for a path whose extension is one of EXTENSIONS (anything else is read as CSV)."""
    return isinstance(path, (str, Path)) and Path(path).suffix.lower() in EXTENSIONS


def series_columns(channels: int, length: int) -> tuple[list[str], list[str]]:
    """(channel names, feature columns) of series without names: one channel "value" with columns t0, t1, ...;
    several channels ch0, ch1, ... with columns ch0_t0, ch0_t1, ... (channel-major)."""
    names = ["value"] if channels == 1 else [f"ch{c}" for c in range(channels)]
    columns = [f"t{t}" if channels == 1 else f"{name}_t{t}" for name in names for t in range(length)]
    return names, columns


def padded(series, width=None, name="the list") -> tuple[np.ndarray, np.ndarray]:
    """(values (n, C, width) float64, NaN after each series' end, lengths (n,) int64) of a list of (C, L_i) arrays
    (or 1D arrays, one channel); width None: the longest series."""
    rows = [np.asarray(row, dtype=np.float64) for row in series]
    rows = [row[None, :] if row.ndim == 1 else row for row in rows]
    if not rows or any(row.ndim != 2 for row in rows) or len({row.shape[0] for row in rows}) > 1:
        raise FormatError(f"{name}: the series are not (channels, steps) arrays with one number of channels")
    lengths = np.array([row.shape[1] for row in rows], dtype=np.int64)
    if lengths.min() < 1:
        raise FormatError(f"{name}: a series has 0 steps; every series needs at least one")
    width = width or int(lengths.max())
    if width < lengths.max():
        raise FormatError(f"{name}: a series has {int(lengths.max())} steps, more than the {width} this model "
                          "was fitted on")
    values = np.full((len(rows), rows[0].shape[0], width), np.nan)
    for i, row in enumerate(rows):
        values[i, :, :row.shape[1]] = row
    return values, lengths


def frame_from_series(X, y=None, label_column="label", name="the file") -> pd.DataFrame:
    """X (n, C, L), (n, L) or a list of (C, L_i) arrays, y (n,) or None -> a DataFrame in the CSV layout."""
    if isinstance(X, list):
        values, _ = padded(X, name=name)
    else:
        values = np.asarray(X)
        if values.dtype.kind not in "biuf":
            raise FormatError(f"{name}: X holds {values.dtype} values, not numbers; store the series as floats")
        values = values[:, None, :] if values.ndim == 2 else values
        if values.ndim != 3:
            raise FormatError(f"{name}: X has shape {values.shape}; store it as (rows, channels, steps) or "
                              "(rows, steps)")
    _, columns = series_columns(values.shape[1], values.shape[2])
    frame = pd.DataFrame(values.reshape(len(values), -1), columns=columns)
    if y is not None:
        y = np.asarray(y)
        if y.shape != (len(frame),):
            raise FormatError(f"{name}: y has shape {y.shape} but X has {len(frame)} rows; store one label per row")
        frame.insert(0, label_column, y)
    return frame


def _require(module: str, extra: str, path):
    try:
        return __import__(module)
    except ImportError:
        raise FormatError(f"{path}: reading {Path(path).suffix} files needs {module}: pip install "
                          f"'train-explain[{extra}]'") from None


def read_frame(path, label_column="label") -> pd.DataFrame:
    """The file as a DataFrame in the CSV layout."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such file; check the path (--train_csv_path / --test_csv_path)")
    suffix = path.suffix.lower()
    try:
        if suffix in (".ts", ".arff"):
            _require("aeon", "aeon", path)
            from aeon.datasets import load_from_arff_file, load_from_ts_file

            X, y = (load_from_ts_file if suffix == ".ts" else load_from_arff_file)(str(path))
            labels = y if y is not None and len(y) else None  # a file without class labels: new data
            return frame_from_series(X if isinstance(X, list) else np.asarray(X), labels, label_column, path)
        if suffix == ".parquet":
            _require("pyarrow", "formats", path)
            frame = pd.read_parquet(path)
            frame.columns = [str(c) for c in frame.columns]
            return frame
        if suffix == ".npy":
            return frame_from_series(np.load(path, allow_pickle=False), None, label_column, path)
        with np.load(path, allow_pickle=False) as arrays:
            if "X" not in arrays:
                raise FormatError(f"{path}: holds no array named X (it has {', '.join(arrays.files) or 'none'}); "
                                  "save it with np.savez(path, X=series, y=labels)")
            return frame_from_series(arrays["X"], arrays["y"] if "y" in arrays else None, label_column, path)
    except FormatError:
        raise
    except Exception as exc:  # each reader raises its own types for a malformed file; each means the same here
        raise FormatError(f"{path}: not a readable {suffix} file ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:120] if str(exc) else 'no detail'})") from None
