"""Counterfactuals: the smallest stretch of a series that, taken from a real series of another class, makes the
model predict that class; in the spirit of Native Guide (Delaney et al. 2021), and verified, never assumed.

For a sample x that the model predicts as class p, and a target class t:
1. the guide is the training series of class t nearest to x (Euclidean distance over every cell, in normalized
   units) among those the model itself predicts as t;
2. a candidate copies one contiguous stretch of the guide into x, on one channel or on all channels at once.
   Candidates are tried in batches, in order of the cells they change (fewest first; at equal size, the
   stretch where x argues most for p over t first, by the attribution map), at the POSITIONS_PER_SIZE starts
   of largest attribution mass for each channel choice and width. Widths first follow a geometric grid
   (COARSE_WIDTHS of them); once a candidate flips the prediction, the widths between it and the grid's width
   below are tried for its channel choice, so the stretch is the smallest to the step for that choice;
3. the smallest candidate the model predicts as t is the counterfactual. If none does within the budget of model
   evaluations, there is no counterfactual: found is False and no series is reported. Every counterfactual is
   run through the model again at the end; its reported class is the model's class on the returned series.

Rows of different lengths: a stretch lies within both the sample's and the guide's own steps, the distance is
the mean squared difference over the steps they share, and the model reads every series to the sample's length.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from hybrid_explain.model import predict_logits
from hybrid_explain.series import own_lengths

POSITIONS_PER_SIZE = 3  # starts tried per channel choice and stretch width, the largest attribution mass first
COARSE_WIDTHS = 12  # widths of the first pass per channel choice: a geometric grid from 1 step to the whole series
GUIDES_PER_CLASS = 100  # training rows per class the checkpoint keeps as guides (a seeded sample, in file order)
FIRST_BATCH = 64  # candidates of the first batch; most counterfactuals are small and found in it
MAX_BATCH = 1024  # later batches double up to this many candidates


class CounterfactualError(ValueError):
    """A counterfactual setting that cannot be used (an unknown target class); the message is one line."""


@dataclass(frozen=True)
class Stretch:
    """Steps start .. end - 1 of the listed channels, copied from the guide."""
    channels: tuple
    start: int
    end: int

    @property
    def cells(self) -> int:
        return len(self.channels) * (self.end - self.start)


@dataclass
class Counterfactual:
    """One sample's result. series and predicted are None when none was found."""
    target: int
    found: bool
    stretch: Optional[Stretch]
    series: Optional[np.ndarray]  # (C, L) normalized, as fed to the model
    predicted: Optional[int]  # the model's class on `series`
    probability_before: float  # of the target on the original sample
    probability_after: Optional[float]  # of the target on `series`
    evaluations: int  # model evaluations the search spent
    guide: Optional[int]  # index of the guide in the pool
    reason: str  # how the result came about, in words


def target_index(name: str, class_names) -> Optional[int]:
    """COUNTERFACTUAL_TARGET as a class index; None for "" (the most likely other class of each sample)."""
    if not name:
        return None
    if name not in class_names:
        raise CounterfactualError(f"COUNTERFACTUAL_TARGET={name!r} is not a class of this model; choose among "
                                  f"{', '.join(map(str, class_names))}, or '' for each sample's most likely other class")
    return list(class_names).index(name)


def target_classes(probabilities: np.ndarray, fixed: Optional[int]) -> np.ndarray:
    """(N,) target class per sample: `fixed`, or the most probable class other than the predicted one."""
    if fixed is not None:
        return np.full(len(probabilities), fixed, dtype=np.int64)
    others = probabilities.copy()
    others[np.arange(len(others)), others.argmax(1)] = -np.inf
    return others.argmax(1)


def guide_pool(x: np.ndarray, y: np.ndarray, lengths: np.ndarray, seed: int) -> dict:
    """The checkpoint's guides: at most GUIDES_PER_CLASS rows of each class (a seeded sample, in file order) of the
    normalized training rows x (N, C, L) with their labels y and lengths."""
    rng = np.random.default_rng(seed)
    rows = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == k), min(int((y == k).sum()), GUIDES_PER_CLASS),
                                              replace=False) for k in np.unique(y)]))
    return {"guides": torch.as_tensor(x[rows], dtype=torch.float32), "guide_labels": torch.as_tensor(y[rows]),
            "guide_lengths": torch.as_tensor(lengths[rows], dtype=torch.long)}


def coarse_widths(length: int) -> np.ndarray:
    return np.unique(np.round(np.geomspace(1, length, COARSE_WIDTHS)).astype(np.int64))


def channel_choices(channels: int) -> list:
    """Each channel alone, then all channels together."""
    return [(c,) for c in range(channels)] + ([tuple(range(channels))] if channels > 1 else [])


def stretches(contrast: np.ndarray, length: int, widths, choices) -> list:
    """Candidate stretches of the given widths and channel choices in search order. contrast (C, L): where the
    sample argues for its predicted class over the target (e.g. the SHAP values of the logit difference); only
    steps before `length` are used."""
    ranked = []
    for choice in choices:
        cumulative = np.concatenate([[0.0], np.cumsum(contrast[list(choice), :length].sum(axis=0))])
        for width in widths:
            mass = cumulative[width:] - cumulative[:-width]
            for start in np.argsort(-mass, kind="stable")[:POSITIONS_PER_SIZE]:
                ranked.append((width * len(choice), -mass[start], Stretch(choice, int(start), int(start + width))))
    # stable: at equal size and mass, single channels (in channel order) come before all channels, earlier first
    ranked.sort(key=lambda item: (item[0], item[1]))
    return [stretch for _, _, stretch in ranked]


