"""Counterfactuals against ground truth: a model whose class depends on a known window must be flipped by a
stretch overlapping it; what is reported is what the model says on the stored series; a model that cannot be
flipped gets "not found", never a same-class series."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from hybrid_explain.explainers import counterfactuals
import train_explain
from conftest import run_args, write_series_csvs

LENGTH, WINDOW = 40, (10, 20)  # class "bump" (1) when the planted channel's mean over steps 10..19 exceeds 1
NONE, BUMP = 0, 1


class WindowModel(nn.Module):
    """Logits (none, bump): bump's logit is the mean of one channel over WINDOW minus 1, none's is 0."""

    def __init__(self, channel=0):
        super().__init__()
        self.channel = channel
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x, lengths=None):  # WINDOW lies within every series these tests give it
        evidence = self.scale * x[:, self.channel, WINDOW[0]:WINDOW[1]].mean(dim=1) - 1.0
        return torch.stack([torch.zeros_like(evidence), evidence], dim=1)


class ConstantModel(nn.Module):
    """Says "none" whatever the input."""

    def __init__(self):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([2.0, 0.0]))

    def forward(self, x):
        return self.logits.expand(len(x), 2)


def series(n, channels, bump, seed, channel=0):
    """(n, channels, LENGTH) noise; with bump, a plateau of 3 on `channel` at steps 12..17 (inside WINDOW)."""
    x = np.random.default_rng(seed).normal(0.0, 0.3, (n, channels, LENGTH))
    if bump:
        x[:, channel, 12:18] += 3.0
    return torch.tensor(x, dtype=torch.float32)


def pool(channels, channel=0):
    """Guides: 6 series of each class, labelled."""
    return (torch.cat([series(6, channels, False, seed=1), series(6, channels, True, seed=2, channel=channel)]),
            np.repeat([NONE, BUMP], 6))


def window_contrast(x, channel=0):
    """What the planted model's logit difference owes to each cell (bump minus none against a zero baseline)."""
    contrast = np.zeros(x.shape, dtype=np.float32)
    contrast[:, channel, WINDOW[0]:WINDOW[1]] = x[:, channel, WINDOW[0]:WINDOW[1]].numpy() / (WINDOW[1] - WINDOW[0])
    return contrast


def test_a_bump_sample_toward_none_changes_a_stretch_overlapping_the_planted_window():
    model, x = WindowModel(), series(3, 1, True, seed=0)
    guides, labels = pool(1)
    results = counterfactuals.counterfactuals(model, x, [NONE] * 3, guides, labels, window_contrast(x), budget=500)
    for r, original in zip(results, x):
        assert r.found and r.predicted == NONE and r.probability_after > 0.5 > r.probability_before
        assert r.stretch.start < WINDOW[1] and r.stretch.end > WINDOW[0]
        assert model(torch.from_numpy(r.series)[None]).argmax().item() == NONE
        outside = counterfactuals.stretch_mask(original.shape, r.stretch) == 0
        np.testing.assert_array_equal(r.series[outside], original.numpy()[outside])


def test_a_model_that_always_says_one_class_gets_no_counterfactual():
    x = series(2, 1, True, seed=0)
    guides, labels = pool(1)
    results = counterfactuals.counterfactuals(ConstantModel(), x, [BUMP] * 2, guides, labels, window_contrast(x),
                                              budget=500)
    assert all(not r.found and r.series is None and r.predicted is None and r.stretch is None for r in results)


def test_a_budget_too_small_to_reach_the_window_means_not_found_and_is_kept():
    x = series(2, 1, True, seed=0)
    guides, labels = pool(1)
    results = counterfactuals.counterfactuals(WindowModel(), x, [NONE] * 2, guides, labels,
                                              np.zeros(x.shape, np.float32), budget=4)
    assert all(not r.found and r.series is None and r.predicted is None and r.evaluations <= 4 for r in results)


def test_multichannel_counterfactuals_change_only_the_channels_they_report():
    channel = 1
    model, x = WindowModel(channel), series(3, 3, True, seed=0, channel=channel)
    guides, labels = pool(3, channel)
    results = counterfactuals.counterfactuals(model, x, [NONE] * 3, guides, labels, window_contrast(x, channel),
                                              budget=500)
    for r, original in zip(results, x.numpy()):
        changed = np.flatnonzero((r.series != original).any(axis=1))
        mask = counterfactuals.stretch_mask(original.shape, r.stretch)
        assert r.found and r.stretch.channels == (channel,) and changed.tolist() == [channel]
        assert not (r.series != original)[~mask].any()


