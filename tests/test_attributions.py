"""The attribution suite against ground truth: completeness, a planted pattern, the randomization sanity
check, faithfulness, and the pipeline entry point's files."""
import dataclasses

import numpy as np
import pytest
import torch

from hybrid_explain.explainers import attributions
from hybrid_explain.metrics import checks
from hybrid_explain.explainers import regions
from hybrid_explain.explainers import shapley
from hybrid_explain.pipeline import stages
from hybrid_explain.model import HybridCNNLSTMAttention, predict_logits
import train_explain

CHANNELS, LENGTH = 3, 40
PLANTED_CHANNEL, WINDOW = 1, (15, 25)  # the class is the sign of a bump on channel 1 inside steps 15..24
EPOCHS = 12  # of the planted model's training
SHAP_SEGMENTS = 8  # SHAP players of 5 steps: the window is exactly two of them
METHODS = ["saliency", "input_x_gradient", "integrated_gradients", "gradcam", "occlusion", "lrp_epsilon", "lrp_sign",
           "shap"]


def bumps(centres, width=1.2, height=2.5):
    return height * np.exp(-0.5 * ((np.arange(LENGTH)[None, :] - centres[:, None]) / width) ** 2)


def planted_data(n, seed):
    """(X (n, 3, 40) float32, y (n,)): noise, a bump of the class's sign (+ for class 1) centred at steps
    18..21 of the planted channel, and distractor bumps of random sign anywhere on the other channels."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(0.0, 0.3, (n, CHANNELS, LENGTH))
    X[:, PLANTED_CHANNEL] += np.where(y == 1, 1.0, -1.0)[:, None] * bumps(rng.integers(18, 22, n))
    for c in set(range(CHANNELS)) - {PLANTED_CHANNEL}:
        X[:, c] += rng.choice([-1.0, 1.0], n)[:, None] * bumps(rng.integers(2, LENGTH - 2, n))
    return torch.tensor(X, dtype=torch.float32), y


def small_model(seed=0):
    torch.manual_seed(seed)
    return HybridCNNLSTMAttention(CHANNELS, LENGTH, 2, cnn_channels=8, lstm_hidden_size=8,
                                                attention_heads=2, dropout=0.0, kernel_size=5)


@pytest.fixture(scope="module")
def planted():
    """A small model trained on the planted pattern, held-out data and 8 correctly classified samples to explain."""
    X, y = planted_data(320, seed=0)
    test_X, test_y = planted_data(120, seed=1)
    model = small_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    labels = torch.as_tensor(y)
    model.train()
    for _ in range(EPOCHS):
        for batch in torch.randperm(len(X), generator=generator).split(32):
            loss = torch.nn.functional.cross_entropy(model(X[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    test_prob = torch.softmax(predict_logits(model, test_X), 1).numpy()
    test_pred = test_prob.argmax(1)
    rows = np.concatenate([np.flatnonzero((test_y == k) & (test_pred == k))[:4] for k in (0, 1)])
    return {"model": model, "background": X[:16], "test_X": test_X, "test_y": test_y, "test_pred": test_pred,
            "test_prob": test_prob, "accuracy": float((test_pred == test_y).mean()), "rows": rows,
            "x": test_X[rows], "target": torch.as_tensor(test_pred[rows])}


@pytest.fixture(scope="module")
def planted_maps(planted):
    """method -> (8, C, L) maps of the explained samples for their predicted classes, SHAP included."""
    x, target = planted["x"], planted["target"]
    maps, _ = attributions.compute_maps(attributions.method_functions({"ig_steps": 64, "occlusion_window": 5}),
                                        planted["model"], x, target)
    groups = shapley.player_groups(CHANNELS, LENGTH, SHAP_SEGMENTS)
    shap_values = shapley.interventional_shap(planted["model"], x, planted["background"], groups,
                                              method="permutation", num_permutations=16, seed=0)
    maps["shap"] = shap_values[np.arange(len(x)), :, :, target.numpy()]
    return maps


def share(maps, channels=slice(None), steps=slice(None)):
    """Mean over samples of the share of |attribution| inside the given channels and steps."""
    magnitude = np.abs(maps)
    channels = slice(channels, channels + 1) if isinstance(channels, int) else channels
    return float((magnitude[:, channels, steps].sum(axis=(1, 2)) / magnitude.sum(axis=(1, 2))).mean())


def test_integrated_gradients_sum_to_the_logit_difference_from_the_zero_baseline():
    model = small_model(seed=1).eval()
    x = torch.randn(4, CHANNELS, LENGTH)
    target = torch.tensor([0, 1, 0, 1])
    ig = attributions.integrated_gradients(model, x, target, steps=128)
    with torch.no_grad():
        gap = (model(x) - model(torch.zeros_like(x))).gather(1, target[:, None])[:, 0]
    total = ig.sum(dim=(1, 2))
    assert torch.allclose(total, gap, rtol=1e-2, atol=1e-3 * gap.abs().max().item()), (total, gap)


def test_the_planted_model_learns_the_pattern(planted):
    assert planted["accuracy"] >= 0.95


@pytest.mark.parametrize("method", METHODS)
def test_every_method_puts_far_more_than_chance_of_its_attribution_in_the_planted_channel_window(planted_maps, method):
    chance = (WINDOW[1] - WINDOW[0]) / (CHANNELS * LENGTH)
    assert share(planted_maps[method], PLANTED_CHANNEL, slice(*WINDOW)) > 2 * chance


@pytest.mark.parametrize("method", ["integrated_gradients", "shap"])
def test_integrated_gradients_and_shap_put_most_attribution_on_the_planted_channel(planted_maps, method):
    assert share(planted_maps[method], PLANTED_CHANNEL) > 2 * (1 / CHANNELS)


def edge_detector(model, x, target):
    """A pseudo-explanation that ignores the model: the size of the signal's steps."""
    steps = (x[:, :, 1:] - x[:, :, :-1]).abs()
    return torch.cat([steps, torch.zeros_like(x[:, :, :1])], dim=2)


