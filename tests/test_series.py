"""Rows of their own lengths (hybrid_explain/series.py): the one place that says which steps are real."""
import numpy as np
import torch

from hybrid_explain.series import Rows, model_lengths, step_mask, trimmed, zeroed_after


def test_rows_without_lengths_are_full_length_and_the_model_reads_them_unmasked():
    rows = Rows.of(torch.zeros(3, 2, 5))
    assert rows.lengths.tolist() == [5, 5, 5] and not rows.ragged and rows.model_lengths is None


def test_a_row_shorter_than_the_width_makes_the_batch_ragged_and_its_lengths_reach_the_model():
    rows = Rows.of(torch.zeros(2, 1, 5), [5, 3])
    assert rows.ragged and rows.model_lengths.tolist() == [5, 3]


def test_the_mask_is_true_exactly_at_each_rows_own_steps():
    mask = Rows.of(torch.zeros(2, 1, 4), np.array([4, 2])).mask
    assert mask.tolist() == [[True, True, True, True], [True, True, False, False]]


def test_torch_and_numpy_step_masks_agree():
    counts = [3, 0, 5]
    assert np.array_equal(step_mask(torch.tensor(counts), 5).numpy(), step_mask(np.array(counts), 5))


def test_zeroed_sets_every_value_after_a_rows_end_to_exactly_zero_even_a_nan():
    rows = Rows.of(torch.zeros(2, 1, 4), [4, 2])
    maps = torch.full((2, 3, 4), float("nan"))
    maps[:, :, :2] = 1.0
    out = rows.zeroed(maps)
    assert torch.equal(out[1, :, 2:], torch.zeros(3, 2)) and torch.isnan(out[0, :, 2:]).all()
    assert torch.equal(zeroed_after(maps, torch.tensor([4, 2]))[1], out[1])


def test_a_subset_and_repeated_copies_keep_each_rows_length():
    rows = Rows.of(torch.arange(3.0).view(3, 1, 1).expand(3, 1, 4), [4, 2, 3])
    assert rows[[2, 0]].lengths.tolist() == [3, 4] and rows[1:].x[:, 0, 0].tolist() == [1.0, 2.0]
    copies = rows.repeat(2)
    assert copies.lengths.tolist() == [4, 4, 2, 2, 3, 3] and copies.x[:, 0, 0].tolist() == [0, 0, 1, 1, 2, 2]


def test_lengths_that_all_fill_the_width_are_the_models_fast_path():
    assert model_lengths([4, 4], 4) is None and model_lengths(None, 4) is None
    assert model_lengths(np.array([4, 1]), 4).tolist() == [4, 1]


def test_trimmed_cuts_a_batch_to_its_longest_row_but_not_below_the_minimum():
    x = torch.zeros(2, 1, 10)
    assert trimmed(x, torch.tensor([3, 5]))[0].shape[2] == 5
    cut, lengths = trimmed(x, torch.tensor([3, 2]), minimum=4)
    assert cut.shape[2] == 4 and lengths.tolist() == [3, 2]
