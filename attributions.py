"""Attribution maps of the classifier, one (C, L) map per explained sample and method for the sample's
predicted class, and the checks that say how far to trust each method.

Every method has one shape, chosen by name from `attribution_methods()` as in Captum:

    attribute(model, x, target) -> (N, C, L) tensor     # x (N, C, L) normalized, target (N,) class indices

  saliency              |d logit / d x| (Simonyan et al. 2014; Captum `Saliency`, abs=True). Unsigned: a
                        gradient's sign says which way a change would move the logit, not whether the value
                        present supports the class, so only its size is a saliency.
  input_x_gradient      x * d logit / d x (Captum `InputXGradient`), signed, logit units.
  integrated_gradients  (x - 0) * mean gradient on the straight path from the all-zeros baseline (the
                        training mean in normalized space) to x (Captum `IntegratedGradients`); sums to
                        logit(x) - logit(0).
  gradcam               train_explain.GradCAM on the last conv block, (N, L) spread over every channel.
  occlusion             drop of the logit when a window of steps of one channel is set to 0 (Captum
                        `Occlusion`), averaged over the windows that cover a step.
  lrp_epsilon, lrp_sign layer-wise relevance propagation from lrp.py.
  shap                  the pipeline's interventional SHAP values of the predicted class (given, not computed here).

Faithfulness: deletion and insertion curves (Samek et al. 2017; Petsiuk et al. 2018) with a seeded random
ordering as the control. Sanity: rank correlation with the maps of a weight-randomized copy of the model
(Adebayo et al. 2018). `attribution_outputs` runs all of it for the pipeline.
"""
import copy
import functools
import time

import numpy as np
import torch
from captum.attr import InputXGradient, IntegratedGradients, Occlusion, Saliency

from lrp import lrp_attribute

FAITHFULNESS_FRACTIONS = 20  # deletion/insertion curves take 0, 1/20, ..., 20/20 of the features
SANITY_THRESHOLD = 0.5  # rank correlation with the randomized model's maps above this: "insensitive to the model"
BATCH_ROWS = 512  # model rows per forward pass inside the methods and the curves
SAMPLES_PER_CALL = 64  # explained samples handed to a method at once


# -----------------------------------------------------------------------------
# Methods
def saliency(model, x, target):
    return Saliency(model).attribute(x.detach().requires_grad_(True), target=target, abs=True)


def input_x_gradient(model, x, target):
    return InputXGradient(model).attribute(x.detach().requires_grad_(True), target=target)


def integrated_gradients(model, x, target, steps=64):
    return IntegratedGradients(model).attribute(x, baselines=0.0, target=target, n_steps=steps,
                                                internal_batch_size=max(len(x), BATCH_ROWS))


def gradcam(model, x, target):
    from train_explain import GradCAM

    with GradCAM(model, model.gradcam_layer) as cam:
        maps = cam.attribute(x, target)
    return maps[:, None, :].expand(-1, x.shape[1], -1).clone()