@pytest.fixture(scope="module")
def sanity(planted):
    """The randomization check on the planted model for an edge detector, gradient x input and IG."""
    methods = {"edge_detector": edge_detector, "input_x_gradient": attributions.input_x_gradient,
               "integrated_gradients": attributions.method_functions({"ig_steps": 64, "occlusion_window": 5})["integrated_gradients"]}
    maps, _ = attributions.compute_maps(methods, planted["model"], planted["x"], planted["target"])
    return checks.sanity_check(methods, planted["model"], planted["x"], planted["target"], maps, seed=0)


def test_randomization_check_flags_an_edge_detector_that_ignores_the_model(sanity):
    assert sanity["edge_detector"]["insensitive_to_model"]
    assert sanity["edge_detector"]["rank_correlation"] > 0.99


@pytest.mark.parametrize("method", ["input_x_gradient", "integrated_gradients"])
def test_gradient_x_input_and_ig_change_with_the_weights_far_more_than_the_edge_detector(sanity, method):
    # Their |maps| keep part of the input's shape (x multiplies the gradient), so on this model the
    # |attribution| correlation sits near the 0.5 flag threshold (Adebayo et al. 2018 report the same);
    # the signed maps' ranking is what the randomized weights scramble.
    assert sanity[method]["rank_correlation"] < sanity["edge_detector"]["rank_correlation"] - 0.3
    assert sanity[method]["signed_rank_correlation"] < checks.SANITY_THRESHOLD
    assert not sanity[method]["insensitive_to_model"]


def test_randomized_copy_redraws_every_parameter_and_leaves_the_model_untouched(planted):
    model = planted["model"]
    before = {name: p.clone() for name, p in model.state_dict().items()}
    copy = checks.randomized_copy(model, seed=0)
    for name, p in model.state_dict().items():
        assert torch.equal(p, before[name])
    for name, p in copy.named_parameters():
        assert not torch.equal(p, dict(model.named_parameters())[name]), name
    assert torch.equal(copy.conv1[1].running_mean, torch.zeros_like(copy.conv1[1].running_mean))


def test_deleting_the_most_attributed_features_first_lowers_the_prediction_faster_than_a_random_order(planted,
                                                                                                    planted_maps):
    x, target = planted["x"], planted["target"]
    fractions = np.linspace(0.0, 1.0, checks.FAITHFULNESS_FRACTIONS + 1)
    rng = np.random.default_rng(0)
    ranks = checks.feature_ranks(planted_maps["integrated_gradients"], rng)
    deletion, _ = checks.deletion_insertion(planted["model"], x, target, ranks, fractions)
    random_deletion, _ = checks.deletion_insertion(
        planted["model"], x, target, rng.permuted(np.tile(np.arange(CHANNELS * LENGTH), (len(x), 1)), axis=1),
        fractions)
    assert np.allclose(deletion[:, 0], planted["test_prob"][planted["rows"], target.numpy()], atol=1e-5)
    assert checks.area(deletion, fractions) < checks.area(random_deletion, fractions) - 0.1


def test_a_malformed_segment_is_a_one_line_config_error():
    assert regions.parse_segments("P:0-20, QRS:20-45", 100) == [("P", 0, 20), ("QRS", 20, 45)]
    with pytest.raises(regions.SegmentError, match="QRS:45-20"):
        regions.parse_segments("P:0-20,QRS:45-20", 100)


