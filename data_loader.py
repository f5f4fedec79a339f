"""Reading and validating the train/test CSVs, normalization, and the torch Dataset.

Every problem with the input raises DataError with a one-line message that names the file,
the place (line, column) and the fix.
"""

import csv
import io
import math
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hybrid_explain import formats
from hybrid_explain.config import MAX_COLUMNS, SETTING_RANGES
from hybrid_explain.pipeline.progress import Silent

SINGLE_CHANNEL_NAME = "value"

_CHANNEL_STEP = re.compile(r"^(?P<channel>.+)_t(?P<step>\d+)$")
_NUMBERED = re.compile(r"^(?P<prefix>\D*?)(?P<number>\d+)$")
# pandas' default missing-value strings; read_csv is told to ignore them so that a class
# named "NA" or "None" stays a class, and a feature holding one is reported as missing.
_MISSING_MARKERS = [
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
]
_OTHER_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "pipes"}
MISSING_VALUE_MODES = ("interpolate", "error")
_SNIFF_BYTES = 65536
_NAMES_SHOWN = 5
# Bounds of what a file may hold, each checked before the work that grows with it (the columns before the rows
# are read, the values before they are parsed, the labels and classes before training): beyond them a run would
# fill the memory or never end, and each is far beyond a useful data set. Channels, steps and classes are
# config.SETTING_RANGES' (the checkpoint loader's), the columns config.MAX_COLUMNS.
MAX_NAME_CHARS = 1_000  # a column name or a class label: shown in every figure and table that names it
MAX_CELL_CHARS = csv.field_size_limit()  # 131,072 characters in any one cell (the csv module's own limit)
MAX_VALUES = 1_000_000_000  # rows x feature columns of a file read whole (4 GB as float32)
# What grows with the classes beyond the rows: per-class arrays of one row's size (the class means of the global
# importance) and the SHAP values of each explained sample for every class (train_explain checks those).
MAX_CLASS_VALUES = 50_000_000  # classes x feature columns


class DataError(ValueError):
    """Bad input. str(err) is ONE line: what is wrong, where (file, row or column), and how to fix it."""


@dataclass
class SeriesTable:
    X: np.ndarray
    y: np.ndarray
    class_names: list[str]
    channel_names: list[str]
    feature_columns: list[str]
    row_indices: np.ndarray
    feature_names: list[str] | None = None  # a table's column names; None when the columns form a time series
    # Variable-length rows: row i's series is X[i, :, :lengths[i]]; the steps after it are NaN (no value).
    lengths: np.ndarray | None = None  # (N,) int64; _table sets it, every row full length for a tidy file
    filled: np.ndarray | None = None  # (N, C, L) bool: the interior gaps that were interpolated; None when none

    @property
    def labelled(self) -> bool:
        return self.y is not None

    def filled_per_channel(self) -> list[int]:
        """Interpolated cells of each channel."""
        if self.filled is None:
            return [0] * len(self.channel_names)
        return self.filled.sum(axis=(0, 2)).tolist()

    def filled_rows(self) -> int:
        return 0 if self.filled is None else int(self.filled.any(axis=(1, 2)).sum())


def read_train_test(train_path, test_path, label_column="label", missing_values="interpolate", progress=Silent):
    """Read both CSVs as (N, C, L) series; layout and classes come from the training file. The test file may
    lack the label column (new data to score): its table's y is then None. missing_values: what to do with a
    gap inside a series, "interpolate" or "error" (see _series_lengths). progress(description, total, unit): a
    progress.Progress-like context told the bytes of each file as they are read."""
    train = read_train(train_path, label_column, missing_values, progress)
    layout = {"class_names": train.class_names, "channel_names": train.channel_names,
              "feature_columns": train.feature_columns}
    return train, read_table(test_path, layout, label_column, reference=train_path, missing_values=missing_values,
                             progress=progress)


