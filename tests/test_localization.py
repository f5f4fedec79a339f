"""The localization metrics (AUPRC, AUP, AUR against a ground-truth mask) on maps whose scores are known."""
import numpy as np
import pytest

from hybrid_explain.metrics import localization


def box_masks(n=40, channels=3, length=20, steps=5, seed=0):
    """n masks, each with one random box of 2 channels x `steps` steps set."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, channels, length), bool)
    for m in masks:
        c, t = rng.integers(channels - 1), rng.integers(length - steps)
        m[c:c + 2, t:t + steps] = True
    return masks


def test_the_mask_itself_scores_one_auprc_and_recall_and_precision_halfway_from_prevalence():
    masks = box_masks()
    prevalence = masks[0].mean()
    scores = localization.mean_scores(masks.astype(float), masks)
    assert scores["auprc"] == pytest.approx(1.0)
    assert scores["aur"] == pytest.approx(1.0)
    assert scores["aup"] == pytest.approx((prevalence + 1) / 2)  # precision rises from prevalence (at 0) to 1


def test_a_random_map_scores_about_the_prevalence():
    # Many relevant cells per sample: average precision over few positives is biased above the prevalence.
    masks = box_masks(n=200, channels=4, length=200, steps=50)
    maps = np.random.default_rng(1).normal(size=masks.shape)
    scores = localization.mean_scores(maps, masks)
    assert scores["auprc"] == pytest.approx(masks[0].mean(), abs=0.03)


def test_a_constant_map_scores_the_prevalence_and_no_area():
    masks = box_masks()
    scores = localization.localization_scores(np.ones(masks.shape), masks)
    np.testing.assert_allclose(scores["auprc"], masks.reshape(len(masks), -1).mean(1))
    np.testing.assert_array_equal(scores["aup"], 0.0)
    np.testing.assert_array_equal(scores["aur"], 0.0)


def test_maps_are_scored_by_their_magnitude():
    masks = box_masks()
    signed = np.where(masks, -5.0, 0.1)
    assert localization.mean_scores(signed, masks)["auprc"] == pytest.approx(1.0)


def test_a_mask_without_a_relevant_cell_is_refused():
    with pytest.raises(localization.MaskError):
        localization.mean_scores(np.ones((1, 2, 5)), np.zeros((1, 2, 5)))
