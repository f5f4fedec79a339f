"""The field's file formats (formats.py), chosen by extension wherever a CSV is read: each becomes the table its
CSV would, with the CSV's checks and one-line errors. Files are written by the tests; .ts and .arff need aeon,
.parquet pyarrow (skipped without them)."""
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run_args
from data_loader import DataError, read_table, read_train, read_train_test


def series(rows=12, channels=2, length=30, unequal=False, seed=0):
    rng = np.random.default_rng(seed)
    X = [rng.normal(size=(channels, length - (i % 5 if unequal else 0))) for i in range(rows)]
    return X, np.array(["a", "b", "c"] * (rows // 3))


def save_ts(path, X, y):
    from aeon.datasets import save_to_ts_file

    save_to_ts_file(X, y=y, label_type="classification", path=str(path.parent), problem_name=path.stem)
    return path


def test_npz_trains_and_npy_is_new_data(tmp_path):
    X, y = series()
    np.savez(tmp_path / "train.npz", X=np.stack(X), y=y)
    np.save(tmp_path / "new.npy", np.stack(X[:4]))
    train, new = read_train_test(tmp_path / "train.npz", tmp_path / "new.npy")
    assert train.X.shape == (12, 2, 30) and train.class_names == ["a", "b", "c"] and train.channel_names == ["ch0", "ch1"]
    assert new.y is None and np.allclose(new.X, np.stack(X[:4]))
    one_channel = read_train(_saved(tmp_path / "one.npz", X=np.stack(X)[:, 0], y=y))  # (n, L): one channel
    assert one_channel.X.shape == (12, 1, 30)


def _saved(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_bad_files_are_one_line_errors(tmp_path):
    X, y = series()
    np.save(tmp_path / "new.npy", np.stack(X))
    cases = {"new.npy": "without labels", "missing.npz": "no such file",
             _saved(tmp_path / "noX.npz", series=np.stack(X)).name: "no array named X",
             _saved(tmp_path / "short_y.npz", X=np.stack(X), y=y[:3]).name: "one label per row",
             _saved(tmp_path / "one_class.npz", X=np.stack(X), y=np.zeros(12)).name: "two classes"}
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    cases["broken.npz"] = "not a readable .npz file"
    for name, words in cases.items():
        with pytest.raises(DataError, match=words) as error:
            read_train(tmp_path / name)
        assert "\n" not in str(error.value)
    np.savez(tmp_path / "train.npz", X=np.stack(X), y=y)
    np.save(tmp_path / "other.npy", np.stack(X)[:, :, :20])  # other columns than the training file's
    with pytest.raises(DataError, match="column"):
        read_train_test(tmp_path / "train.npz", tmp_path / "other.npy")


def test_parquet_in_the_csv_layout(tmp_path):
    pytest.importorskip("pyarrow")
    frame = pd.read_csv(ROOT / "test_set.csv")
    frame.to_parquet(tmp_path / "test.parquet")
    from_csv, from_parquet = read_train(ROOT / "test_set.csv"), read_train(tmp_path / "test.parquet")
    assert from_parquet.channel_names == from_csv.channel_names and np.array_equal(from_parquet.X, from_csv.X)
    assert from_parquet.class_names == from_csv.class_names and np.array_equal(from_parquet.y, from_csv.y)


@pytest.mark.parametrize("unequal", [False, True])
def test_ts_files_equal_and_unequal_length(tmp_path, unequal):
    pytest.importorskip("aeon")
    X, y = series(unequal=unequal)
    train = read_train(save_ts(tmp_path / "train.ts", X, y))
    assert train.X.shape == (12, 2, 30) and train.class_names == ["a", "b", "c"]
    assert list(train.lengths) == [x.shape[1] for x in X]
    layout = {"class_names": train.class_names, "channel_names": train.channel_names,
              "feature_columns": train.feature_columns}
    test = read_table(save_ts(tmp_path / "test.ts", X[:6], y[:6]), layout)
    assert np.array_equal(test.y, train.y[:6])


def test_arff_files(tmp_path):
    pytest.importorskip("aeon")
    X, y = series(channels=1)
    lines = ["@relation demo", *[f"@attribute att{t} numeric" for t in range(30)], "@attribute target {a,b,c}",
             "@data", *[",".join(f"{v:.6f}" for v in x[0]) + f",{label}" for x, label in zip(X, y)]]
    (tmp_path / "train.arff").write_text("\n".join(lines) + "\n")
    train = read_train(tmp_path / "train.arff")
    assert train.X.shape == (12, 1, 30) and np.allclose(train.X[:, 0], np.stack(X)[:, 0], atol=1e-6)


def test_without_aeon_a_ts_file_is_a_one_line_error_naming_the_extra(tmp_path, monkeypatch):
    (tmp_path / "train.ts").write_text("@data\n")
    monkeypatch.setitem(sys.modules, "aeon", None)
    with pytest.raises(DataError, match=r"pip install 'train-explain\[aeon\]'"):
        read_train(tmp_path / "train.ts")


@pytest.mark.slow
def test_an_unequal_length_ts_set_trains_and_explains_from_the_command_line(tmp_path):
    pytest.importorskip("aeon")
    import json

    import train_explain

    X, y = series(unequal=True)
    train, test = save_ts(tmp_path / "train.ts", X, y), save_ts(tmp_path / "test.ts", X[:6], y[:6])
    assert train_explain.main(run_args(train, test, tmp_path / "out", "--attribution_methods=integrated_gradients",
                                       "--global_explain_rows=0")) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["series"]["explained_lengths"] and len(pd.read_csv(tmp_path / "out" / "predictions.csv")) == 6
    assert np.load(tmp_path / "out" / "shap_values.npz")["lengths"].shape == (2,)