def stretch_mask(shape, stretch: Stretch) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[list(stretch.channels), stretch.start:stretch.end] = True
    return mask


def with_stretches(x: torch.Tensor, guide: torch.Tensor, candidates) -> torch.Tensor:
    """(B, C, L): x with each candidate's stretch taken from the guide."""
    mask = torch.from_numpy(np.stack([stretch_mask(x.shape, s) for s in candidates])).to(x.device)
    return torch.where(mask, guide, x)


def smallest_flip(model, x, guide, target: int, contrast: np.ndarray, length: int, budget: int, read: int):
    """(the smallest stretch found that makes the model predict `target`, or None; model evaluations spent): the
    coarse pass over every channel choice, then the finer widths for the choice that flipped. Stretches lie in the
    first `length` steps; the model reads `read` steps of each candidate."""
    grid = coarse_widths(length)
    found, evaluations = first_flip(model, x, guide, target,
                                    stretches(contrast, length, grid, channel_choices(x.shape[0])), budget, read)
    if found is None:
        return None, evaluations
    width = found.end - found.start
    below = grid[grid < width].max(initial=0)
    finer, more = first_flip(model, x, guide, target,
                             stretches(contrast, length, range(below + 1, width), [found.channels]),
                             budget - evaluations, read)
    return finer or found, evaluations + more


def first_flip(model, x, guide, target: int, candidates, budget: int, read: int):
    """(the first candidate the model predicts as `target`, or None; model evaluations spent), at most `budget`."""
    evaluated, batch = 0, FIRST_BATCH
    while evaluated < min(budget, len(candidates)):
        part = candidates[evaluated:min(evaluated + batch, budget)]
        logits = predict_logits(model, with_stretches(x, guide, part), lengths=np.full(len(part), read))
        hits = torch.nonzero(logits.argmax(1) == target)
        evaluated += len(part)
        if len(hits):
            return part[int(hits[0])], evaluated
        batch = min(2 * batch, MAX_BATCH)
    return None, evaluated


def counterfactuals(model, x: torch.Tensor, targets, pool: torch.Tensor, pool_labels, contrasts: np.ndarray,
                    budget: int, lengths=None, pool_lengths=None) -> list:
    """One Counterfactual per sample of x (N, C, L), toward targets (N,) class indices. pool (G, C, L): candidate
    guides, normalized like x, with their labels pool_labels (G,) (None: the model's classes stand in for them);
    contrasts (N, C, L) guide the search; budget: model evaluations per sample; lengths (N,) and
    pool_lengths (G,): real steps per row (None: every row is whole)."""
    lengths, pool_lengths = own_lengths(lengths, x), own_lengths(pool_lengths, pool)
    probabilities = torch.softmax(predict_logits(model, x, lengths=lengths).float(), 1).cpu().numpy()
    pool = pool.to(x.device, x.dtype)
    pool_predicted = predict_logits(model, pool, lengths=pool_lengths).argmax(1).cpu().numpy()
    pool_labels = pool_predicted if pool_labels is None else np.asarray(pool_labels)
    results = []
    for i, target in enumerate(int(t) for t in targets):
        length = int(lengths[i])
        before = float(probabilities[i, target])
        eligible = np.flatnonzero((pool_labels == target) & (pool_predicted == target))
        if probabilities[i].argmax() == target:
            results.append(Counterfactual(target, False, None, None, None, before, None, 0, None,
                                          "the model already predicts the target class"))
            continue
        if not len(eligible):
            results.append(Counterfactual(target, False, None, None, None, before, None, 0, None,
                                          "no guide: no training row of the target class is predicted as it"))
            continue
        shared = np.minimum(pool_lengths[eligible], length)  # steps the sample and each guide both have
        squared = ((pool[eligible, :, :length] - x[i, :, :length]) ** 2).sum(dim=1).cpu().numpy()  # (E, length)
        guide = int(eligible[np.argmin([squared[e, :steps].mean() for e, steps in enumerate(shared)])])
        stretch, evaluations = smallest_flip(model, x[i], pool[guide], target, contrasts[i],
                                             min(length, int(pool_lengths[guide])), budget, length)
        if stretch is None:
            results.append(Counterfactual(target, False, None, None, None, before, None, evaluations, guide,
                                          f"no stretch of the guide flips the prediction within {evaluations} "
                                          "model evaluations"))
            continue
        series = with_stretches(x[i], pool[guide], [stretch])[0].cpu().numpy()
        results.append(Counterfactual(target, True, stretch, series, None, before, None, evaluations, guide,
                                      "the smallest stretch of the guide that flips the prediction"))
    return verified(model, results, lengths)


def verified(model, results: list, lengths: np.ndarray) -> list:
    """The results with predicted and probability_after from the model run on the returned series; a series the
    model does not predict as the target (a flip at float rounding's edge) is withdrawn."""
    found = [r for r in results if r.found]
    if found:
        logits = predict_logits(model, np.stack([r.series for r in found]),
                                lengths=np.array([n for r, n in zip(results, lengths) if r.found]))
        probabilities = torch.softmax(logits.float(), 1).cpu().numpy()
        for r, p in zip(found, probabilities):
            r.predicted, r.probability_after = int(p.argmax()), float(p[r.target])
            if r.predicted != r.target:
                r.found, r.stretch, r.series, r.predicted, r.probability_after = False, None, None, None, None
                r.reason = "the chosen stretch did not flip the prediction when run again"
    return results
