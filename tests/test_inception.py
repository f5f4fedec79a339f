"""The inception front end (CONV_FRONT_END="inception"): shapes, the checkpoint, rows of their own lengths,
Grad-CAM, LRP, and one seeded run of the whole pipeline."""
import copy
import json

import numpy as np
import pytest
import torch

from hybrid_explain.explainers import attributions
import train_explain
from conftest import run_args, write_series_csvs
from hybrid_explain.explainers.lrp import lrp_attribute, lrp_conservation, lrp_forward
from hybrid_explain.model import HybridCNNLSTMAttention, InceptionBlock, predict_logits
from hybrid_explain.checkpoint import load_model, parameter_count
from test_variable_length import LENGTHS, assert_padding_gives_the_logits_of_each_series_alone, batch, small_checkpoint


def inception_model(channels=2, length=24, classes=3, seed=0, train_steps=0):
    """A small inception model; train_steps of SGD give its BatchNorm statistics that are not the identity."""
    torch.manual_seed(seed)
    model = HybridCNNLSTMAttention(channels, length, classes, cnn_channels=8, lstm_hidden_size=8, attention_heads=2,
                                   min_pooled_length=4, conv_front_end="inception")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(6, channels, length, generator=torch.Generator().manual_seed(seed))
    for _ in range(train_steps):
        optimizer.zero_grad()
        model(x).logsumexp(1).mean().backward()
        optimizer.step()
    return model.eval()


HYPERPARAMETERS = {"input_channels": 2, "sequence_length": 24, "num_classes": 3, "cnn_channels": 8,
                   "lstm_hidden_size": 8, "lstm_layers": 1, "attention_heads": 2, "dropout": 0.1, "kernel_size": 7,
                   "min_pooled_length": 4, "max_pooled_length": 128}


@pytest.mark.parametrize("length", [1, 2, 3, 7, 24, 150, 2000])
@pytest.mark.parametrize("channels", [1, 3])
def test_any_length_from_1_to_2000_gives_one_logit_per_class_and_the_lstm_sees_at_most_128_steps(length, channels):
    model = HybridCNNLSTMAttention(channels, length, 4, cnn_channels=8, lstm_hidden_size=8, attention_heads=2,
                                   conv_front_end="inception").eval()
    assert model(torch.randn(2, channels, length)).shape == (2, 4)
    assert model.conv2(model.conv1(torch.randn(1, channels, length))).shape == (1, 16, model.pooled_length)
    assert 1 <= model.pooled_length <= 128
    hp = {**HYPERPARAMETERS, "input_channels": channels, "sequence_length": length, "num_classes": 4,
          "conv_front_end": "inception"}
    assert parameter_count(hp) == sum(p.numel() for p in model.parameters())


def test_the_front_end_is_carried_in_the_checkpoint_and_reloads_to_the_same_logits(tmp_path):
    model = inception_model(train_steps=3)
    checkpoint = small_checkpoint(model)
    checkpoint["hyperparameters"]["conv_front_end"] = "inception"
    torch.save(checkpoint, tmp_path / "model.pth")
    loaded, _ = load_model(tmp_path / "model.pth")
    assert isinstance(loaded.conv2, InceptionBlock)
    x = batch()
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_a_checkpoint_written_before_the_choice_loads_as_the_plain_front_end(tmp_path):
    torch.manual_seed(0)
    plain = HybridCNNLSTMAttention(2, 24, 3, cnn_channels=8, lstm_hidden_size=8, attention_heads=2,
                                   min_pooled_length=4).eval()
    old = small_checkpoint(plain)
    assert "conv_front_end" not in old["hyperparameters"]
    torch.save(old, tmp_path / "old.pth")
    loaded, _ = load_model(tmp_path / "old.pth")
    assert isinstance(loaded.conv2, torch.nn.Sequential)
    torch.testing.assert_close(loaded(batch()), plain(batch()), rtol=0, atol=0)


def test_a_checkpoint_naming_an_unknown_front_end_is_refused(tmp_path):
    checkpoint = small_checkpoint(inception_model())
    checkpoint["hyperparameters"]["conv_front_end"] = "transformer"
    torch.save(checkpoint, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="conv_front_end"):
        load_model(tmp_path / "bad.pth")


@pytest.mark.parametrize("flags, words", [(["--conv_front_end=transformer"], "CONV_FRONT_END"),
                                          (["--conv_front_end=inception", "--cnn_channels=30"], "multiple of 4")])
def test_an_unknown_front_end_or_channels_it_cannot_split_is_a_one_line_error(flags, words, capsys):
    assert train_explain.main(flags) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and words in error and error.count("\n") == 1


@pytest.mark.parametrize("padding", [0.0, float("nan"), 1e6])
def test_padding_of_any_value_gives_the_logits_of_each_series_alone(padding):
    assert_padding_gives_the_logits_of_each_series_alone(inception_model(train_steps=3), padding)