def occlusion_stride(length, window):
    """The largest stride not above window / 2 that makes the windows end exactly at the last step,
    so every step is occluded equally often at the ends as in the middle, and none is left out."""
    span = length - window
    return max([s for s in range(1, max(1, window // 2) + 1) if span % s == 0])


def occlusion(model, x, target, window=10):
    window = min(window, x.shape[2])
    return Occlusion(model).attribute(x, sliding_window_shapes=(1, window),
                                      strides=(1, occlusion_stride(x.shape[2], window)), baselines=0.0,
                                      target=target, perturbations_per_eval=max(1, BATCH_ROWS // len(x)))


def attribution_methods(ig_steps: int, occlusion_window: int) -> dict:
    """name -> attribute(model, x, target) for every method computed here (SHAP comes from the pipeline)."""
    return {
        "saliency": saliency,
        "input_x_gradient": input_x_gradient,
        "integrated_gradients": functools.partial(integrated_gradients, steps=ig_steps),
        "gradcam": gradcam,
        "occlusion": functools.partial(occlusion, window=occlusion_window),
        "lrp_epsilon": functools.partial(lrp_attribute, rule="epsilon"),
        "lrp_sign": functools.partial(lrp_attribute, rule="sign"),
    }


def compute_maps(methods: dict, model, x, target) -> tuple[dict, dict]:
    """(name -> (N, C, L) float32 numpy maps, name -> seconds) for every method, SAMPLES_PER_CALL samples at a time."""
    model.eval()
    maps, seconds = {}, {}
    for name, attribute in methods.items():
        start = time.perf_counter()
        parts = [attribute(model, x[i:i + SAMPLES_PER_CALL], target[i:i + SAMPLES_PER_CALL]).detach()
                 for i in range(0, len(x), SAMPLES_PER_CALL)]
        maps[name] = torch.cat(parts).float().cpu().numpy()  # .cpu() waits for the device: the time is complete
        seconds[name] = time.perf_counter() - start
        if maps[name].shape != tuple(x.shape):
            raise RuntimeError(f"attribution method {name!r} returned shape {maps[name].shape}, "
                               f"expected {tuple(x.shape)}")
    return maps, seconds


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


def deletion_insertion(model, x, target, ranks: np.ndarray, fractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted-class probability (N, F) after setting the first fraction of features (by rank) to the
    baseline 0 (deletion), and after restoring them from the all-zeros baseline (insertion)."""
    from train_explain import predict_logits

    n, channels, length = x.shape
    counts = np.round(fractions * channels * length).astype(int)
    first = torch.from_numpy(ranks[:, None, :] < counts[None, :, None]).to(x.device)  # (N, F, C*L)
    first = first.reshape(n, len(fractions), channels, length)
    rows = x[:, None].expand(-1, len(fractions), -1, -1)
    deleted = torch.where(first, 0.0, rows).reshape(-1, channels, length)
    inserted = torch.where(first, rows, 0.0).reshape(-1, channels, length)
    curves = []
    for variant in (deleted, inserted):
        probability = torch.softmax(predict_logits(model, variant, BATCH_ROWS).float(), dim=1)
        probability = probability.reshape(n, len(fractions), -1)
        curves.append(probability.gather(2, target.view(-1, 1, 1).expand(-1, len(fractions), 1))[..., 0].cpu().numpy())
    return curves[0], curves[1]


def area(curves: np.ndarray, fractions: np.ndarray) -> float:
    """Mean over samples of the area under each curve over fractions in [0, 1]."""
    return float(np.trapezoid(curves, fractions, axis=1).mean())


def faithfulness(model, x, target, maps: dict, seed: int):
    """(fractions, name -> (deletion, insertion) curves (N, F), the same for a seeded random ordering)."""
    n, channels, length = x.shape
    fractions = np.linspace(0.0, 1.0, FAITHFULNESS_FRACTIONS + 1)
    rng = np.random.default_rng(seed)
    curves = {name: deletion_insertion(model, x, target, feature_ranks(m, rng), fractions) for name, m in maps.items()}
    random_ranks = rng.permuted(np.tile(np.arange(channels * length), (n, 1)), axis=1)
    return fractions, curves, deletion_insertion(model, x, target, random_ranks, fractions)


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


def rank_correlations(a: np.ndarray, b: np.ndarray, absolute=True) -> np.ndarray:
    """Per sample Spearman correlation of |a| and |b| (of a and b when absolute is False) over (C, L);
    NaN where either map is constant."""
    from scipy.stats import rankdata

    ranks = [rankdata((np.abs(m) if absolute else m).reshape(len(m), -1), axis=1) for m in (a, b)]
    centred = [r - r.mean(axis=1, keepdims=True) for r in ranks]
    norms = np.linalg.norm(centred[0], axis=1) * np.linalg.norm(centred[1], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (centred[0] * centred[1]).sum(axis=1) / norms


def mean_defined(values: np.ndarray):
    defined = values[np.isfinite(values)]
    return float(defined.mean()) if len(defined) else None


def sanity_check(methods: dict, model, x, target, trained_maps: dict, seed: int) -> dict:
    """Per method in `methods`, the mean over samples of the rank correlation between `trained_maps` and the
    maps of `randomized_copy(model, seed)`: "rank_correlation" of |attribution| and "signed_rank_correlation"
    (Adebayo et al. show both). A method is flagged "insensitive_to_model" when both exceed SANITY_THRESHOLD:
    its maps keep their ranking and their sign without the trained weights. |attribution| alone is not
    enough: x * gradient methods keep the input's shape in |map| (|rho| ~ 0.5) while their signs change."""
    random_maps, _ = compute_maps(methods, randomized_copy(model, seed), x, target)
    result = {}
    for name in methods:
        absolute = rank_correlations(trained_maps[name], random_maps[name])
        mean = mean_defined(absolute)
        signed = mean_defined(rank_correlations(trained_maps[name], random_maps[name], absolute=False))
        result[name] = {"rank_correlation": mean, "undefined_samples": int((~np.isfinite(absolute)).sum()),
                        "signed_rank_correlation": signed,
                        "insensitive_to_model": min(mean or 0.0, signed or 0.0) > SANITY_THRESHOLD}
    return result


# -----------------------------------------------------------------------------
# Regions
def parse_segments(text: str, length: int) -> list[tuple[str, int, int]]:
    """"P:0-20,QRS:20-45,T:45-100" -> [("P", 0, 20), ...]; steps start..end-1; "" -> []."""
    from train_explain import ConfigError

    segments = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, span = item.rpartition(":")
        start, _, end = span.partition("-")
        try:
            start, end = int(start), int(end)
        except ValueError:
            raise ConfigError(f"ATTRIBUTION_SEGMENTS item {item!r} is not name:start-end, e.g. QRS:20-45") from None
        if not name or not 0 <= start < end <= length:
            raise ConfigError(f"ATTRIBUTION_SEGMENTS item {item!r} needs a name and 0 <= start < end <= {length} "
                              f"(the series length; end is exclusive)")
        segments.append((name, start, end))
    return segments


def normalized_share(maps: np.ndarray) -> np.ndarray:
    """Each sample's map divided by its total |attribution|, so samples and methods weigh alike."""
    total = np.abs(maps).reshape(len(maps), -1).sum(axis=1)
    return maps / np.where(total > 0, total, 1.0)[:, None, None]


def mean_share(magnitude: np.ndarray) -> list[float]:
    """(N, R) shares of |attribution| per region -> their mean over samples, rounded for metrics.json."""
    return magnitude.mean(axis=0).round(4).tolist()


def segment_sums(values: np.ndarray, segments) -> np.ndarray:
    """(N, C, L) -> (N, C, S) sums over each named segment's steps."""
    return np.stack([values[:, :, start:end].sum(axis=2) for _, start, end in segments], axis=2)


# -----------------------------------------------------------------------------
# Misclassified test samples
def confused_pairs(y_true, y_pred, class_names, top=10) -> list[dict]:
    pairs, counts = np.unique(np.stack([y_true, y_pred], axis=1)[y_true != y_pred], axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top]
    return [{"true": class_names[pairs[i, 0]], "predicted": class_names[pairs[i, 1]], "count": int(counts[i])}
            for i in order]


def misclassification_outputs(model, test_X, test_y, test_pred, test_prob, test_rows, class_names, channel_names,
                              ig_steps, max_shown, path) -> dict:
    """Integrated gradients for the predicted and the true class of the most confidently misclassified test
    samples (up to max_shown), one figure each, and the most confused class pairs."""
    import plots

    wrong = np.flatnonzero(test_pred != test_y)
    shown = wrong[np.argsort(-test_prob[wrong, test_pred[wrong]], kind="stable")][:max_shown]
    samples = []
    if len(shown):
        x = test_X[torch.as_tensor(shown, device=test_X.device)]
        targets = {name: torch.as_tensor(labels[shown], device=x.device, dtype=torch.long)
                   for name, labels in (("predicted", test_pred), ("true", test_y))}
        method = {"ig": functools.partial(integrated_gradients, steps=ig_steps)}
        maps = {name: compute_maps(method, model, x, target)[0]["ig"] for name, target in targets.items()}
        plots.misclassified_figures(x.cpu().numpy(), maps["predicted"], maps["true"], test_y[shown], test_pred[shown],
                                    test_prob[shown], test_rows[shown], class_names, channel_names, path)
        samples = [{"row": int(test_rows[i]), "true": class_names[test_y[i]], "predicted": class_names[test_pred[i]],
                    "confidence": float(test_prob[i, test_pred[i]]),
                    "true_class_probability": float(test_prob[i, test_y[i]])}
                   for i in shown]
    return {"count": int(len(wrong)), "of": int(len(test_y)), "shown": samples,
            "confused_pairs": confused_pairs(test_y, test_pred, class_names)}


# -----------------------------------------------------------------------------
# Pipeline entry point
def attribution_outputs(model, x, y_true, y_pred, probabilities, shap_values, test_X, test_y, test_pred, test_prob,
                        test_rows, class_names, channel_names, settings: dict, path) -> dict:
    """Every method's maps for the explained samples x (their predicted classes y_pred), written to
    attributions.npz (one (N, C, L) array per method, the samples in the order of shap_values.npz) with
    their figures; returns the metrics.json section: per method seconds, deletion and insertion areas
    and the randomization sanity check, the random-ordering control, regions and misclassifications.

    settings: ATTRIBUTION_WINDOWS, ATTRIBUTION_SEGMENTS, IG_STEPS, OCCLUSION_WINDOW, MAX_MISCLASSIFIED, SEED.
    shap_values (N, C, L, K): the pipeline's SHAP values; path(name) -> file path in the output folder.
    Runs with gradients through the LSTM: on CUDA, call it inside torch.backends.cudnn.flags(enabled=False)."""
    import plots

    n, channels, length = x.shape
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    segments = parse_segments(settings["ATTRIBUTION_SEGMENTS"], length)
    target = torch.as_tensor(y_pred, device=x.device, dtype=torch.long)
    methods = attribution_methods(settings["IG_STEPS"], settings["OCCLUSION_WINDOW"])
    maps, seconds = compute_maps(methods, model, x, target)
    maps["shap"] = np.asarray(shap_values)[np.arange(n), :, :, y_pred].astype(np.float32)
    np.savez(path("attributions.npz"), **maps)

    fractions, curves, random_curves = faithfulness(model, x, target, maps, settings["SEED"])
    sanity = sanity_check(methods, model, x, target, maps, settings["SEED"])
    shares = {name: normalized_share(m) for name, m in maps.items()}
    summary = {}
    for name in maps:
        checked, magnitude = sanity.get(name, {}), np.abs(shares[name])
        summary[name] = {"seconds": seconds.get(name), "deletion_auc": area(curves[name][0], fractions),
                         "insertion_auc": area(curves[name][1], fractions),
                         "sanity_rank_correlation": checked.get("rank_correlation"),
                         "sanity_signed_rank_correlation": checked.get("signed_rank_correlation"),
                         "insensitive_to_model": checked.get("insensitive_to_model"),
                         "channel_share": dict(zip(channel_names, mean_share(magnitude.sum(axis=2))))}
        if segments:
            summary[name]["segment_share"] = dict(zip([s[0] for s in segments],
                                                      mean_share(segment_sums(magnitude, segments).sum(axis=1))))
    random_control = {"deletion_auc": area(random_curves[0], fractions),
                      "insertion_auc": area(random_curves[1], fractions)}

    inputs = x.detach().cpu().numpy()
    plots.method_sample_figures(maps, inputs, y_true, y_pred, probabilities, class_names, channel_names, path)
    plots.method_overlay_figure(maps, 0, y_true, y_pred, probabilities, class_names, segments,
                                path("attribution_overlay.png"))
    plots.method_comparison_figure(summary, random_control, SANITY_THRESHOLD, path("attribution_comparison.png"))
    edges = plots.window_edges(length, settings["ATTRIBUTION_WINDOWS"])
    plots.region_figure({name: plots.per_window(s, settings["ATTRIBUTION_WINDOWS"])[0].mean(axis=0)
                         for name, s in shares.items()}, channel_names,
                        [f"t{a}-{b - 1}" for a, b in zip(edges[:-1], edges[1:])], f"{len(edges) - 1} time windows", n,
                        path("attribution_regions.png"))
    if segments:
        plots.region_figure({name: segment_sums(s, segments).mean(axis=0) for name, s in shares.items()},
                            channel_names, [f"{name} t{a}-{b - 1}" for name, a, b in segments], "named segments", n,
                            path("attribution_segments.png"))
    plots.faithfulness_figure(fractions, {name: c[0].mean(axis=0) for name, c in curves.items()},
                              {name: c[1].mean(axis=0) for name, c in curves.items()},
                              random_curves[0].mean(axis=0), random_curves[1].mean(axis=0), summary, random_control, n,
                              path("attribution_faithfulness.png"))
    misclassified = misclassification_outputs(model, test_X, np.asarray(test_y), np.asarray(test_pred),
                                              np.asarray(test_prob), np.asarray(test_rows), class_names, channel_names,
                                              settings["IG_STEPS"], settings["MAX_MISCLASSIFIED"], path)
    result = {
        "target": "logit of the predicted class", "baseline": "zeros in normalized space (the training mean)",
        "num_explained": n, "methods": summary, "random_control": random_control,
        "faithfulness": {"fractions": FAITHFULNESS_FRACTIONS, "curve": "predicted-class probability",
                         "order": "largest attribution first, ties in random order",
                         "better": "deletion_auc lower, insertion_auc higher than the random control"},
        "sanity": {"test": "Spearman rank correlation of |attribution| with a weight-randomized model's maps, "
                           "mean over samples",
                   "threshold": SANITY_THRESHOLD, "seed": settings["SEED"],
                   "not_checked": {"shap": "computed by the pipeline's SHAP stage (it needs the background rows)"}},
        "windows": settings["ATTRIBUTION_WINDOWS"], "segments": [list(s) for s in segments],
        "misclassified": misclassified,
    }
    return result