def read_train(path, label_column="label", missing_values="interpolate", progress=Silent):
    """The training CSV, which defines the layout (channels, steps) and the classes; it must have labels. A .ts,
    .arff, .parquet, .npy or .npz file (formats.py) is read as the CSV it stands for."""
    if formats.other_format(path):
        if str(path).lower().endswith(".npy"):
            raise DataError(f"{path}: an .npy file holds series without labels; to train, save the series and "
                            "their labels together: np.savez(path.npz, X=series, y=labels)")
        return train_table_from_frame(_formatted_frame(path, label_column), label_column, str(path), missing_values)
    header = _header(path, label_column)
    channel_names, feature_columns = _channel_layout(path, [name for name in header if name != label_column])
    ((X, labels, lengths, filled),) = _read_rows(path, header, label_column, feature_columns, None,
                                                 len(channel_names), missing_values, progress)
    class_names = _class_names(path, labels)
    if len(class_names) * len(feature_columns) > MAX_CLASS_VALUES:
        raise DataError(f"{path}: {len(class_names):,} classes x {len(feature_columns):,} feature columns is more than "
                        f"{MAX_CLASS_VALUES:,} values, the size of the per-class arrays; use fewer classes or columns")
    return _table(X, _class_indices(labels, class_names), class_names, channel_names, feature_columns, lengths,
                  filled)


def read_table(path, layout, label_column="label", reference=None, missing_values="interpolate", progress=Silent):
    """A CSV laid out like the training file (layout: its class_names, channel_names and feature_columns, e.g.
    a checkpoint's), its columns in any order, the label column optional; y is None without it."""
    (table,) = iter_table(path, layout, label_column, None, reference, missing_values, progress)
    return table


def iter_table(path, layout, label_column="label", chunk_rows=None, reference=None, missing_values="interpolate",
               progress=Silent):
    """read_table's table in parts of at most chunk_rows rows (None: one part), in file order, each checked as
    read_table checks the whole; row_indices count from the top of the file. Memory is bounded by the part."""
    if formats.other_format(path):  # read whole: these formats are not read in parts
        yield table_from_frame(_formatted_frame(path, label_column), layout, label_column, str(path), missing_values)
        return
    header = _header(path, label_column, require_label=False)
    _check_same_columns(path, [name for name in header if name != label_column], layout["feature_columns"],
                        reference or "the training file")
    offset = 0
    for X, labels, lengths, filled in _read_rows(path, header, label_column, layout["feature_columns"], chunk_rows,
                                                 len(layout["channel_names"]), missing_values, progress):
        y = None
        if labels is not None:
            y = _class_indices(labels, layout["class_names"])
            if (y < 0).any():
                raise DataError(_unseen_classes_message(path, reference or "the training file", labels, y, offset))
        table = _table(X, y, list(layout["class_names"]), list(layout["channel_names"]),
                       list(layout["feature_columns"]), lengths, filled)
        table.row_indices += offset
        offset += len(X)
        yield table


def table_from_frame(frame, layout, label_column="label", name="the DataFrame", missing_values="interpolate"):
    """A DataFrame laid out like the training file (as read_table reads a CSV): feature columns in any order,
    the label column optional, every value a finite number except the empty (NaN) steps _series_lengths allows."""
    features = [str(c) for c in frame.columns if c != label_column]
    _check_same_columns(name, features, layout["feature_columns"], "the training file")
    try:
        X = frame[layout["feature_columns"]].to_numpy(dtype=np.float32)
    except (TypeError, ValueError):
        raise DataError(f"{name}: some feature values are not numbers; convert them or drop those rows") from None
    lengths = filled = None
    if not np.isfinite(X).all():
        if np.isinf(X).any() or not _is_series(layout["feature_columns"]):
            row, column = np.argwhere(~np.isfinite(X))[0]
            raise DataError(f"{name}: row {row}, column {layout['feature_columns'][column]!r} is missing or infinite")
        X, lengths, filled = _series_lengths(name, X.reshape(len(X), len(layout["channel_names"]), -1),
                                             layout["feature_columns"], lambda row: f"row {row}", missing_values)
    y = None
    if label_column in frame.columns:
        y = _class_indices(frame[label_column].astype(str).str.strip(), layout["class_names"])
        if (y < 0).any():
            raise DataError(f"{name}: labels that are not classes of the training file in row {int(np.argmax(y < 0))}")
    return _table(X.reshape(len(X), -1), y, list(layout["class_names"]), list(layout["channel_names"]),
                  list(layout["feature_columns"]), lengths, filled)


