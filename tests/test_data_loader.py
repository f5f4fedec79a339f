import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent.parent))
from data_loader import (  # noqa: E402
    CustomDataset,
    DataError,
    fit_normalization,
    normalize,
    read_train_test,
    stratified_split,
)

VALID = "a,b,label\n1,2,x\n3,4,y\n5,6,x\n"


def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def load(tmp_path, train, test=VALID, label_column="label"):
    return read_train_test(
        write(tmp_path, "train.csv", train), write(tmp_path, "test.csv", test), label_column
    )


def rejection(tmp_path, train, test=VALID, label_column="label"):
    """The message of the DataError, checked to be one line that names the file at fault."""
    with pytest.raises(DataError) as info:
        load(tmp_path, train, test, label_column)
    message = str(info.value)
    assert "\n" not in message
    assert "train.csv" in message or "test.csv" in message
    return message


# Channel inference


def test_channel_columns_are_grouped_channel_major_in_step_order(tmp_path):
    csv = "a_t1,b_t1,label,b_t0,a_t0\n1,11,x,10,0\n3,13,y,12,2\n"
    train, _ = load(tmp_path, csv, csv)
    assert train.channel_names == ["a", "b"]
    assert train.feature_columns == ["a_t0", "a_t1", "b_t0", "b_t1"]
    np.testing.assert_array_equal(train.X[0], [[0, 1], [10, 11]])
    assert train.X.shape == (2, 2, 2)


def test_channels_keep_the_order_of_their_first_column(tmp_path):
    csv = "z_t0,a_t0,label\n1,2,x\n3,4,y\n"
    train, _ = load(tmp_path, csv, csv)
    assert train.channel_names == ["z", "a"]


def test_plain_columns_form_one_channel_in_file_order(tmp_path):
    csv = "height,weight,label\n1,2,x\n3,4,y\n"
    train, _ = load(tmp_path, csv, csv)
    assert train.X.shape == (2, 1, 2)
    assert train.feature_columns == ["height", "weight"]
    np.testing.assert_array_equal(train.X[:, 0], [[1, 2], [3, 4]])


def test_univariate_step_columns_form_one_channel(tmp_path):
    csv = "t0,t1,t2,label\n1,2,3,x\n4,5,6,y\n"
    train, _ = load(tmp_path, csv, csv)
    assert train.X.shape == (2, 1, 3)
    assert len(train.channel_names) == 1


@pytest.mark.parametrize("columns", ["height,weight,age", "x1,x2,y3", "t0,t2,t3"])
def test_named_features_of_a_table_keep_their_names(tmp_path, columns):
    csv = f"{columns},label\n1,2,3,x\n4,5,6,y\n"
    train, test = load(tmp_path, csv, csv)
    assert train.feature_names == test.feature_names == columns.split(",")


@pytest.mark.parametrize("columns", ["t0,t1,t2", "x1,x2,x3", "a_t0,a_t1,a_t2", "0,1,2"])
def test_numbered_columns_are_a_time_series_without_feature_names(tmp_path, columns):
    csv = f"{columns},label\n1,2,3,x\n4,5,6,y\n"
    train, _ = load(tmp_path, csv, csv)
    assert train.feature_names is None


def test_channel_with_a_missing_step_is_rejected(tmp_path):
    csv = "a_t0,a_t2,b_t0,b_t1,label\n1,2,3,4,x\n5,6,7,8,y\n"
    assert "a_t1" in rejection(tmp_path, csv, csv)


def test_channels_of_different_lengths_are_rejected(tmp_path):
    csv = "a_t0,a_t1,b_t0,label\n1,2,3,x\n4,5,6,y\n"
    assert "'b'" in rejection(tmp_path, csv, csv)


# Labels


