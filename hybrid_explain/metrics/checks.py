"""How far to trust the model and an attribution map: whether the model learned its task at all (its training
and test accuracy against always answering the largest training class, with a Wilson interval), faithfulness
(deletion and insertion curves, Samek et al. 2017; Petsiuk et al. 2018, with a seeded random ordering as the
control) and the model-parameter randomization sanity check (Adebayo et al. 2018). Metrics only: the methods are
in attributions.py, drawing in figures/attribution_figures.py."""
import copy
import math

import numpy as np
import torch

from hybrid_explain.model import predict_logits
from hybrid_explain.series import Rows, step_mask

# A model that fitted its training rows is far above always answering the largest class: training accuracy below
# halfway from that rate to 1 means it has not (the recordings: 0.25-0.33 against a needed 0.58 before the
# normalization was fixed, 0.94 after; the default data's networks reach 1.0).
TRAIN_ACCURACY_MARGIN = 0.5
CONFIDENCE_Z = 1.959964  # the standard normal's 97.5 % quantile: two-sided 95 % intervals
TRY_NEXT = ("more epochs (--epochs), per-series normalization (--normalization=per_series, the default) for "
            "recordings of different amplitudes, or the input page of the docs (docs/input.md)")
FAITHFULNESS_FRACTIONS = 20  # deletion/insertion curves take 0, 1/20, ..., 20/20 of the features
SANITY_THRESHOLD = 0.5  # rank correlation with the randomized model's maps above this: "insensitive to the model"
BATCH_ROWS = 512  # model rows per forward pass of the curves


# -----------------------------------------------------------------------------
# Has the model learned its task?
def wilson_interval(successes: int, trials: int, z: float = CONFIDENCE_Z) -> tuple[float, float]:
    """The Wilson score interval of a proportion (Wilson 1927): unlike p +- z * se, it stays inside [0, 1] and keeps
    its coverage on a few dozen test rows and at accuracies near 0 or 1."""
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_check(class_names, train_class_counts, final_train_accuracy, y_true=None, y_pred=None) -> dict:
    """metrics.json's "accuracy_check": the test accuracy beside the majority-class rate (the share of the test rows of
    the most frequent training class: the score of always answering it) with its 95 % Wilson interval, and the final
    training accuracy beside what a model that fitted its rows reaches. `learned` is False, with a warning per reason,
    when the training accuracy stays below TRAIN_ACCURACY_MARGIN of the way from the training majority rate to 1, or
    when the interval's lower end is not above the majority rate. train_class_counts: training rows per class (None
    for a checkpoint of an earlier version: no majority class); final_train_accuracy: the kept epoch's (None without
    a training history); y_true, y_pred: class indices of the test rows (None without labels)."""
    majority = None if train_class_counts is None else int(np.argmax(train_class_counts))  # the first on ties
    check = {"majority_class": None if majority is None else class_names[majority], "interval_method": "wilson",
             "final_train_accuracy": final_train_accuracy, "warnings": []}
    if majority is not None and final_train_accuracy is not None:
        train_rate = train_class_counts[majority] / sum(train_class_counts)
        needed = train_rate + TRAIN_ACCURACY_MARGIN * (1 - train_rate)
        check.update(train_majority_rate=train_rate, train_accuracy_needed=needed)
        if final_train_accuracy < needed:
            check["warnings"].append(
                f"the final training accuracy {final_train_accuracy:.3f} stays below {needed:.3f}, halfway from "
                f"always answering the largest training class ({train_rate:.3f}) to 1: the model has not fitted even "
                "its training rows")
    if y_true is not None:
        correct, rows = int((y_true == y_pred).sum()), len(y_true)
        low, high = wilson_interval(correct, rows)
        check.update(test_accuracy=correct / rows, test_rows=rows, interval_95=[low, high])
        if majority is not None:
            rate = float((y_true == majority).mean())
            check["majority_rate"] = rate
            if low <= rate:
                check["warnings"].append(
                    f"the test accuracy {correct / rows:.3f} (95 % Wilson interval {low:.3f}-{high:.3f}) is not "
                    f"clearly above {rate:.3f}, the score of always answering the largest training class "
                    f"{class_names[majority]!r}")
    check["learned"] = not check["warnings"]
    if check["warnings"]:
        check["advice"] = f"the explanations describe a model that has not learned its task; try {TRY_NEXT}"
    return check