def train_table_from_frame(frame, label_column="label", name="the DataFrame", missing_values="interpolate"):
    """read_train's table of a DataFrame in the CSV layout: its columns give the layout, its labels the classes."""
    if label_column not in frame.columns:
        raise DataError(f"{name}: no column {label_column!r} (columns: {_few([str(c) for c in frame.columns])}); "
                        f"training needs labels: rename the label column or set --label_column=NAME")
    features = [str(c) for c in frame.columns if c != label_column]
    if not features:
        raise DataError(f"{name}: the only column is the label {label_column!r}; add numeric feature columns")
    channel_names, feature_columns = _channel_layout(name, features)
    frame = frame.rename(columns=str)
    class_names = _class_names(name, frame[label_column].astype(str).str.strip())
    return table_from_frame(frame, {"class_names": class_names, "channel_names": channel_names,
                                    "feature_columns": feature_columns}, label_column, name, missing_values)


def _formatted_frame(path, label_column):
    """A .ts, .arff, .parquet, .npy or .npz file as a DataFrame in the CSV layout (formats.py)."""
    try:
        return formats.read_frame(path, label_column)
    except formats.FormatError as exc:
        raise DataError(str(exc)) from None


def _table(X, y, class_names, channel_names, feature_columns, lengths=None, filled=None):
    X = X.reshape(len(X), len(channel_names), -1)
    return SeriesTable(
        X=X,
        y=y,
        class_names=class_names,
        channel_names=channel_names,
        feature_columns=feature_columns,
        row_indices=np.arange(len(X), dtype=np.int64),
        feature_names=None if _is_series(feature_columns) else list(feature_columns),
        lengths=np.full(len(X), X.shape[2], dtype=np.int64) if lengths is None else lengths,
        filled=filled,
    )


def fit_normalization(X, filled=None):
    """Per-channel mean and std over samples and steps, as plain lists for a weights_only checkpoint. Only
    observed values count: the NaN after a short row's end and the interpolated cells (filled, a mask) do not."""
    if filled is not None or np.isnan(X).any():
        observed = np.where(filled, np.nan, X) if filled is not None else X
        mean = np.nanmean(observed, axis=(0, 2), dtype=np.float64)
        std = np.nanstd(observed, axis=(0, 2), dtype=np.float64)
    else:
        mean = X.mean(axis=(0, 2), dtype=np.float64)
        std = X.std(axis=(0, 2), dtype=np.float64)
    # A constant channel would divide by zero; leaving it unscaled just centres it.
    std = np.where(std < 1e-8, 1.0, std)
    return {"mean": mean.tolist(), "std": std.tolist()}


def normalize(X, normalization, lengths=None):
    """X scaled channel by channel with statistics from fit_normalization, as float32. With lengths (N,), the
    steps after each row's length are set to 0 (the training mean): the model ignores them, and explanations
    that start from the all-zeros baseline see padding equal to it."""
    mean = np.asarray(normalization["mean"], dtype=np.float32)[:, None]
    std = np.asarray(normalization["std"], dtype=np.float32)[:, None]
    if X.shape[1] != len(mean):
        raise DataError(
            f"the data has {X.shape[1]} channels but the normalization was fitted on {len(mean)}; "
            "use data with the same columns as the training file"
        )
    scaled = ((X - mean) / std).astype(np.float32, copy=False)
    if lengths is not None and (np.asarray(lengths) < X.shape[2]).any():
        scaled = np.where(padding_mask(lengths, X.shape[2])[:, None, :], np.float32(0), scaled)
    return scaled


def padding_mask(lengths, width) -> np.ndarray:
    """(N, width) bool: True at the steps after each row's length."""
    return np.arange(width)[None, :] >= np.asarray(lengths)[:, None]


