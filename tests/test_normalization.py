"""NORMALIZATION: recordings of any amplitude reach the network as shapes; what the z-score removes (amplitude) and
what masking hides (length) are given back to the classifier as inputs of its own."""
import numpy as np
import pytest
import torch

import train_explain
from hybrid_explain.explainers.lrp import lrp_conservation
from hybrid_explain.model import HybridCNNLSTMAttention, build_model, series_statistics
from hybrid_explain.checkpoint import CheckpointError, check_checkpoint

torch.manual_seed(0)


def network(**arguments):
    return HybridCNNLSTMAttention(input_channels=2, sequence_length=40, num_classes=3, **arguments).eval()


def quiet_and_loud_rows():
    """Four rows (2 channels x 40 steps) at amplitudes from 0.01 to 100, and per-row factors that rescale them."""
    x = torch.randn(4, 2, 40) * torch.tensor([0.01, 1.0, 30.0, 100.0])[:, None, None]
    return x, torch.tensor([50.0, 0.02, 3.0, 1e-3])[:, None, None]


def test_a_per_series_network_reads_each_rows_shape_whatever_its_amplitude_and_offset():
    net = network(normalization="per_series")
    x, factors = quiet_and_loud_rows()
    torch.testing.assert_close(net(x * factors + 7.0), net(x), rtol=1e-4, atol=1e-4)


def test_a_per_channel_network_sees_amplitude_directly():
    net = network(normalization="per_channel")
    x, factors = quiet_and_loud_rows()
    assert not torch.allclose(net(x * factors), net(x), atol=1e-3)