def accuracy_lines(check) -> list[str]:
    """The console's last lines: the test accuracy beside the majority rate, and a `warning:` line when the model has
    not learned its task."""
    lines = []
    if "test_accuracy" in check:
        low, high = check["interval_95"]
        lines.append(f"test accuracy {check['test_accuracy']:.3f} (95 % Wilson interval {low:.3f}-{high:.3f}, "
                     f"{check['test_rows']} rows)"
                     + (f"; always answering the largest training class {check['majority_class']!r} scores "
                        f"{check['majority_rate']:.3f}" if "majority_rate" in check else ""))
    if check["final_train_accuracy"] is not None:
        lines.append(f"final training accuracy {check['final_train_accuracy']:.3f}")
    if check["warnings"]:
        lines.append(f"warning: {'; '.join(check['warnings'])}. So {check['advice']}")
    return lines


# -----------------------------------------------------------------------------
# Faithfulness: deletion and insertion curves
def feature_ranks(attribution: np.ndarray, rng) -> np.ndarray:
    """(N, C, L) -> (N, C*L) rank of each feature, 0 = largest attribution; equal values in random order."""
    values = attribution.reshape(len(attribution), -1)
    shuffle = rng.permuted(np.tile(np.arange(values.shape[1]), (len(values), 1)), axis=1)
    order = np.take_along_axis(shuffle, np.argsort(-np.take_along_axis(values, shuffle, axis=1), axis=1,
                                                   kind="stable"), axis=1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(values.shape[1])[None, :].repeat(len(values), 0), axis=1)
    return ranks


def real_features(lengths, channels: int, length: int) -> np.ndarray:
    """(N, C*L) bool: the (channel, step) features before each row's end, in feature_ranks' order."""
    return np.repeat(step_mask(np.asarray(lengths), length)[:, None, :], channels, axis=1).reshape(len(lengths), -1)


def deletion_insertion(model, x, target, ranks: np.ndarray, fractions: np.ndarray,
                       lengths=None) -> tuple[np.ndarray, np.ndarray]:
    """Predicted-class probability (N, F) after setting the first fraction of features (by rank) to the
    baseline 0 (deletion), and after restoring them from the all-zeros baseline (insertion). lengths (N,) tensor:
    rows of their own lengths; a fraction is then of each row's own features (ranked first by faithfulness)."""
    n, channels, length = x.shape
    batch = Rows.of(x, lengths)
    counts = np.round(fractions[None, :] * channels * batch.own[:, None]).astype(int)  # (N, F)
    first = torch.from_numpy(ranks[:, None, :] < counts[:, :, None]).to(x.device)  # (N, F, C*L)
    first = first.reshape(n, len(fractions), channels, length)
    rows = x[:, None].expand(-1, len(fractions), -1, -1)
    deleted = torch.where(first, 0.0, rows).reshape(-1, channels, length)
    inserted = torch.where(first, rows, 0.0).reshape(-1, channels, length)
    curves, variant_lengths = [], batch.lengths.repeat_interleave(len(fractions))
    for variant in (deleted, inserted):
        probability = torch.softmax(predict_logits(model, variant, BATCH_ROWS, variant_lengths).float(), dim=1)
        probability = probability.reshape(n, len(fractions), -1)
        curves.append(probability.gather(2, target.view(-1, 1, 1).expand(-1, len(fractions), 1))[..., 0].cpu().numpy())
    return curves[0], curves[1]


def area(curves: np.ndarray, fractions: np.ndarray) -> float:
    """Mean over samples of the area under each curve over fractions in [0, 1]."""
    return float(np.trapezoid(curves, fractions, axis=1).mean())


def deletion_against_random(deletion: np.ndarray, random_deletion: np.ndarray, fractions: np.ndarray) -> dict:
    """A method's deletion areas (N, F curves) against the random ordering's on the same samples: the mean of the
    per-sample differences with a paired 95 % t interval. The method is "better_than_random" only when the whole
    interval lies below zero: one seeded random ordering over a few samples scatters its area by about 0.1 (the
    default data: 0.48-0.65 per sample), so a lower mean alone can be chance. With one sample: its difference < 0."""
    from scipy.stats import t

    differences = np.trapezoid(deletion, fractions, axis=1) - np.trapezoid(random_deletion, fractions, axis=1)
    mean = float(differences.mean())
    half = (float(t.ppf(0.975, len(differences) - 1) * differences.std(ddof=1) / math.sqrt(len(differences)))
            if len(differences) > 1 else 0.0)
    return {"mean": mean, "interval_95": [mean - half, mean + half], "better_than_random": mean + half < 0}


