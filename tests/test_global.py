"""Global importance against ground truth: a hand-made model whose classes are decided by planted bumps in known
windows of known channels, with a pure-noise channel it also reacts to; group values checked against a brute-force
Shapley computation and for additivity on a real model; intervals, seeding, the row choice, and the pipeline's
metrics, npz and report."""
import json

import numpy as np
import pytest
import torch

from hybrid_explain.explainers import global_importance
from test_shapley import brute_force_shapley, tiny_model

LENGTH, WINDOWS = 40, 5  # windows of 8 steps: t0-7, t8-15, t16-23, t24-31, t32-39
CLASSES = ["none", "bump_a", "bump_b"]
CHANNELS = ["a", "b", "noise"]
PLANTED = {"bump_a": ("a", (8, 16)), "bump_b": ("b", (24, 32))}
LABELS = [f"t{8 * w}-{8 * w + 7}" for w in range(WINDOWS)]


class PlantedModel(torch.nn.Module):
    """Logits: bump_a reads channel a on steps 8-15, bump_b channel b on steps 24-31; "none" is a threshold
    that also moves with the mean of the noise channel, which says nothing about the class."""

    def forward(self, x):
        none = 1.5 + 0.5 * x[:, 2].mean(dim=1)
        return torch.stack([none, 3 * x[:, 0, 8:16].mean(dim=1), 3 * x[:, 1, 24:32].mean(dim=1)], dim=1)