def test_string_labels_are_sorted_alphabetically(tmp_path):
    train, _ = load(tmp_path, "a,label\n1,walk\n2,run\n3,sit\n", "a,label\n1,run\n")
    assert train.class_names == ["run", "sit", "walk"]
    np.testing.assert_array_equal(train.y, [2, 0, 1])
    assert train.y.dtype == np.int64


def test_numeric_labels_are_sorted_numerically(tmp_path):
    train, _ = load(tmp_path, "a,label\n1,10\n2,2\n3,1\n", "a,label\n1,2\n")
    assert train.class_names == ["1", "2", "10"]


def test_float_labels_load(tmp_path):
    train, _ = load(tmp_path, "a,label\n1,2.0\n2,1.0\n", "a,label\n1,1.0\n")
    assert train.class_names == ["1.0", "2.0"]


def test_labels_are_stripped_of_whitespace(tmp_path):
    train, _ = load(tmp_path, "a,label\n1, x\n2,y \n", "a,label\n1,x\n")
    assert train.class_names == ["x", "y"]


def test_a_label_that_pandas_would_call_missing_is_a_class(tmp_path):
    train, _ = load(tmp_path, "a,label\n1,NA\n2,None\n", "a,label\n1,NA\n")
    assert train.class_names == ["NA", "None"]


def test_test_labels_use_the_training_mapping(tmp_path):
    _, test = load(tmp_path, "a,label\n1,x\n2,y\n3,z\n", "a,label\n1,z\n2,x\n")
    assert test.class_names == ["x", "y", "z"]
    np.testing.assert_array_equal(test.y, [2, 0])


def test_row_indices_count_data_rows_from_zero(tmp_path):
    train, _ = load(tmp_path, VALID)
    np.testing.assert_array_equal(train.row_indices, [0, 1, 2])
    assert train.row_indices.dtype == np.int64


# Normalization


def test_normalization_statistics_are_the_per_channel_mean_and_std():
    X = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    stats = fit_normalization(X)
    np.testing.assert_allclose(stats["mean"], [X[:, 0].mean(), X[:, 1].mean()])
    np.testing.assert_allclose(stats["std"], [X[:, 0].std(), X[:, 1].std()])


def test_normalizing_test_data_uses_the_training_statistics():
    train_X = np.array([[[0.0, 2.0]], [[4.0, 6.0]]], dtype=np.float32)
    test_X = np.array([[[3.0, 3.0]]], dtype=np.float32)
    normalized = normalize(test_X, fit_normalization(train_X))
    assert normalized.dtype == np.float32
    np.testing.assert_allclose(normalized, [[[0.0, 0.0]]])


def test_constant_channel_normalizes_without_nan():
    X = np.stack([np.full((3, 4), 5.0), np.arange(12.0).reshape(3, 4)], axis=1).astype(np.float32)
    normalized = normalize(X, fit_normalization(X))
    assert np.isfinite(normalized).all()
    np.testing.assert_array_equal(normalized[:, 0], 0.0)


def test_normalization_loads_from_a_weights_only_checkpoint(tmp_path):
    stats = fit_normalization(np.ones((2, 3, 4), dtype=np.float32))
    torch.save({"normalization": stats}, tmp_path / "checkpoint.pth")
    assert torch.load(tmp_path / "checkpoint.pth", weights_only=True)["normalization"] == stats


def test_normalizing_data_with_another_channel_count_is_rejected():
    stats = fit_normalization(np.ones((2, 3, 4), dtype=np.float32))
    with pytest.raises(DataError):
        normalize(np.ones((2, 2, 4), dtype=np.float32), stats)


# Stratified split

LABELS = np.array([0] * 10 + [1] * 6 + [2] * 4)


def test_split_keeps_every_class_in_both_parts():
    train_idx, val_idx = stratified_split(LABELS, 0.25, seed=0)
    assert set(LABELS[train_idx]) == set(LABELS[val_idx]) == {0, 1, 2}
    assert sorted(np.concatenate([train_idx, val_idx])) == list(range(len(LABELS)))