def test_without_labelled_guides_the_models_classes_pick_them():
    """A checkpoint of an earlier version has only its SHAP background: the model's classes label it."""
    background = torch.zeros(4, 1, LENGTH)
    lengths = np.full(4, LENGTH)
    inputs = train_explain.Inputs(None, None, None, {}, background.numpy(), lengths, {})
    rows, labels, guide_lengths = train_explain.counterfactual_guides({"background": background}, inputs)
    assert torch.equal(rows, background) and labels is None and guide_lengths is lengths
    model, x = WindowModel(), series(2, 1, True, seed=0)
    results = counterfactuals.counterfactuals(model, x, [NONE] * 2, pool(1)[0], None, window_contrast(x), budget=500)
    assert all(r.found and r.predicted == NONE for r in results)


def test_a_short_series_changes_only_steps_it_and_its_guide_both_have():
    """A sample of 25 steps (NaN after them) and guides of 22: the stretch ends by step 22, the padding is kept."""
    x = series(2, 1, True, seed=0)
    x[:, :, 25:] = float("nan")
    guides, labels = pool(1)
    results = counterfactuals.counterfactuals(WindowModel(), x, [NONE] * 2, guides, labels, window_contrast(x),
                                              budget=500, lengths=[25, 25], pool_lengths=np.full(len(guides), 22))
    for r, original in zip(results, x.numpy()):
        assert r.found and r.predicted == NONE and r.stretch.end <= 22
        assert np.isnan(r.series[:, 25:]).all() and (r.series[:, r.stretch.end:25] == original[:, r.stretch.end:25]).all()


def test_an_unknown_target_class_is_a_one_line_error(tmp_path, capsys):
    train, test = write_series_csvs(tmp_path)
    assert train_explain.main(run_args(train, test, tmp_path / "out", "--counterfactual_target=nope")) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: COUNTERFACTUAL_TARGET='nope'") and error.count("\n") == 1


TRAINED = ["--attribution_methods=", "--epochs=8", "--learning_rate=0.01"]  # long enough to predict both classes


@pytest.fixture(scope="module")
def counterfactual_run(tmp_path_factory):
    """A short pipeline run on two classes: class_1 has a bump on ch1 at steps 14..17, class_0 one on ch0 at 6..9."""
    folder = tmp_path_factory.mktemp("counterfactuals")
    train, test = write_series_csvs(folder, classes=2)
    out = folder / "out"
    assert train_explain.main(run_args(train, test, out, *TRAINED)) == 0
    return out, train, test


@pytest.mark.slow
def test_stored_counterfactuals_reproduce_their_predictions_after_load_model(counterfactual_run):
    out = counterfactual_run[0]
    z = np.load(out / "counterfactuals.npz")
    entries = json.loads((out / "metrics.json").read_text())["counterfactuals"]
    model, checkpoint = train_explain.load_model(out / "saved_model_hybrid_explained.pth")
    assert len(entries) == len(z["found"]) == 2 and z["found"].any()
    names = list(z["class_names"])
    predicted = model(torch.from_numpy(z["counterfactuals"][z["found"]])).argmax(1).numpy()
    np.testing.assert_array_equal(predicted, z["predicted"][z["found"]])
    np.testing.assert_array_equal(predicted, z["targets"][z["found"]])
    for entry, found, target, pred, mask in zip(entries, z["found"], z["targets"], z["predicted"], z["mask"]):
        assert entry["found"] == found and entry["target"] == names[target] != entry["original"]
        assert entry["predicted"] == (names[pred] if found else None)
        assert mask.any() == found and (found or np.isnan(z["counterfactuals"]).all())
    assert len(checkpoint["guides"]) == len(checkpoint["guide_labels"]) == 16  # every training row: 8 per class


@pytest.mark.slow
def test_the_trained_models_counterfactuals_touch_a_planted_bump(counterfactual_run):
    entries = json.loads((counterfactual_run[0] / "metrics.json").read_text())["counterfactuals"]
    bumps = {"ch0": (6, 10), "ch1": (14, 18)}  # write_series_csvs: class k's bump on channel k around 24 (k + 1) / 3
    for entry in entries:
        start, end = entry["changed_steps"]
        assert any(name in bumps and start < bumps[name][1] and end > bumps[name][0]
                   for name in entry["changed_channels"])


@pytest.mark.slow
def test_a_reused_checkpoint_repeats_the_counterfactuals_exactly(counterfactual_run):
    out, train, test = counterfactual_run
    first = dict(np.load(out / "counterfactuals.npz"))
    assert train_explain.main(run_args(train, test, out, *TRAINED, "--train=False")) == 0
    again = np.load(out / "counterfactuals.npz")
    for name, values in first.items():
        np.testing.assert_array_equal(again[name], values)