def stratified_split(y, val_fraction, seed, class_names=None):
    """(train indices, validation indices), every class in both parts, reproducible per seed."""
    indices = np.arange(len(y), dtype=np.int64)
    if not 0 <= val_fraction < 1:
        raise DataError(f"VAL_FRACTION is {val_fraction}; set --val_fraction to a value in [0, 1)")
    if val_fraction == 0:
        return indices, np.empty(0, dtype=np.int64)

    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        rare = classes[counts.argmin()]
        name = class_names[rare] if class_names is not None else rare
        raise DataError(
            f"class {str(name)!r} has only 1 training sample, too few to put one in both the "
            "training and the validation part; add samples of it or set --val_fraction=0"
        )
    val_size = math.ceil(val_fraction * len(y))
    if val_size < len(classes):
        raise DataError(
            f"VAL_FRACTION={val_fraction} gives a validation part of size {val_size}, fewer "
            f"than the {len(classes)} classes; raise --val_fraction or add samples"
        )
    if len(y) - val_size < len(classes):
        raise DataError(
            f"VAL_FRACTION={val_fraction} leaves a training part of size {len(y) - val_size}, fewer "
            f"than the {len(classes)} classes; lower --val_fraction or add samples"
        )
    from sklearn.model_selection import train_test_split  # here: scikit-learn takes seconds to import

    train_idx, val_idx = train_test_split(
        indices, test_size=val_size, stratify=y, random_state=seed
    )
    return train_idx, val_idx


class CustomDataset(torch.utils.data.Dataset):
    """The whole data set as two tensors; indexing with an int, slice, or index tensor returns (x, y) batches without per-row Python work.
    lengths (N,): each row's series length when the rows differ (`batch` then cuts a batch to its longest row);
    None when every row is full length."""

    def __init__(self, X, y, lengths=None):
        self.X = torch.as_tensor(X, dtype=torch.float32)
        self.y = torch.as_tensor(y, dtype=torch.long)
        self.lengths = None
        if lengths is not None and (np.asarray(lengths.cpu() if torch.is_tensor(lengths) else lengths)
                                    < self.X.shape[2]).any():
            self.lengths = torch.as_tensor(lengths, dtype=torch.long, device=self.X.device)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, idx):
        return self.X[idx], self.y[idx]

    def batch(self, idx, minimum: int = 1):
        """(x, y, lengths): the rows idx, cut to their longest series but at least `minimum` steps (the model's
        pooling factor); lengths None when every row fills that width."""
        x, y = self[idx]
        if self.lengths is None:
            return x, y, None
        lengths = self.lengths[idx]
        width = min(self.X.shape[2], max(int(lengths.max()), minimum))
        return x[..., :width], y, lengths if bool((lengths < width).any()) else None

    def to(self, device):
        return CustomDataset(self.X.to(device), self.y.to(device),
                             None if self.lengths is None else self.lengths.to(device))


def _header(path, label_column, require_label=True):
    """The stripped column names of a readable CSV that has a label and at least one feature."""
    _check_is_text_file(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as file:
            header = next(csv.reader(file), [])
    except UnicodeDecodeError as err:
        raise DataError(_not_utf8_message(path, err)) from None
    except csv.Error:
        raise DataError(_long_cell_message(path, 1)) from None

    header = [name.strip() for name in header]
    if not any(header):
        raise DataError(f"{path}: line 1 is empty; the first line must be the header row")
    if len(header) == 1:
        for delimiter, word in _OTHER_DELIMITERS.items():
            if delimiter in header[0]:
                raise DataError(
                    f"{path}: the header is separated by {word}, not commas; "
                    "save the file as comma-separated CSV"
                )
    _check_column_names(path, header)
    if len(header) - 1 > MAX_COLUMNS:
        raise DataError(f"{path}: has {len(header) - 1:,} feature columns, more than {MAX_COLUMNS:,}; keep fewer "
                        "channels or steps (e.g. average neighbouring steps)")
    if label_column not in header and require_label:
        raise DataError(
            f"{path}: no column {label_column!r} (columns: {_few(header)}); "
            f"rename the label column to {label_column!r} or set LABEL_COLUMN (--label_column=NAME)"
        )
    if header == [label_column]:
        raise DataError(
            f"{path}: the only column is the label {label_column!r}; add numeric feature columns"
        )
    return header


def _check_is_text_file(path):
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path (--train_csv_path / --test_csv_path)")
    if not path.is_file():
        raise DataError(f"{path}: is {_file_kind(path)}, not a regular file; give the path of a CSV file "
                        "(a pipe or device cannot be read twice, as the reader must)")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: is empty (0 bytes); give a CSV with a header row and data rows")
    try:
        with open(path, "rb") as file:
            start = file.read(_SNIFF_BYTES)
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror}); check its permissions") from None
    if b"\x00" in start:
        raise DataError(
            f"{path}: contains NUL bytes, so it is binary or UTF-16, not a text CSV; "
            "save it as UTF-8 comma-separated CSV"
        )


