"""The model: shapes for any length and channel count, adaptive pooling, Grad-CAM and attention hooks."""
import pytest
import torch

from hybrid_explain.explainers.attributions import AttentionRecorder, GradCAM
from hybrid_explain.model import HybridCNNLSTMAttention, pooling_sizes
from train_explain import batch_indices, warmup_cosine


def small_model(channels, length, classes=3):
    torch.manual_seed(0)
    return HybridCNNLSTMAttention(channels, length, classes, cnn_channels=8, lstm_hidden_size=8,
                                  attention_heads=2).eval()


@pytest.mark.parametrize("length", [1, 4, 25, 600])
@pytest.mark.parametrize("channels", [1, 12])
def test_model_returns_one_logit_per_class_for_any_length_and_channel_count(length, channels):
    logits = small_model(channels, length)(torch.randn(5, channels, length))
    assert logits.shape == (5, 3)
    assert torch.isfinite(logits).all()


def test_short_series_are_not_pooled_so_attention_sees_every_step():
    assert pooling_sizes(4, min_pooled_length=16, max_pooled_length=128) == [1, 1]
    assert small_model(1, 4).pooled_length == 4


def test_default_length_is_halved_twice_like_the_seed():
    assert pooling_sizes(100, 16, 128) == [2, 2]


def test_long_series_reach_the_lstm_with_at_most_max_pooled_length_steps():
    length = 1500
    first, second = pooling_sizes(length, 16, 128)
    assert length // first // second <= 128


def test_gradcam_hooks_capture_activations_and_gradients_of_the_last_conv_block():
    model = small_model(2, 40)
    x = torch.randn(3, 2, 40)
    with GradCAM(model, model.gradcam_layer) as cam:
        maps = cam.attribute(x)
        expected = (3, 16, model.pooled_length)
        assert cam.activations[0].shape == expected and cam.gradients[0].shape == expected  # layer 0's
    assert maps.shape == (3, 40) and (maps >= 0).all()


def test_gradcam_removes_its_hooks_on_exit():
    model = small_model(2, 40)
    with GradCAM(model, model.gradcam_layer):
        pass
    assert not model.gradcam_layer._forward_hooks and not model.gradcam_layer._backward_hooks


def test_gradcam_matches_captum_layer_gradcam():
    from captum.attr import LayerAttribution, LayerGradCam

    model = small_model(2, 40)
    x = torch.randn(4, 2, 40)
    target = model(x).argmax(1)
    with GradCAM(model, model.gradcam_layer) as cam:
        ours = cam.attribute(x, target)
    theirs = LayerGradCam(model, model.gradcam_layer).attribute(x, target=target, relu_attributions=True)
    theirs = LayerAttribution.interpolate(theirs, (40,), interpolate_mode="linear")[:, 0]
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


def test_attention_recorder_keeps_weights_per_head_and_rows_sum_to_one():
    model = small_model(2, 4)
    with AttentionRecorder(model.attention) as recorder:
        weights = recorder.record(model, torch.randn(3, 2, 4))
    assert weights.shape == (3, 2, 4, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 4))
    assert not model.attention._forward_hooks


def test_batches_never_leave_a_single_sample_for_batchnorm():
    sizes = [len(b) for b in batch_indices(33, 32, torch.Generator().manual_seed(0))]
    assert sizes == [33]
    assert sorted(torch.cat(batch_indices(70, 32, torch.Generator().manual_seed(0))).tolist()) == list(range(70))


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_zero():
    factor = warmup_cosine(warmup_steps=10, total_steps=110)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(60) == pytest.approx(0.5)
    assert factor(110) == pytest.approx(0.0, abs=1e-12)
    assert all(factor(s) >= factor(s + 1) for s in range(10, 110))