def test_split_with_the_same_seed_is_the_same():
    first, second = stratified_split(LABELS, 0.25, seed=7), stratified_split(LABELS, 0.25, seed=7)
    np.testing.assert_array_equal(first[1], second[1])


def test_split_with_zero_fraction_keeps_everything_for_training():
    train_idx, val_idx = stratified_split(LABELS, 0.0, seed=0)
    np.testing.assert_array_equal(train_idx, np.arange(len(LABELS)))
    assert len(val_idx) == 0


def test_split_of_a_class_with_one_sample_names_the_class():
    with pytest.raises(DataError, match="'lonely'.*--val_fraction"):
        stratified_split(np.array([0, 0, 0, 1]), 0.5, seed=0, class_names=["many", "lonely"])


def test_split_with_fewer_validation_samples_than_classes_is_rejected():
    with pytest.raises(DataError, match="fewer than the 3 classes"):
        stratified_split(LABELS, 0.05, seed=0)


# CustomDataset


def test_dataset_slice_returns_a_batch_of_tensors():
    dataset = CustomDataset(np.zeros((5, 2, 3), dtype=np.float64), np.arange(5))
    x, y = dataset[1:4]
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32
    assert y.tolist() == [1, 2, 3] and y.dtype == torch.long


def test_dataset_index_tensor_returns_those_rows():
    dataset = CustomDataset(np.zeros((5, 2, 3), dtype=np.float32), np.arange(5))
    _, y = dataset[torch.tensor([4, 0])]
    assert y.tolist() == [4, 0]
    assert len(dataset) == 5


# Bad input


def test_missing_file_is_rejected(tmp_path):
    with pytest.raises(DataError, match="train.csv: no such file"):
        read_train_test(tmp_path / "train.csv", write(tmp_path, "test.csv", VALID))


def test_directory_instead_of_file_is_rejected(tmp_path):
    (tmp_path / "train.csv").mkdir()
    with pytest.raises(DataError, match="directory"):
        read_train_test(tmp_path / "train.csv", write(tmp_path, "test.csv", VALID))


def test_empty_file_is_rejected(tmp_path):
    assert "empty" in rejection(tmp_path, "")


def test_header_without_rows_is_rejected(tmp_path):
    assert "no data rows" in rejection(tmp_path, "a,b,label\n")


def test_binary_content_is_rejected(tmp_path):
    assert "NUL" in rejection(tmp_path, b"a,b,label\n\x00\x01\x02,\x00,x\n")


def test_invalid_utf8_is_rejected(tmp_path):
    assert "UTF-8" in rejection(tmp_path, b"a,b,label\n1,2,\xff\xfe\n3,4,y\n")


def test_semicolon_delimiter_is_rejected(tmp_path):
    assert "semicolons" in rejection(tmp_path, "a;b;label\n1;2;x\n3;4;y\n")


def test_tab_delimiter_is_rejected(tmp_path):
    assert "tabs" in rejection(tmp_path, "a\tb\tlabel\n1\t2\tx\n3\t4\ty\n")


def test_missing_label_column_lists_the_columns_and_names_the_setting(tmp_path):
    message = rejection(tmp_path, "a,b,class\n1,2,x\n3,4,y\n")
    assert "'class'" in message and "LABEL_COLUMN" in message


def test_other_label_column_can_be_chosen(tmp_path):
    csv = "a,b,class\n1,2,x\n3,4,y\n"
    train, _ = load(tmp_path, csv, csv, label_column="class")
    assert train.feature_columns == ["a", "b"]


def test_missing_label_value_names_the_line(tmp_path):
    assert "line 3" in rejection(tmp_path, "a,b,label\n1,2,x\n3,4,\n5,6,y\n")


def test_non_numeric_value_names_line_column_and_value(tmp_path):
    message = rejection(tmp_path, "a,b,label\n1,2,x\n3,oops,y\n")
    assert "line 3" in message and "'b'" in message and "'oops'" in message