def test_amplitude_features_give_the_classifier_each_channels_mean_and_log_std():
    net = network(normalization="per_series", amplitude_features=True)
    torch.nn.init.normal_(net.fact_head.weight)  # trained weights; they start at zero
    x, _ = quiet_and_loud_rows()
    shape, facts = net.row_facts(x)
    mean, std = x.mean(dim=2), x.std(dim=2, unbiased=False)
    torch.testing.assert_close(facts, torch.cat([mean, std.log()], dim=1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(shape.std(dim=2, unbiased=False), torch.ones(4, 2), rtol=1e-3, atol=1e-3)
    assert not torch.allclose(net(x * 10), net(x), atol=1e-4)  # scale is now information


def test_series_statistics_count_only_the_steps_of_each_rows_own_length():
    x = torch.randn(3, 2, 40)
    lengths = torch.tensor([40, 12, 25])
    mean, std = series_statistics(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        own = x[i, :, :n].double().numpy()
        np.testing.assert_allclose(mean[i, :, 0].numpy(), own.mean(axis=1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(std[i, :, 0].numpy(), own.std(axis=1), rtol=1e-4)


def test_what_lies_after_a_rows_end_changes_neither_its_statistics_nor_the_logits():
    net = network(normalization="per_series", amplitude_features=True, length_feature=True)
    x, lengths = torch.randn(3, 2, 40), torch.tensor([40, 12, 25])
    garbage = x.clone()
    garbage[1, :, 12:], garbage[2, :, 25:] = float("nan"), 1e6
    torch.testing.assert_close(net(garbage, lengths), net(x, lengths))


def test_a_constant_series_is_centred_not_blown_up():
    x = torch.full((1, 2, 40), 3.0)
    shape, _ = network(normalization="per_series").row_facts(x)
    assert shape.abs().max() < 1e-2


def test_the_length_feature_is_log_length():
    net = network(normalization="per_series", length_feature=True)
    x, lengths = torch.randn(2, 2, 40), torch.tensor([40, 20])
    _, facts = net.row_facts(x, lengths)
    torch.testing.assert_close(facts[:, -1], torch.log(torch.tensor([40.0, 20.0])))


def test_the_length_input_is_given_only_where_the_training_rows_differ_in_length():
    config = train_explain.config_from_args([])
    class Table:  # the fields model_hyperparameters reads
        X, class_names, feature_names = np.zeros((4, 1, 30)), ["a", "b"], None
    Table.lengths = np.full(4, 30)
    assert train_explain.model_hyperparameters(config.model, Table)["length_feature"] is False
    Table.lengths = np.array([30, 12, 30, 20])
    assert train_explain.model_hyperparameters(config.model, Table)["length_feature"] is True


def test_a_per_series_network_starts_as_the_per_channel_network_of_the_same_seed():
    torch.manual_seed(3)
    plain, after_plain = network(normalization="per_channel"), torch.rand(1)
    torch.manual_seed(3)
    series, after_series = network(normalization="per_series", amplitude_features=True, length_feature=True), torch.rand(1)
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in series.state_dict().items() if k in plain.state_dict())
    assert not series.fact_head.weight.any()
    assert torch.equal(after_plain, after_series)  # the same random numbers left for training


def test_a_table_of_named_features_keeps_the_per_channel_statistics():
    config = train_explain.config_from_args([])
    class Table:  # height, weight, age: a row's z-score across them would mix their units
        X, class_names, lengths, feature_names = np.zeros((4, 1, 3)), ["a", "b"], np.full(4, 3), ["h", "w", "a"]
    assert config.model.normalization == "per_series"
    assert train_explain.model_hyperparameters(config.model, Table)["normalization"] == "per_channel"


def test_a_checkpoint_from_before_the_choice_rebuilds_a_per_channel_network():
    hyperparameters = {"input_channels": 2, "sequence_length": 40, "num_classes": 3, "cnn_channels": 8,
                       "lstm_hidden_size": 8, "lstm_layers": 1, "attention_heads": 2, "dropout": 0.1,
                       "kernel_size": 7, "min_pooled_length": 16, "max_pooled_length": 128}
    net = build_model(hyperparameters)
    assert not net.per_series and not net.amplitude_features and not net.length_feature
    assert net.head.in_features == 2 * 8 + 2 * 8 and net.fact_head is None


def test_a_checkpoint_with_an_unknown_normalization_is_refused():
    net = network()
    checkpoint = {"model_state_dict": net.state_dict(), "class_names": ["a", "b", "c"], "channel_names": ["u", "v"],
                  "normalization": {"mean": [0.0, 0.0], "std": [1.0, 1.0]},
                  "feature_columns": [f"{c}_t{t}" for c in "uv" for t in range(40)],
                  "hyperparameters": {"input_channels": 2, "sequence_length": 40, "num_classes": 3, "cnn_channels": 32,
                                      "lstm_hidden_size": 64, "lstm_layers": 1, "attention_heads": 4, "dropout": 0.1,
                                      "kernel_size": 7, "min_pooled_length": 16, "max_pooled_length": 128,
                                      "normalization": "per_row"}}
    with pytest.raises(CheckpointError, match="normalization"):
        check_checkpoint(checkpoint, "x.pth")


def test_mixup_blends_rows_as_the_network_reads_them_so_a_loud_row_does_not_drown_a_quiet_one():
    net = network(normalization="per_series")
    x, factors = quiet_and_loud_rows()
    mix = (torch.tensor([3, 2, 1, 0]), 0.3)  # the quietest row blended with the loudest, and so on
    torch.testing.assert_close(net(x * factors, mix=mix), net(x, mix=mix), rtol=1e-4, atol=1e-4)


def test_mixup_of_a_per_channel_network_blends_the_input_values():
    net = network(normalization="per_channel")
    x, _ = quiet_and_loud_rows()
    partner, weight = torch.tensor([3, 2, 1, 0]), 0.3
    torch.testing.assert_close(net(x, mix=(partner, weight)), net(weight * x + (1 - weight) * x[partner]))


def test_lrp_counts_the_amplitude_and_length_inputs_with_the_biases_and_stays_conservative():
    net = network(normalization="per_series", amplitude_features=True, length_feature=True)
    torch.nn.init.normal_(net.fact_head.weight)
    x, _ = quiet_and_loud_rows()
    shares = lrp_conservation(net, x)
    assert shares["residual"].abs().max() < 1e-3 * shares["logit"].abs().max()