def planted_rows(per_class, seed=0):
    """(x, true class) with a bump of height 1 where each bump class's window is, noise elsewhere."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), per_class)
    x = rng.normal(0, 0.3, size=(len(y), 3, LENGTH))
    for i, k in enumerate(y):
        if k:
            channel, (start, end) = PLANTED[CLASSES[k]]
            x[i, CHANNELS.index(channel), start:end] += 1.0
    return torch.from_numpy(x).float(), y


def explain(x, model=None, seed=0):
    model = model or PlantedModel().eval()
    background = planted_rows(8, seed=99)[0]
    with torch.no_grad():
        predicted = model(x).argmax(dim=1).numpy()
    return global_importance.global_importance(model, x, background, predicted, CHANNELS, CLASSES, WINDOWS, seed,
                                               LABELS)


@pytest.fixture(scope="module")
def planted():
    x, y = planted_rows(30)
    arrays, section = explain(x)
    return x, y, arrays, section


def test_the_model_decides_by_the_planted_bumps(planted):
    x, y, _, section = planted
    assert sum(section["per_class"][name]["rows"] for name in CLASSES) == len(y)
    with torch.no_grad():
        assert (PlantedModel()(x).argmax(dim=1).numpy() == y).mean() > 0.95


@pytest.mark.parametrize("name", ["bump_a", "bump_b"])
def test_the_planted_channel_ranks_first_and_the_noise_channel_last_for_a_bump_class(planted, name):
    importance = planted[3]["per_class"][name]["channel_importance"]
    ranked = sorted(importance, key=lambda c: -importance[c]["mean"])
    assert ranked[0] == PLANTED[name][0] and ranked[-1] == "noise"
    assert importance[PLANTED[name][0]]["informative"] is True


def test_the_noise_channel_moves_the_output_but_its_interval_contains_zero_and_it_carries_no_information(planted):
    section = planted[3]
    for entry in [section["channel_importance"], *(c["channel_importance"] for c in section["per_class"].values())]:
        noise = entry["noise"]
        assert noise["mean"] > 0  # the model reacts to it ...
        assert noise["contrast"]["low"] <= 0 <= noise["contrast"]["high"] and noise["informative"] is False


@pytest.mark.parametrize("name", ["bump_a", "bump_b"])
def test_the_top_window_of_a_bump_class_overlaps_its_planted_window(planted, name):
    importance = planted[3]["per_class"][name]["window_importance"]
    top = max(importance, key=lambda w: importance[w]["mean"])
    start, end = (int(part) for part in top[1:].split("-"))
    planted_start, planted_end = PLANTED[name][1]
    assert start < planted_end and planted_start <= end


def test_the_class_mean_map_is_positive_on_the_planted_cell(planted):
    cells = planted[2]["class_mean_cell_evidence"]  # (K, C, W)
    for name, (channel, (start, _)) in PLANTED.items():
        k, c, w = CLASSES.index(name), CHANNELS.index(channel), start // 8
        assert cells[k, c, w] == cells[k].max() > 0


def test_channel_values_of_a_real_model_are_the_grouped_games_shapley_values_and_add_up_for_every_row():
    model = tiny_model(channels=3, length=6)
    generator = torch.Generator().manual_seed(2)
    x, background = torch.randn(4, 3, 6, generator=generator), torch.randn(6, 3, 6, generator=generator)
    groups = global_importance.players("channels", 3, 6, 2)
    values = global_importance.group_values(model, x, background, groups, seed=0)
    np.testing.assert_allclose(values, brute_force_shapley(model, x, background, groups), atol=1e-5)
    with torch.no_grad():
        gap = (model(x) - model(background).mean(dim=0)).double().numpy()
    np.testing.assert_allclose(values.sum(axis=1), gap, atol=1e-5)


def test_window_and_cell_values_add_up_for_every_row_with_the_permutation_method():
    model = tiny_model(channels=3, length=6)
    generator = torch.Generator().manual_seed(3)
    x, background = torch.randn(3, 3, 6, generator=generator), torch.randn(5, 3, 6, generator=generator)
    with torch.no_grad():
        gap = (model(x) - model(background).mean(dim=0)).double().numpy()
    for grouping in ("windows", "cells"):
        groups = global_importance.players(grouping, 3, 6, 3 if grouping == "windows" else 2)
        assert global_importance.method_for(int(groups.max()) + 1) == ("exact" if grouping == "windows" else
                                                                       "permutation")
        np.testing.assert_allclose(global_importance.group_values(model, x, background, groups, 0).sum(axis=1), gap,
                                   atol=1e-5)


def test_the_pipeline_checks_additivity_of_every_grouping(planted):
    assert max(planted[3]["additivity_max_abs_error"].values()) < 1e-5


def test_intervals_shrink_when_more_rows_are_explained():
    widths = []
    for per_class in (8, 64):
        section = explain(planted_rows(per_class, seed=1)[0])[1]
        entry = section["channel_importance"]["a"]
        widths.append(entry["high"] - entry["low"])
    assert widths[1] < 0.6 * widths[0]


def test_seeded_runs_repeat_exactly_and_another_seed_resamples_the_intervals():
    x = planted_rows(10)[0]
    (first, a), (second, b), (_, c) = explain(x), explain(x), explain(x, seed=1)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    assert a["channel_importance"] == b["channel_importance"] and a["per_class"] == b["per_class"]
    assert a["channel_importance"]["a"]["low"] != c["channel_importance"]["a"]["low"]


def test_rows_are_a_seeded_sample_stratified_over_the_classes():
    classes = np.repeat([0, 1, 2], [60, 30, 3])
    chosen = global_importance.choose_rows(classes, 31, seed=0)
    assert len(chosen) == 31 and len(set(chosen)) == 31
    counts = np.bincount(classes[chosen], minlength=3)
    assert counts[2] >= 1 and abs(counts[0] - 2 * counts[1]) <= 2
    np.testing.assert_array_equal(chosen, global_importance.choose_rows(classes, 31, seed=0))
    np.testing.assert_array_equal(global_importance.choose_rows(classes, 0, seed=0), np.arange(93))


@pytest.mark.slow
def test_a_run_writes_the_global_section_npz_and_report(trained_run):
    out = trained_run[0]
    metrics = json.loads((out / "metrics.json").read_text())
    section = metrics["global"]
    assert section["rows"] == 24 and "global" in metrics["timings_s"]
    assert set(section["channel_importance"]) == {"ch0", "ch1"}
    assert all({"mean", "low", "high"} <= set(e) for e in section["window_importance"].values())
    assert set(section["per_class"]) <= {"class_0", "class_1", "class_2"}
    z = np.load(out / "global_importance.npz")
    assert z["channel_values"].shape == (24, 2, 3) and len(z["rows"]) == 24
    np.testing.assert_allclose(z["channel_values"].sum(axis=1), z["outputs"] - z["expected_value"], atol=1e-4)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.index("<section id='global'>") < page.index("<section id='samples'>")
    for name, entry in section["per_class"].items():
        top = max(entry["channel_importance"], key=lambda c: entry["channel_importance"][c]["mean"])
        assert f"<b>{name}</b> ({entry['rows']} row" in page and f"mostly channel <b>{top}</b>" in page


def test_the_report_names_each_class_top_channel_and_window_and_says_the_noise_channel_carries_no_information(planted):
    from hybrid_explain.pipeline import report

    section = planted[3]
    page = report.global_section(section, lambda *args, **kwargs: "")
    for name, channel, window in [("bump_a", "a", "t8-15"), ("bump_b", "b", "t24-31")]:
        rows = section["per_class"][name]["rows"]
        assert f"<b>{name}</b> ({rows} rows): mostly channel <b>{channel}</b>" in page
        assert f"window <b>{window}</b>" in page
    assert "channel <b>noise</b> carries no measurable information" in page


def test_rows_of_their_own_lengths_get_values_that_add_up_and_ignore_what_follows_their_end():
    from test_variable_length import small_model

    model = small_model(channels=3, length=24)
    generator = torch.Generator().manual_seed(4)
    x, background = torch.randn(4, 3, 24, generator=generator), torch.randn(6, 3, 24, generator=generator)
    lengths, background_lengths = np.array([24, 17, 9, 20]), np.array([24, 12, 24, 20, 8, 24])
    with torch.no_grad():
        predicted = model(x, torch.as_tensor(lengths)).argmax(dim=1).numpy()
    results = []
    for padding in (0.0, float("nan")):
        padded = x.clone()
        for i, n in enumerate(lengths):
            padded[i, :, n:] = padding
        results.append(global_importance.global_importance(model, padded, background, predicted, CHANNELS, CLASSES,
                                                           4, 0, LABELS[:4], lengths, background_lengths))
    (arrays, section), (nan_arrays, _) = results
    assert max(section["additivity_max_abs_error"].values()) < 1e-5
    for key in ("channel_values", "window_values", "cell_values"):
        np.testing.assert_allclose(arrays[key], nan_arrays[key], atol=1e-6)


def test_copies_of_one_row_are_sampled_with_permutations_of_their_own():
    """The bootstrap over the rows sees the permutations' sampling error only if each row draws its own."""
    model = tiny_model(channels=3, length=6)
    generator = torch.Generator().manual_seed(4)
    row, background = torch.randn(1, 3, 6, generator=generator), torch.randn(5, 3, 6, generator=generator)
    groups = global_importance.players("cells", 3, 6, 2)  # 6 players: permutation sampling
    values = global_importance.group_values(model, row.repeat(2, 1, 1), background, groups, seed=0)
    assert not np.allclose(values[0], values[1])
    np.testing.assert_allclose(values[0].sum(axis=0), values[1].sum(axis=0), atol=1e-5)  # both add up


def test_windows_of_rows_of_two_lengths_stand_at_the_same_shares_of_each_rows_own_length():
    edges = global_importance.relative_window_edges([20, 200], 10)
    np.testing.assert_allclose(edges, np.arange(0, 101, 10))


def test_class_means_of_rows_of_two_lengths_are_drawn_over_the_whole_relative_axis():
    short, long = np.zeros((1, 20)), np.zeros((1, 200))
    short[0, 9:11], long[0, 90:110] = 1.0, 1.0  # each row's bump at the middle of its own length
    x = np.zeros((2, 1, 200))
    x[0, :, :20], x[1] = short, long
    positions, means = global_importance.relative_class_means(x, [20, 200], np.array([0, 0]), 2)
    assert positions[0] > 0 and positions[-1] < 100 and np.isfinite(means).all()
    middle = (positions > 47) & (positions < 53)  # both bumps, each at the middle of its own row
    assert means[0, 0, middle].min() > 0.95 and means[0, 0, ~((positions > 42) & (positions < 58))].max() == 0
    assert (means[1] == 0).all()  # a class never predicted: zeros, not the mean of nothing