def _file_kind(path):
    mode = path.stat().st_mode
    kinds = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _check_column_names(path, header):
    for number, name in enumerate(header, start=1):
        if len(name) > MAX_NAME_CHARS:
            raise DataError(f"{path}: column {number} of the header has a name of {len(name):,} characters, more "
                            f"than {MAX_NAME_CHARS:,}; shorten it")
        if not name:
            raise DataError(
                f"{path}: column {number} of the header has no name (an index column or a "
                "trailing comma?); name it or remove it, e.g. DataFrame.to_csv(index=False)"
            )
    seen = set()
    for name in header:
        if name in seen:
            raise DataError(f"{path}: column {name!r} appears twice in the header; rename or remove one")
        seen.add(name)


def _check_same_columns(path, features, expected, reference):
    """The file's feature columns are the training file's, in any order."""
    names, expected_names = set(features), set(expected)
    missing = [name for name in expected if name not in names]
    extra = [name for name in features if name not in expected_names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {_few(missing)}")
        if extra:
            parts.append(f"extra {_few(extra)}")
        raise DataError(
            f"{path}: feature columns differ from {reference}'s ({'; '.join(parts)}); "
            "give it the training file's feature columns (any order; the label column may be left out)"
        )


def _is_series(features):
    """True for `<channel>_t<step>` columns and for one numbered run (t0, t1, ... or x1, x2, ...: one prefix,
    consecutive numbers); any other columns are a table's named features, which have no time order."""
    if all(_CHANNEL_STEP.match(name) for name in features):
        return True
    matches = [_NUMBERED.match(name) for name in features]
    if not all(matches) or len({m["prefix"] for m in matches}) != 1:
        return False
    numbers = [int(m["number"]) for m in matches]
    return numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def _channel_layout(path, features):
    """(channel names, feature columns in channel-major, step-ascending order)."""
    matches = [_CHANNEL_STEP.match(name) for name in features]
    if not all(matches):
        return [SINGLE_CHANNEL_NAME], list(features)

    steps_by_channel = {}
    for match in matches:
        steps_by_channel.setdefault(match["channel"], []).append(match)
    length = None
    feature_columns = []
    for channel, channel_matches in steps_by_channel.items():
        channel_matches.sort(key=lambda match: int(match["step"]))
        for expected, match in enumerate(channel_matches):
            if int(match["step"]) != expected:
                raise DataError(
                    f"{path}: channel {channel!r} has no column {channel}_t{expected}; number "
                    "the steps of every channel 0, 1, 2, … without gaps or repeats"
                )
        if length is None:
            length, first_channel = len(channel_matches), channel
        elif len(channel_matches) != length:
            raise DataError(
                f"{path}: channel {channel!r} has {len(channel_matches)} steps but channel "
                f"{first_channel!r} has {length}; give every channel the same number of steps"
            )
        feature_columns.extend(match.string for match in channel_matches)
    return list(steps_by_channel), feature_columns


class _CountedFile(io.RawIOBase):
    """A binary file that tells `step` how many bytes each read returned (read_csv's progress)."""

    def __init__(self, raw, step):
        self.raw, self.step = raw, step

    def readable(self):
        return True

    def tell(self):
        return self.raw.tell()

    def readinto(self, buffer):
        count = self.raw.readinto(buffer)
        self.step(count or 0)
        return count


def _read_rows(path, header, label_column, feature_columns, chunk_rows=None, channels=1, missing_values="interpolate",
               progress=Silent):
    """Yields (features as float32 (n, F) in feature_columns order, stripped labels as a Series or None when the
    file has no label column, lengths (n,), filled cells (n, C, L) or None; see _series_lengths) for parts of at
    most chunk_rows rows (None: the whole file as one part), saying the bytes read to progress."""
    if missing_values not in MISSING_VALUE_MODES:
        raise DataError(f"MISSING_VALUES is {missing_values!r}; use one of {', '.join(MISSING_VALUE_MODES)}")
    features = [name for name in header if name != label_column]
    has_labels = label_column in header
    if chunk_rows is None:
        _check_value_count(path, len(features))
    offset = 0
    try:
        with warnings.catch_warnings(), open(path, "rb") as raw, \
                progress(f"reading {os.path.basename(path)}", os.path.getsize(path), "byte") as step:
            # pandas only warns when the first data row is longer than the header.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frames = pd.read_csv(
                io.BufferedReader(_CountedFile(raw, step), 1 << 20),
                encoding="utf-8-sig",
                names=header,
                header=0,
                index_col=False,
                dtype={**dict.fromkeys(features, np.float32), **({label_column: str} if has_labels else {})},
                keep_default_na=False,
                # every marker is a missing feature value; the label keeps its text ("NA" may be a class)
                na_values={**dict.fromkeys(features, _MISSING_MARKERS), **({label_column: [""]} if has_labels else {})},
                chunksize=chunk_rows,
            )
            for frame in [frames] if chunk_rows is None else frames:
                if frame.empty and not offset:
                    raise DataError(f"{path}: has a header but no data rows; add one row per sample")
                yield _checked_rows(path, frame, label_column if has_labels else None, feature_columns, offset,
                                    channels, missing_values)
                offset += len(frame)
            if not offset:
                raise DataError(f"{path}: has a header but no data rows; add one row per sample")
    except UnicodeDecodeError as err:
        raise DataError(_not_utf8_message(path, err)) from None
    except (ValueError, pd.errors.ParserWarning) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(_malformed_message(path, header, label_column, err)) from None