def test_a_mixed_length_batch_equals_each_series_run_alone_through_predict_logits():
    model = inception_model(train_steps=3)
    together = predict_logits(model, batch(padding=float("nan")), lengths=LENGTHS)
    alone = torch.cat([predict_logits(model, batch()[i:i + 1], lengths=LENGTHS[i:i + 1]) for i in range(len(LENGTHS))])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


def test_in_training_batchnorm_counts_only_real_steps_so_a_padded_row_trains_as_the_row_alone():
    model = inception_model().train()
    alone = copy.deepcopy(model)
    n = int(LENGTHS[1])
    x = batch(padding=float("nan"))[1:2]
    torch.manual_seed(0)
    padded_logits = model(x, torch.tensor([n]))
    torch.manual_seed(0)
    torch.testing.assert_close(padded_logits, alone(x[..., :n]), rtol=1e-5, atol=1e-5)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    theirs = [m for m in alone.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 5  # one per inception module (1 + 3) and the shortcut's: all of them checked
    for ours, reference in zip(norms, theirs):
        torch.testing.assert_close(ours.running_mean, reference.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(ours.running_var, reference.running_var, rtol=1e-5, atol=1e-6)


def test_gradcam_on_the_last_inception_block_matches_captum_and_is_zero_after_each_row_end():
    from captum.attr import LayerAttribution, LayerGradCam

    model = inception_model(train_steps=3)
    x = batch()
    target = model(x).argmax(1)
    with attributions.GradCAM(model, model.gradcam_layer) as cam:
        ours = cam.attribute(x, target)
        assert cam.activations[0].shape == cam.gradients[0].shape == (4, 16, model.pooled_length)
        ragged = cam.attribute(batch(padding=float("nan")), lengths=LENGTHS)
        assert cam.gradients[0].abs().sum() > 0
    theirs = LayerGradCam(model, model.gradcam_layer).attribute(x, target=target, relu_attributions=True)
    theirs = LayerAttribution.interpolate(theirs, (24,), interpolate_mode="linear")[:, 0]
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    assert ragged.shape == (4, 24) and torch.isfinite(ragged).all()
    for i, n in enumerate(LENGTHS.tolist()):
        assert (ragged[i, n:] == 0).all()


def test_lrp_reproduces_the_logits_and_conserves_the_explained_logit():
    model = inception_model(channels=1, length=60, train_steps=5)
    x = torch.randn(5, 1, 60, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(lrp_forward(model, x)[0], model(x), rtol=1e-5, atol=1e-5)
    shares = lrp_conservation(model, x, epsilon=0.0)  # LRP-0: input + bias relevance is the logit exactly
    torch.testing.assert_close(shares["input_sum"] + shares["bias_sum"], shares["logit"], rtol=1e-4, atol=1e-5)
    assert shares["input_sum"].abs().min() > 0


def test_lrp_of_rows_of_their_own_lengths_matches_the_model_and_is_zero_after_each_end():
    model = inception_model(train_steps=3)
    x = batch(padding=0.0)
    torch.testing.assert_close(lrp_forward(model, x, lengths=LENGTHS)[0], model(x, LENGTHS), rtol=1e-5, atol=1e-5)
    relevance = lrp_attribute(model, x, lengths=LENGTHS)
    for i, n in enumerate(LENGTHS.tolist()):
        assert (relevance[i, :, n:] == 0).all() and relevance[i, :, :n].abs().sum() > 0


def test_seeded_training_of_the_inception_front_end_repeats_exactly(tmp_path):
    from data_loader import CustomDataset

    config = train_explain.config_from_args(["--epochs=2", "--batch_size=4"])
    x = batch(padding=0.0)
    data = CustomDataset(torch.cat([x, -x]), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), np.tile(LENGTHS.numpy(), 2))
    empty = CustomDataset(x[:0], torch.zeros(0, dtype=torch.long), LENGTHS.numpy()[:0])
    states = []
    for name in ("a", "b"):
        torch.manual_seed(0)
        model = inception_model(seed=0)
        history, state, *_ = train_explain.train_model(model, data, empty, config.training, tmp_path / name, log=lambda m: None)
        states.append(state)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], inception_model(seed=0).state_dict()[k]) for k in states[0])


@pytest.mark.slow
def test_a_pipeline_run_with_the_inception_front_end_explains_with_every_method(tmp_path):
    train, test = write_series_csvs(tmp_path, length=16)
    assert train_explain.main(run_args(train, test, tmp_path / "out", "--conv_front_end=inception", "--epochs=2",
                                       "--global_explain_rows=0", "--counterfactual_budget=50")) == 0
    checkpoint = torch.load(tmp_path / "out" / train_explain.CHECKPOINT_NAME, weights_only=True)
    assert checkpoint["hyperparameters"]["conv_front_end"] == "inception"
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["shap"]["additivity_rel_error_max"] < 1e-4
    assert set(metrics["attributions"]["methods"]) >= {"lrp_epsilon", "lrp_sign", "gradcam", "integrated_gradients"}