@pytest.mark.slow  # the whole attribution stage: 8 methods, their faithfulness curves and 9 figures drawn
def test_attribution_outputs_writes_one_map_per_method_the_figures_and_the_metrics(planted, planted_maps, tmp_path):
    n = 2
    shap_values = np.zeros((n, CHANNELS, LENGTH, 2))
    shap_values[np.arange(n), :, :, planted["target"][:n].numpy()] = planted_maps["shap"][:n]
    test_y = planted["test_y"].copy()
    test_y[:2] = 1 - planted["test_pred"][:2]  # two rows the model now gets wrong
    config = dataclasses.replace(train_explain.config_from_args([]).explain, attribution_windows=4,
                                 attribution_segments="before:0-15,bump:15-25,after:25-40", ig_steps=32,
                                 occlusion_window=5, max_misclassified=2, seed=0, cpd_fraction=0.1)
    scored = stages.Samples(planted["test_X"], np.arange(len(test_y)) + 2, test_y, planted["test_pred"],
                            planted["test_prob"], ["minus", "plus"], ["a", "b", "c"])
    samples = scored.subset(planted["rows"][:n])
    samples.y_true = planted["test_y"][planted["rows"][:n]]
    run = stages.RunContext(planted["model"], config, scored, samples, background=planted["test_X"][-20:],
                            results={"shap": stages.Result({"shap": {"seconds": 0.5}}, {"values": shap_values})})
    result = stages.AttributionStage(METHODS)(run, lambda name: str(tmp_path / name)).metrics["attributions"]

    with np.load(tmp_path / "attributions.npz") as saved:
        assert sorted(saved.files) == sorted(METHODS)
        assert all(saved[name].shape == (n, CHANNELS, LENGTH) for name in METHODS)
        assert np.allclose(saved["shap"], planted_maps["shap"][:n])
    for name in ["attribution_sample_0.png", "attribution_sample_1.png", "attribution_overlay.png",
                 "attribution_comparison.png", "attribution_regions.png", "attribution_segments.png",
                 "attribution_faithfulness.png", "misclassified_0.png", "misclassified_1.png"]:
        assert (tmp_path / name).stat().st_size > 10_000, name
    for name in METHODS:
        metrics = result["methods"][name]
        assert 0 <= metrics["deletion_auc"] <= 1 and 0 <= metrics["insertion_auc"] <= 1
        assert metrics["seconds"] > 0
    assert result["misclassified"]["count"] >= 2 and len(result["misclassified"]["shown"]) == 2
    assert result["misclassified"]["confused_pairs"][0]["count"] >= 1
    assert result["methods"]["integrated_gradients"]["segment_share"]["bump"] > 0.25
    control = result["random_control"]["prediction_difference"]
    for fill in ("zero", "background_mean"):  # the planted bump moves the prediction; random cells do not
        ig = result["methods"]["integrated_gradients"]["prediction_difference"][fill]
        assert ig["cpd"] > control[fill]["cpd"] and ig["cpp"] < control[fill]["cpp"]
    assert result["prediction_difference"]["fraction"] == 0.1


def test_temporal_saliency_rescaling_moves_saliency_onto_the_planted_window(planted):
    maps, _ = attributions.compute_maps(attributions.method_functions({}, ["saliency", "saliency_tsr"]),
                                        planted["model"], planted["x"], planted["target"])
    share = {name: np.abs(attributions.normalized_share(m))[:, PLANTED_CHANNEL, WINDOW[0]:WINDOW[1]].sum(1).mean()
             for name, m in maps.items()}
    assert share["saliency_tsr"] > share["saliency"] + 0.1  # measured 0.60 against 0.31


@pytest.mark.parametrize("channels", [1, 3])
def test_temporal_saliency_rescaling_is_zero_outside_its_relevant_windows_and_constant_within_each(channels):
    torch.manual_seed(0)
    model = HybridCNNLSTMAttention(channels, 20, 2, cnn_channels=4, lstm_hidden_size=4, attention_heads=1).eval()
    x = torch.randn(3, channels, 20)
    maps = attributions.temporal_saliency_rescaling(model, x, torch.tensor([0, 1, 0]), attributions.saliency,
                                                    windows=5)
    per_window = maps.reshape(3, channels, 5, 4)
    assert maps.shape == x.shape and (maps >= 0).all()
    assert (per_window == per_window[..., :1]).all()
    relevant = per_window.sum(dim=(1, 3)) > 0
    assert relevant.any(dim=1).all() and not relevant.all()  # only the windows above the mean time relevance