def _check_value_count(path, features):
    """A file read whole holds at most MAX_VALUES values: its lines counted (bytes, at disk speed) before parsing."""
    with open(path, "rb") as file:
        lines = sum(block.count(b"\n") for block in iter(lambda: file.read(1 << 24), b""))
    if lines * features > MAX_VALUES:
        raise DataError(f"{path}: about {lines:,} rows of {features:,} feature columns, more than {MAX_VALUES:,} "
                        "values in all; train on a sample of the rows (new data of any size can be scored with "
                        "--train=False, which reads it in parts)")


def _checked_rows(path, frame, label_column, feature_columns, offset, channels=1, missing_values="interpolate"):
    """(X, labels, lengths, filled) of one part of the file: every label present and at most MAX_NAME_CHARS long,
    every value finite, except the empty steps of a series that _series_lengths allows; offset: its first row."""
    labels = frame[label_column].str.strip() if label_column else None
    if label_column and (labels.isna() | (labels == "")).any():
        line = _line_number(path, offset + int((labels.isna() | (labels == "")).to_numpy().argmax()))
        raise DataError(f"{path}: line {line} has no {label_column!r} value; fill it in or delete the row")
    if label_column and (labels.str.len() > MAX_NAME_CHARS).any():
        row = int((labels.str.len() > MAX_NAME_CHARS).to_numpy().argmax())
        raise DataError(f"{path}: data row {offset + row + 1} has a {label_column!r} value of "
                        f"{len(labels.iloc[row]):,} characters, more than {MAX_NAME_CHARS:,}; shorten the class names")
    X = frame[feature_columns].to_numpy(dtype=np.float32)
    finite = np.isfinite(X)
    if finite.all():  # a tidy file: every row full length, nothing filled
        return X, labels, np.full(len(X), X.shape[1] // channels, dtype=np.int64), None
    if np.isinf(X).any() or not _is_series(feature_columns):  # a table's features have no order to fill along
        row, column = np.argwhere(np.isinf(X) if np.isinf(X).any() else ~finite)[0]
        where = f"{path}: line {_line_number(path, offset + row)}, column {feature_columns[column]!r}"
        if np.isnan(X[row, column]):
            raise DataError(f"{where} is missing; fill it in or delete the row")
        raise DataError(f"{where} is infinite; replace it with a finite number or delete the row")
    series, lengths, filled = _series_lengths(path, X.reshape(len(X), channels, -1), feature_columns,
                                              lambda row: f"line {_line_number(path, offset + row)}", missing_values)
    return series.reshape(len(X), -1), labels, lengths, filled


def _series_lengths(path, X, feature_columns, place, missing_values):
    """(X with its interior gaps filled, lengths, filled mask or None) of series (n, C, L) that hold NaN;
    place(row) names a row in messages ("line 7").

    A row's series ends after its last step with a value in any channel; the steps after it are padding and stay
    NaN. A gap before that end (in a channel that ended earlier too) is a missing value: with "interpolate" it is
    filled linearly along time from the channel's observed values of the row, with the nearest one at the edges
    (np.interp); with "error" every such row is counted in the message. A row without any value, or with a
    channel without any value, is an error in both modes."""
    n, channels, width = X.shape
    present = ~np.isnan(X)
    any_step = present.any(axis=1)  # (n, L)
    empty = ~any_step.any(axis=1)
    if empty.any():
        raise DataError(f"{path}: {place(int(np.argmax(empty)))} has no feature value "
                        f"(every value is missing{f', {int(empty.sum())} such rows' if empty.sum() > 1 else ''}); "
                        "delete the row or fill it in")
    lengths = (width - np.argmax(any_step[:, ::-1], axis=1)).astype(np.int64)
    inside = ~padding_mask(lengths, width)[:, None, :]
    gaps = ~present & inside
    silent = ~present.any(axis=2)  # (n, C): a channel with no value in its row
    if silent.any():
        row, channel = np.argwhere(silent)[0]
        match = _CHANNEL_STEP.match(feature_columns[channel * width])
        name = match["channel"] if match else SINGLE_CHANNEL_NAME
        raise DataError(f"{path}: {place(row)}: channel {name!r} has no value (every "
                        f"value is missing{f'; {int(silent.any(axis=1).sum())} rows like it' if silent.sum() > 1 else ''}); "
                        "fill it in or delete the row")
    if not gaps.any():
        return X, lengths, None
    if missing_values == "error":
        rows = np.flatnonzero(gaps.any(axis=(1, 2)))
        channel, step = np.argwhere(gaps[rows[0]])[0]
        raise DataError(f"{path}: {len(rows)} row(s) have missing values inside their series ({int(gaps.sum())} "
                        f"cells; first on {place(rows[0])}, column "
                        f"{feature_columns[channel * width + step]!r}); fill them in, delete those rows, or set "
                        "--missing_values=interpolate (empty cells at the end of a row only shorten its series)")
    X = X.copy()
    steps = np.arange(width)
    for row, channel in np.argwhere(gaps.any(axis=2)):
        observed = present[row, channel, :lengths[row]]
        known = steps[:lengths[row]][observed]
        X[row, channel, :lengths[row]] = np.interp(steps[:lengths[row]], known, X[row, channel, known])
    return X, lengths, gaps


def _malformed_message(path, header, label_column, err):
    """Where pandas failed, found again with the csv module because pandas does not say."""
    feature_positions = [i for i, name in enumerate(header) if name != label_column]
    for line, fields in _data_rows(path):
        if len(fields) != len(header):
            return (
                f"{path}: line {line} has {len(fields)} fields but the header has {len(header)}; "
                "give every row one value per column"
            )
        for i in feature_positions:
            text = fields[i].strip()
            where = f"{path}: line {line}, column {header[i]!r}"
            if text in _MISSING_MARKERS:
                return f"{where} is missing ({text!r}); fill it in or delete the row"
            if not _is_number(text):
                return (
                    f"{where} holds {text!r}, which is not a number; "
                    "replace it with a number or delete the row"
                )
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"{path}: cannot be parsed as CSV ({reason}); check that it is a comma-separated file"


def _data_rows(path):
    """(line number, fields) of each data row, skipping blank lines as pandas does."""
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.reader(file)
        try:
            next(reader)
            for fields in reader:
                # pandas also skips lines that hold nothing but whitespace.
                if len(fields) > 1 or "".join(fields).strip():
                    yield reader.line_num, fields
        except csv.Error:
            raise DataError(_long_cell_message(path, reader.line_num)) from None


def _line_number(path, row_index):
    """The 1-based line in the file (header = line 1) of 0-based data row row_index."""
    for index, (line, _) in enumerate(_data_rows(path)):
        if index == row_index:
            return line
    raise IndexError(f"{path} has no data row {row_index}")


def _class_names(path, labels):
    """Training classes, numerically ordered when every label is a number, else alphabetically."""
    names = list(labels.unique())
    most = SETTING_RANGES["num_classes"].high
    if len(names) > most:
        raise DataError(f"{path}: has {len(names):,} classes, more than {most:,} (figures, tables and per-class "
                        "arrays grow with them); merge rare classes or train on fewer")
    if len(names) < 2:
        raise DataError(
            f"{path}: every row has the class {names[0]!r}; a classifier needs at least two "
            "classes, add samples of another class"
        )
    if all(_is_number(name) for name in names):
        return sorted(names, key=lambda name: (float(name), name))
    return sorted(names)


def _class_indices(labels, class_names):
    """Class index of each label; -1 for a label that is not in class_names."""
    return pd.Index(class_names).get_indexer(labels).astype(np.int64)


def _unseen_classes_message(test_path, train_path, labels, y, offset=0):
    unseen = labels[y < 0]
    line = _line_number(test_path, offset + int(np.argmax(y < 0)))
    return (
        f"{test_path}: classes not in {train_path}: {_few(list(unseen.unique()))} "
        f"(first on line {line}); remove those rows or add training samples of those classes"
    )


def _long_cell_message(path, line):
    return (f"{path}: line {line} has a cell of more than {MAX_CELL_CHARS:,} characters; a value or label that long "
            "is not data this program reads, check the file")


def _not_utf8_message(path, err):
    return (
        f"{path}: is not UTF-8 text (invalid byte at position {err.start}); "
        "save it as UTF-8 comma-separated CSV"
    )


def _is_number(text):
    # Python accepts "1_000" and "NAN" as floats where pandas does not.
    try:
        return not math.isnan(float(text)) and "_" not in text
    except ValueError:
        return False


def _few(names):
    shown = [repr(name) for name in names[:_NAMES_SHOWN]]
    more = f", … {len(names)} in all" if len(names) > _NAMES_SHOWN else ""
    return ", ".join(shown) + more


class SeriesCounts:
    """How long a file's series are and which cells were filled, counted table by table (iter_table's parts), for
    the log, metrics.json and the report: nothing is filled silently."""

    def __init__(self, channel_names):
        self.channel_names = list(channel_names)
        self.rows = self.short_rows = self.filled_rows = 0
        self.shortest = self.longest = None
        self.filled = np.zeros(len(self.channel_names), dtype=np.int64)

    def add(self, table: SeriesTable) -> "SeriesCounts":
        lengths = table.lengths
        self.rows += len(lengths)
        self.short_rows += int((lengths < table.X.shape[2]).sum())
        self.shortest = int(lengths.min()) if self.shortest is None else min(self.shortest, int(lengths.min()))
        self.longest = int(lengths.max()) if self.longest is None else max(self.longest, int(lengths.max()))
        self.filled += np.asarray(table.filled_per_channel(), dtype=np.int64)
        self.filled_rows += table.filled_rows()
        return self

    def summary(self) -> dict:
        return {"rows": self.rows, "length_min": self.shortest, "length_max": self.longest,
                "shorter_rows": self.short_rows, "filled_rows": self.filled_rows,
                "filled_cells": dict(zip(self.channel_names, self.filled.tolist()))}

    def message(self, name) -> str:
        """One log line: the lengths, and what was interpolated per channel."""
        lengths = (f"{self.short_rows} of {self.rows} rows shorter than the columns, lengths {self.shortest}-"
                   f"{self.longest}" if self.short_rows else f"all {self.rows} rows {self.longest} steps long")
        filled = "; ".join(f"{c}: {n}" for c, n in zip(self.channel_names, self.filled.tolist()) if n)
        gaps = (f"; interpolated {int(self.filled.sum())} missing cells in {self.filled_rows} rows ({filled})"
                if self.filled_rows else "")
        return f"{name}: {lengths}{gaps}"