def test_empty_feature_value_names_line_and_column(tmp_path):
    message = rejection(tmp_path, "a,b,label\n1,2,x\n3,,y\n")
    assert "line 3" in message and "'b'" in message and "missing" in message


def test_na_feature_value_is_reported_as_missing(tmp_path):
    message = rejection(tmp_path, "a,b,label\n1,NA,x\n3,4,y\n")
    assert "line 2" in message and "missing" in message


def test_infinite_value_is_rejected(tmp_path):
    message = rejection(tmp_path, "a,b,label\n1,2,x\n-inf,4,y\n")
    assert "line 3" in message and "'a'" in message and "infinite" in message


def test_line_numbers_count_blank_lines(tmp_path):
    assert "line 4" in rejection(tmp_path, "a,b,label\n1,2,x\n\n3,,y\n")


def test_row_with_extra_fields_is_rejected(tmp_path):
    assert "line 3 has 4 fields" in rejection(tmp_path, "a,b,label\n1,2,x\n3,4,y,5\n")


def test_duplicate_column_names_are_rejected(tmp_path):
    assert "'a' appears twice" in rejection(tmp_path, "a,a,label\n1,2,x\n3,4,y\n")


def test_unnamed_column_is_rejected(tmp_path):
    assert "column 1" in rejection(tmp_path, ",a,label\n0,1,x\n1,3,y\n")


def test_label_as_the_only_column_is_rejected(tmp_path):
    assert "feature" in rejection(tmp_path, "label\nx\ny\n")


def test_single_training_class_is_rejected(tmp_path):
    assert "two classes" in rejection(tmp_path, "a,label\n1,x\n2,x\n", "a,label\n1,x\n")


def test_test_classes_absent_from_training_are_named(tmp_path):
    message = rejection(tmp_path, VALID, "a,b,label\n1,2,x\n3,4,zebra\n")
    assert "test.csv" in message and "'zebra'" in message and "line 3" in message


def test_test_columns_that_differ_are_named(tmp_path):
    message = rejection(tmp_path, VALID, "a,c,label\n1,2,x\n")
    assert "missing 'b'" in message and "extra 'c'" in message


# Awkward but valid input


def test_byte_order_mark_is_ignored(tmp_path):
    train, _ = load(tmp_path, ("\ufeff" + VALID).encode("utf-8"))
    assert train.feature_columns == ["a", "b"]


def test_crlf_line_endings_load(tmp_path):
    train, _ = load(tmp_path, VALID.replace("\n", "\r\n"))
    assert train.class_names == ["x", "y"]
    np.testing.assert_array_equal(train.X[:, 0, 1], [2, 4, 6])


def test_test_columns_in_another_order_are_reordered(tmp_path):
    _, test = load(tmp_path, VALID, "label,b,a\ny,20,10\n")
    np.testing.assert_array_equal(test.X[0, 0], [10, 20])
    assert test.y.tolist() == [1]


def test_single_feature_column_loads(tmp_path):
    csv = "a,label\n1,x\n2,y\n"
    train, _ = load(tmp_path, csv, csv)
    assert train.X.shape == (2, 1, 1)


def test_long_series_loads(tmp_path):
    header = ",".join(f"s_t{i}" for i in range(5000)) + ",label\n"
    rows = "".join(",".join(["1.5"] * 5000) + f",{label}\n" for label in "xyxy")
    train, _ = load(tmp_path, header + rows, header + rows)
    assert train.X.shape == (4, 1, 5000)
    assert train.X.dtype == np.float32


def test_default_data_loads():
    root = Path(__file__).parent.parent
    train, test = read_train_test(root / "train_set.csv", root / "test_set.csv")
    assert train.X.shape == (40, 6, 100)
    assert len(train.class_names) == 4
    assert test.X.shape[1:] == (6, 100)
