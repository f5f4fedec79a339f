"""Rows of different lengths and gaps inside a series: reading, the model, every explanation, one whole run."""
import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from hybrid_explain.explainers import attributions
from hybrid_explain.pipeline import stages
from api import predict
import train_explain
from conftest import run_args
from data_loader import DataError, fit_normalization, iter_table, normalize, read_table, read_train
from hybrid_explain.model import HybridCNNLSTMAttention, predict_logits
from hybrid_explain.checkpoint import check_checkpoint, checkpoint_dict
from hybrid_explain.explainers.shapley import held_background, interventional_shap

HEADER = "label,a_t0,a_t1,a_t2,a_t3,b_t0,b_t1,b_t2,b_t3\n"


def csv(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def small_model(channels=2, length=24, classes=3, seed=0):
    torch.manual_seed(seed)
    return HybridCNNLSTMAttention(channels, length, classes, cnn_channels=8, lstm_hidden_size=8,
                                  attention_heads=2, min_pooled_length=4).eval()


# -----------------------------------------------------------------------------
# Reading
def test_trailing_empty_cells_end_a_row_and_are_not_filled(tmp_path):
    table = read_train(csv(tmp_path, HEADER + "x,1,2,,,3,4,,\ny,1,2,3,4,5,6,7,8\n"), missing_values="error")
    assert table.lengths.tolist() == [2, 4]
    assert np.isnan(table.X[0, :, 2:]).all() and table.filled is None
    assert table.filled_per_channel() == [0, 0]


def test_a_channel_that_ends_early_is_held_at_its_last_value_up_to_the_row_length(tmp_path):
    table = read_train(csv(tmp_path, HEADER + "x,1,2,3,,5,6,,\ny,1,2,3,4,5,6,7,8\n"))
    assert table.lengths[0] == 3  # channel a still has a value at step 2
    assert table.X[0, 1, :3].tolist() == [5, 6, 6]
    assert table.filled_per_channel() == [0, 1] and table.filled_rows() == 1


def test_interior_gaps_are_interpolated_linearly_and_from_the_nearest_value_at_the_edges(tmp_path):
    table = read_train(csv(tmp_path, HEADER + "x,1,,3,7,NaN,2,NA,8\ny,1,2,3,4,5,6,7,8\n"))
    assert table.X[0, 0].tolist() == [1, 2, 3, 7]
    assert table.X[0, 1].tolist() == [2, 2, 5, 8]
    assert table.filled_per_channel() == [1, 2] and table.filled_rows() == 1


def test_error_mode_counts_every_row_with_a_gap(tmp_path):
    path = csv(tmp_path, HEADER + "x,1,,3,4,1,2,3,4\ny,1,2,3,4,1,2,,4\nx,1,2,3,4,1,2,3,4\ny,1,2,,,1,2,,\n")
    with pytest.raises(DataError) as info:
        read_train(path, missing_values="error")
    message = str(info.value)
    assert "2 row(s)" in message and "line 2" in message and "'a_t1'" in message and "\n" not in message


@pytest.mark.parametrize("row, words", [("x,,,,,,,,", "no feature value"), ("x,1,2,3,4,,,,", "channel 'b'")])
def test_a_row_or_a_channel_without_any_value_is_an_error_in_both_modes(tmp_path, row, words):
    for mode in ("interpolate", "error"):
        with pytest.raises(DataError, match=words):
            read_train(csv(tmp_path, HEADER + row + "\ny,1,2,3,4,5,6,7,8\n"), missing_values=mode)


def test_a_table_with_an_empty_cell_is_still_an_error(tmp_path):
    with pytest.raises(DataError, match="missing"):
        read_train(csv(tmp_path, "a,b,label\n1,,x\n3,4,y\n"))


def test_a_tidy_file_reads_as_before_every_row_full_length(tmp_path):
    table = read_train(csv(tmp_path, HEADER + "x,1,2,3,4,5,6,7,8\ny,2,3,4,5,6,7,8,9\n"))
    assert table.lengths.tolist() == [4, 4] and table.filled is None
    assert not np.isnan(table.X).any()


def test_lengths_flow_through_the_parts_of_a_file_read_in_chunks(tmp_path):
    path = csv(tmp_path, HEADER + "x,1,2,,,3,4,,\ny,1,2,3,4,5,6,7,8\nx,1,,,,1,,,\n")
    whole = read_train(path)
    layout = {"class_names": whole.class_names, "channel_names": whole.channel_names,
              "feature_columns": whole.feature_columns}
    parts = list(iter_table(path, layout, chunk_rows=2))
    assert np.concatenate([p.lengths for p in parts]).tolist() == whole.lengths.tolist() == [2, 4, 1]
    assert read_table(path, layout).lengths.tolist() == [2, 4, 1]


def test_normalization_is_fitted_on_observed_values_only(tmp_path):
    table = read_train(csv(tmp_path, HEADER + "x,1,,3,,10,20,,\ny,5,5,5,5,30,40,50,60\n"))
    stats = fit_normalization(table.X, table.filled)
    assert stats["mean"][0] == pytest.approx(np.mean([1, 3, 5, 5, 5, 5]))  # not the interpolated 2
    assert stats["mean"][1] == pytest.approx(np.mean([10, 20, 30, 40, 50, 60]))
    assert (normalize(table.X, stats, table.lengths)[0, :, 3:] == 0).all()


# -----------------------------------------------------------------------------
# Model
LENGTHS = torch.tensor([24, 13, 6, 2])


def batch(seed=0, padding=0.0):
    x = torch.randn(len(LENGTHS), 2, 24, generator=torch.Generator().manual_seed(seed))
    for i, n in enumerate(LENGTHS):
        x[i, :, n:] = padding
    return x


def assert_padding_gives_the_logits_of_each_series_alone(model, padding):
    """model(x padded with `padding`, lengths) equals each series run alone; every length is at least the pooling
    factor (2 x 2), so that each runs alone."""
    lengths = torch.tensor([24, 13, 6, 4])
    x = batch()
    alone = torch.cat([model(x[i:i + 1, :, :n]) for i, n in enumerate(lengths.tolist())])
    padded = x.clone()
    for i, n in enumerate(lengths.tolist()):
        padded[i, :, n:] = padding
    torch.testing.assert_close(model(padded, lengths), alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("padding", [0.0, float("nan"), 1e6])
def test_padding_of_any_value_gives_the_logits_of_the_series_alone(padding):
    assert_padding_gives_the_logits_of_each_series_alone(small_model(), padding)


def test_a_series_shorter_than_the_pooling_factor_is_read_as_if_zero_padded_to_it():
    model = small_model()  # pools 2 x 2: four steps make one LSTM step
    x = batch(padding=float("nan"))[3:]  # 2 steps
    zero_padded = torch.nan_to_num(x[:, :, :4], nan=0.0)
    torch.testing.assert_close(model(x, torch.tensor([2])), model(zero_padded), rtol=1e-5, atol=1e-5)


def test_a_mixed_length_batch_equals_each_series_run_alone_through_predict_logits():
    model = small_model()
    together = predict_logits(model, batch(padding=float("nan")), lengths=LENGTHS)
    alone = torch.cat([predict_logits(model, batch()[i:i + 1], lengths=LENGTHS[i:i + 1]) for i in range(len(LENGTHS))])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_no_lengths_or_all_full_lengths_is_the_unchanged_forward_pass():
    model, x = small_model(), batch()
    assert torch.equal(model(x), model(x, torch.full((len(x),), 24)))


def test_a_series_longer_than_any_training_series_is_read_whole():
    model = small_model(length=24)
    x = torch.randn(2, 2, 60)
    logits = model(x, torch.tensor([60, 40]))
    torch.testing.assert_close(logits[1], model(x[1:, :, :40])[0], rtol=1e-5, atol=1e-5)


def small_checkpoint(model):
    hyperparameters = {"input_channels": 2, "sequence_length": 24, "num_classes": 3, "cnn_channels": 8,
                       "lstm_hidden_size": 8, "lstm_layers": 1, "attention_heads": 2, "dropout": 0.1,
                       "kernel_size": 7, "min_pooled_length": 4, "max_pooled_length": 128}
    return checkpoint_dict(model, hyperparameters, ["a", "b", "c"], ["a", "b"],
                           [f"{c}_t{t}" for c in "ab" for t in range(24)], {"mean": [0, 0], "std": [1, 1]}, 1,
                           float("nan"), float("nan"))


def test_the_checkpoint_records_the_length_range_and_older_checkpoints_without_it_load():
    checkpoint = small_checkpoint(small_model())
    check_checkpoint(checkpoint, "old.pth")
    check_checkpoint({**checkpoint, "length_range": [6, 24]}, "new.pth")
    with pytest.raises(ValueError, match="length_range"):
        check_checkpoint({**checkpoint, "length_range": [6, 30]}, "bad.pth")


def test_api_predict_reads_an_array_to_the_given_lengths():
    model = small_model()
    prediction = predict((model, small_checkpoint(model)), batch(padding=float("nan")).numpy(), lengths=LENGTHS.numpy())
    expected = torch.softmax(predict_logits(model, batch(), lengths=LENGTHS), 1).numpy()
    np.testing.assert_allclose(prediction.probabilities, expected, atol=1e-6)


# -----------------------------------------------------------------------------
# Explanations
def test_every_method_gives_exactly_zero_after_each_row_end():
    model, x = small_model(), batch(padding=0.0)
    target = torch.tensor([0, 1, 2, 0])
    methods = attributions.method_functions({"ig_steps": 8, "occlusion_window": 5, "seed": 0},
                                            names=list(attributions.METHODS))
    assert {"saliency_tsr", "integrated_gradients_tsr", "lrp_epsilon"} <= set(methods)
    maps, _ = attributions.compute_maps(methods, model, x, target, LENGTHS)
    for name, m in maps.items():
        for i, n in enumerate(LENGTHS.tolist()):
            assert (m[i, :, n:] == 0).all(), name
        assert np.abs(m).sum() > 0, name  # not zero everywhere (Grad-CAM's ReLU may zero a whole sample)


def test_attention_weights_of_padded_keys_are_zero_and_each_real_query_sums_to_one():
    model, x = small_model(), batch(padding=float("nan"))
    with attributions.AttentionRecorder(model.attention) as recorder:
        weights = recorder.record(model, x, lengths=LENGTHS)
    steps = model.pooled_lengths(LENGTHS, 24)[1]
    for i, t in enumerate(steps.tolist()):
        assert (weights[i, :, :, t:] == 0).all()
        torch.testing.assert_close(weights[i, :, :t].sum(-1), torch.ones(2, t))


def brute_force_shapley(f, x, length, background, background_lengths, groups):
    """Shapley values of each player by the definition, the background held at its last value (independently)."""
    held = np.stack([b[:, np.minimum(np.arange(b.shape[1]), n - 1)] for b, n in zip(background, background_lengths)])
    players = int(groups.max()) + 1

    def value(coalition):
        inside = np.isin(groups, list(coalition))
        rows = torch.tensor(np.where(inside, x, held), dtype=torch.float32)
        with torch.no_grad():
            return f(rows, torch.full((len(rows),), length)).double().mean(0).numpy()

    phi = np.zeros((players, value(()).shape[0]))
    for p in range(players):
        others = [q for q in range(players) if q != p]
        for size in range(players):
            weight = math.factorial(size) * math.factorial(players - size - 1) / math.factorial(players)
            for subset in itertools.combinations(others, size):
                phi[p] += weight * (value(subset + (p,)) - value(subset))
    return phi


def test_shap_of_rows_of_their_own_lengths_matches_brute_force_and_adds_up():
    model = small_model()
    f = stages.model_at_lengths(model)
    x, lengths = batch(seed=1)[1:3], np.array([13, 6])  # explained rows of 13 and 6 steps
    background = batch(seed=2)[:3]  # background rows of 24, 13 and 6 steps: longer and shorter
    background_lengths = LENGTHS[:3].numpy()
    groups = stages.shap_players_per_row((2, 24), lengths, None, 3)
    assert (groups[1, :, 6:] == -1).all() and groups[0].max() == 5
    values = interventional_shap(f, x, background, groups, method="exact", lengths=lengths,
                                 background_lengths=background_lengths)
    for i, n in enumerate(lengths):
        assert (values[i, :, n:] == 0).all()
        player_values = np.stack([values[i][groups[i] == p].sum(0) for p in range(groups[i].max() + 1)])
        expected = brute_force_shapley(f, x[i].numpy(), n, background.numpy(), background_lengths, groups[i])
        np.testing.assert_allclose(player_values, expected, atol=1e-5)
        with torch.no_grad():
            base = f(held_background(background, background_lengths), torch.full((3,), int(n))).double().mean(0)
            total = f(x[i:i + 1], torch.tensor([int(n)]))[0].double() - base
        np.testing.assert_allclose(values[i].sum((0, 1)), total.numpy(), atol=1e-5)


def test_permutation_shap_adds_up_for_every_row_of_its_own_length():
    model = small_model()
    f = stages.model_at_lengths(model)
    x, lengths = batch(seed=3), LENGTHS.numpy()
    groups = stages.shap_players_per_row((2, 24), lengths, None, 4)
    values = interventional_shap(f, x, batch(seed=4), groups, num_permutations=4, lengths=lengths,
                                 background_lengths=lengths)
    with torch.no_grad():
        base = np.stack([f(held_background(batch(seed=4), LENGTHS), torch.full((4,), int(n))).double().mean(0).numpy()
                         for n in lengths])
    gap = predict_logits(model, x, lengths=LENGTHS).double().numpy() - base
    np.testing.assert_allclose(values.sum((1, 2)), gap, atol=1e-5)
    assert all((values[i, :, n:] == 0).all() for i, n in enumerate(lengths))


# -----------------------------------------------------------------------------
# One whole run
def write_ragged_csvs(folder, rows=18, length=16):
    rng = np.random.default_rng(0)
    paths = []
    for part in ("train", "test"):
        frame = pd.DataFrame(index=range(rows), columns=["label"] + [f"{c}_t{t}" for c in "ab" for t in range(length)],
                             dtype=object)
        for i in range(rows):
            k, n = i % 2, int(rng.integers(length // 2, length + 1))
            values = rng.normal(0, 0.3, (2, length))
            values[k, 2:6] += 3.0
            values[:, n:] = np.nan  # the row ends after n steps
            if i == 3:
                values[0, 1] = np.nan  # a gap inside the series
            frame.iloc[i] = [f"class_{k}"] + values.reshape(-1).tolist()
        path = folder / f"{part}.csv"
        frame.to_csv(path, index=False)
        paths.append(path)
    return paths


@pytest.mark.slow
def test_a_file_of_mixed_lengths_with_a_gap_trains_evaluates_and_explains(tmp_path):
    train, test = write_ragged_csvs(tmp_path)
    out = tmp_path / "out"
    assert train_explain.main(run_args(train, test, out, "--epochs=1", "--shap_segments_per_channel=3",
                                       "--attribution_methods=saliency,occlusion,shap")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["series"]["train"]["filled_cells"] == {"a": 1, "b": 0}
    assert metrics["series"]["train"]["shorter_rows"] > 0 and metrics["shap"]["additivity_rel_error_max"] < 1e-4
    with np.load(out / "shap_values.npz") as shap, np.load(out / "attributions.npz") as maps:
        for i, n in enumerate(shap["lengths"]):
            assert (shap["values"][i, :, n:] == 0).all() and (shap["inputs"][i, :, n:] == 0).all()
            assert all((maps[name][i, :, n:] == 0).all() for name in ("saliency", "occlusion", "shap"))
        assert (maps["lengths"] == shap["lengths"]).all()
    checkpoint = torch.load(out / train_explain.CHECKPOINT_NAME, weights_only=True)
    assert checkpoint["length_range"][0] < checkpoint["length_range"][1] == metrics["series"]["train"]["length_max"]


def test_in_training_batchnorm_counts_only_real_steps_so_a_padded_row_trains_as_the_row_alone():
    import copy

    model = small_model().train()
    alone = copy.deepcopy(model)
    x = batch(padding=float("nan"))[1:2]
    n = int(LENGTHS[1])
    torch.manual_seed(0)
    padded_logits = model(x, torch.tensor([n]))
    torch.manual_seed(0)
    alone_logits = alone(x[..., :n])
    torch.testing.assert_close(padded_logits, alone_logits, rtol=1e-5, atol=1e-5)
    for block in ("conv1", "conv2"):
        ours, theirs = getattr(model, block)[1], getattr(alone, block)[1]
        torch.testing.assert_close(ours.running_mean, theirs.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.running_var, theirs.running_var, rtol=1e-5, atol=1e-6)