def faithfulness(model, x, target, maps: dict, seed: int, lengths=None):
    """(fractions, name -> (deletion, insertion) curves (N, F), the same for a seeded random ordering). lengths (N,)
    tensor: rows of their own lengths; only their own features are ranked and removed (padding ranks last)."""
    n, channels, length = x.shape
    fractions = np.linspace(0.0, 1.0, FAITHFULNESS_FRACTIONS + 1)
    rng = np.random.default_rng(seed)
    rows = Rows.of(x, lengths)
    real = real_features(rows.own, channels, length).reshape(n, channels, length)
    curves = {name: deletion_insertion(model, x, target, feature_ranks(np.where(real, m, -np.inf), rng), fractions,
                                       rows.lengths) for name, m in maps.items()}
    random_ranks = feature_ranks(np.where(real, rng.random(real.shape), -np.inf), rng)
    return fractions, curves, deletion_insertion(model, x, target, random_ranks, fractions, rows.lengths)


# -----------------------------------------------------------------------------
# Sanity: model-parameter randomization (Adebayo et al. 2018)
def randomized_copy(model, seed: int):
    """A copy of the model with every parameter drawn afresh from its initial distribution (seeded, on the
    CPU so the draw does not depend on the device) and BatchNorm's running statistics reset."""
    device = next(model.parameters()).device
    clone = copy.deepcopy(model).cpu()
    reset = set()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in clone.modules():
            # nn.MultiheadAttention names its initializer _reset_parameters
            initialize = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
            if initialize is not None:
                initialize()
                reset.update(id(p) for p in module.parameters(recurse=False))
    missed = [name for name, p in clone.named_parameters() if id(p) not in reset]
    if missed:
        raise RuntimeError(f"randomized_copy cannot reinitialize {missed}: their modules have no reset_parameters")
    return clone.to(device).eval()


def rank_correlations(a: np.ndarray, b: np.ndarray, absolute=True, lengths=None) -> np.ndarray:
    """Per sample Spearman correlation of |a| and |b| (of a and b when absolute is False) over (C, L);
    NaN where either map is constant. lengths (N,): over each row's own steps only (padding is 0 in both maps,
    and its ties would count as agreement)."""
    from scipy.stats import rankdata

    if lengths is not None:
        return np.array([rank_correlations(a[i:i + 1, :, :n], b[i:i + 1, :, :n], absolute)[0]
                         for i, n in enumerate(np.asarray(lengths))])

    ranks = [rankdata((np.abs(m) if absolute else m).reshape(len(m), -1), axis=1) for m in (a, b)]
    centred = [r - r.mean(axis=1, keepdims=True) for r in ranks]
    norms = np.linalg.norm(centred[0], axis=1) * np.linalg.norm(centred[1], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (centred[0] * centred[1]).sum(axis=1) / norms


def mean_defined(values: np.ndarray):
    defined = values[np.isfinite(values)]
    return float(defined.mean()) if len(defined) else None


def sanity_check(methods: dict, model, x, target, trained_maps: dict, seed: int, lengths=None) -> dict:
    """Per method in `methods`, the mean over samples of the rank correlation between `trained_maps` and the
    maps of `randomized_copy(model, seed)`: "rank_correlation" of |attribution| and "signed_rank_correlation"
    (Adebayo et al. show both). A method is flagged "insensitive_to_model" when both exceed SANITY_THRESHOLD:
    its maps keep their ranking and their sign without the trained weights. |attribution| alone is not
    enough: x * gradient methods keep the input's shape in |map| (|rho| ~ 0.5) while their signs change."""
    from hybrid_explain.explainers.attributions import compute_maps  # here: Captum takes seconds to import

    random_maps, _ = compute_maps(methods, randomized_copy(model, seed), x, target, lengths)
    rows = Rows.of(x, lengths)
    own = rows.own if rows.ragged else None  # full-length rows: one rank correlation over the whole batch
    result = {}
    for name in methods:
        absolute = rank_correlations(trained_maps[name], random_maps[name], lengths=own)
        mean = mean_defined(absolute)
        signed = mean_defined(rank_correlations(trained_maps[name], random_maps[name], absolute=False, lengths=own))
        result[name] = {"rank_correlation": mean, "undefined_samples": int((~np.isfinite(absolute)).sum()),
                        "signed_rank_correlation": signed,
                        "insensitive_to_model": min(mean or 0.0, signed or 0.0) > SANITY_THRESHOLD}
    return result
