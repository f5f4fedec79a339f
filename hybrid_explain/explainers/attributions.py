"""Attribution methods of the classifier and the owners of its hooks. Metrics of the maps are in checks.py,
drawing in figures/attribution_figures.py, the pipeline's use of them in stages.py.

Every method has one shape, as in Captum, and is described by data in METHODS (its function, whether its
maps are signed, which constants it takes), so figures and the report read the description, not the name:

    attribute(model, x, target, **settings) -> (N, C, L) tensor  # x (N, C, L) normalized, target (N,) classes

  saliency              |d logit / d x| (Simonyan et al. 2014; Captum `Saliency`, abs=True). Unsigned: a
                        gradient's sign says which way a change would move the logit, not whether the value
                        present supports the class, so only its size is a saliency.
  input_x_gradient      x * d logit / d x (Captum `InputXGradient`), signed, logit units.
  integrated_gradients  (x - 0) * mean gradient on the straight path from the all-zeros baseline (the
                        training mean in normalized space) to x (Captum `IntegratedGradients`); sums to
                        logit(x) - logit(0).
  gradcam               `GradCAM` on the last conv block, (N, L) spread over every channel.
  occlusion             drop of the logit when a window of steps of one channel is set to 0 (Captum
                        `Occlusion`), averaged over the windows that cover a step.
  lrp_epsilon, lrp_sign layer-wise relevance propagation from lrp.py.
  shap                  the pipeline's interventional SHAP values of the predicted class (shapley.py; given
                        to the suite by the SHAP stage, not computed here).
  saliency_tsr,         temporal saliency rescaling (Ismail et al. 2020) around saliency or integrated
  integrated_gradients_tsr  gradients: time relevance from masking windows of steps, then feature relevance
                        within the relevant windows (`temporal_saliency_rescaling`). Not in "all": they cost
                        one gradient map per masked window and per (channel, relevant window).
  timing                TIMING (Jang et al. 2025): integrated gradients along paths on which random temporal
                        segments stay at the input (`timing`), signed, logit units; TIMING_STEPS forward and
                        backward passes per sample, like integrated gradients. Not in "all" (docs/measurements/
                        ground-truth.md measures it).

Adding a method: write its function, add one `Method` to METHODS, and a test of what it promises.
"""
import functools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn as nn
from captum.attr import InputXGradient, IntegratedGradients, Occlusion, Saliency

from hybrid_explain.explainers.lrp import lrp_attribute
from hybrid_explain.model import predict_logits
from hybrid_explain.series import Rows, step_mask
from hybrid_explain.explainers.regions import window_spans

BATCH_ROWS = 512  # model rows per forward pass inside the methods
SAMPLES_PER_CALL = 64  # explained samples handed to a method at once
TSR_MAX_WINDOWS = 50  # temporal saliency rescaling masks at most this many windows of steps (one step each up to 50)
TIMING_STEPS = 50  # TIMING's path steps (the reference code's n_samples)
TIMING_SEGMENTS_PER_CHANNEL = 1  # TIMING keeps this many random segments per channel (on average) at the input per path step


# -----------------------------------------------------------------------------
# Hook owners (pytorch-grad-cam's shape: the object registers its hooks on entry and removes them on exit)
def as_list(layers) -> list:
    """A module, or a list of them (an Ensemble's members' layers), as a list."""
    return list(layers) if isinstance(layers, (list, tuple)) else [layers]


class GradCAM:
    """Grad-CAM on one layer (Selvaraju et al. 2017), or on a list of layers (an Ensemble's, one per member).

        with GradCAM(model, model.gradcam_layer) as cam:
            maps = cam.attribute(x)          # (N, L): one map over time per sample, target = predicted class

    With several layers the map is the sum of each layer's map under the model's gradient: for an Ensemble, whose
    logits are the members' mean, that is the mean of the members' own Grad-CAM maps."""

    def __init__(self, model, layer):
        self.model, self.layers = model, as_list(layer)

    def __enter__(self):
        self.activations, self.gradients = {}, {}
        self.handles = [handle for i, layer in enumerate(self.layers)
                        for handle in (layer.register_forward_hook(functools.partial(self._keep_activations, i)),
                                       layer.register_full_backward_hook(functools.partial(self._keep_gradients, i)))]
        return self

    def _keep_activations(self, i, module, inputs, output):
        self.activations[i] = output.detach()

    def _keep_gradients(self, i, module, grad_inputs, grad_outputs):
        self.gradients[i] = grad_outputs[0].detach()

    def attribute(self, x, target=None, lengths=None):
        """ReLU(sum_f mean_t(dy/dA_f) * A_f), stretched linearly from the layer's T steps to the input's L.
        lengths (N,): rows of their own lengths; the mean is over a row's own layer steps, and the map is 0 after
        its end (the layer's steps there and the input steps after lengths)."""
        self.model.eval()
        x = x.detach().requires_grad_(True)  # so the full-backward hook fires even with frozen inputs
        rows = Rows.of(x, lengths)
        with torch.enable_grad():
            logits = self.model(x, rows.model_lengths)
            target = logits.argmax(1) if target is None else torch.as_tensor(target, device=x.device)
            self.model.zero_grad(set_to_none=True)
            logits.gather(1, target.view(-1, 1)).sum().backward()
        if len(self.activations) < len(self.layers) or len(self.gradients) < len(self.layers):
            raise RuntimeError("Grad-CAM hooks captured nothing: the layer is not on the path to the output")
        return sum(self._map(self.activations[i], self.gradients[i], rows) for i in range(len(self.layers)))

    def _map(self, activations, gradients, rows: Rows):
        """One layer's map (N, L) from its activations and gradients (N, F, T)."""
        if not rows.ragged:
            weights = gradients.mean(dim=2, keepdim=True)
            cam = torch.relu((weights * activations).sum(dim=1, keepdim=True))  # (N, 1, T)
            cam = nn.functional.interpolate(cam, size=rows.width, mode="linear", align_corners=False)
            return cam[:, 0]
        layer_steps = self.model.pooled_lengths(rows.lengths, rows.width)[1]
        real = step_mask(layer_steps, activations.shape[2])[:, None]
        weights = gradients.sum(dim=2, keepdim=True) / layer_steps[:, None, None]  # padded steps: no gradient
        cam = torch.relu(torch.where(real, weights * activations, 0.0).sum(dim=1, keepdim=True))
        return rows.zeroed(nn.functional.interpolate(cam, size=rows.width, mode="linear", align_corners=False)[:, 0])

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        return False


class AttentionRecorder:
    """Forward hook on nn.MultiheadAttention that keeps its per-head weights (N, heads, T, T) of every batch. Given
    a list of them (an Ensemble's, one per member), every member's heads side by side, (N, members * heads, T, T):
    member m's head h is head m * heads + h (the members' heads do not correspond, so they are not averaged)."""

    def __init__(self, attention):
        self.modules = as_list(attention)

    def __enter__(self):
        self.batches = []
        self.handles = [module.register_forward_hook(self._keep) for module in self.modules]
        return self

    def _keep(self, module, inputs, output):
        self.batches.append(output[1].detach())

    def record(self, model, x, batch_size: int = BATCH_ROWS, lengths=None) -> torch.Tensor:
        """The weights for every row of x, in order, however many batches the forward passes take. lengths (N,):
        rows of their own lengths; a padded key's weight is 0 (and a padded query's row is set to 0)."""
        self.batches = []
        rows = Rows.of(x, lengths)
        with torch.inference_mode():  # at the full width (not trimmed), so that every batch's weights have the same T
            for start in range(0, len(rows), batch_size):
                part = rows[start:start + batch_size]
                model.eval()(part.x, part.model_lengths)
        if not self.batches:
            raise RuntimeError("the attention hook captured nothing")
        # the hooks fire member after member within each forward pass: batches [b0 m0, b0 m1, ..., b1 m0, ...]
        members = len(self.modules)
        weights = torch.cat([torch.cat(self.batches[i:i + members], dim=1) for i in range(0, len(self.batches), members)])
        if rows.ragged:
            query = step_mask(model.pooled_lengths(rows.lengths, rows.width)[1], weights.shape[2])
            weights = torch.where(query[:, None, :, None], weights, 0.0)
        if len(weights) != len(x):
            raise RuntimeError(f"the attention hook captured {len(weights)} rows for {len(x)} inputs")
        return weights

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()
        return False


def attention_statistics(weights: torch.Tensor, steps=None) -> dict:
    """Min, max and mean of the weights per head (seed 004's hook statistics), and how far each head's
    rows are from uniform (1 = one-hot focus, 0 = uniform): a head near 0 attends to nothing in particular.
    steps (N,): each row's own LSTM steps (model.pooled_lengths); the statistics then cover those only."""
    if steps is not None:
        rows = [attention_statistics(weights[i:i + 1, :, :int(t), :int(t)]) for i, t in enumerate(steps)]
        heads = weights.shape[1]
        pick = lambda key, h: [r["per_head"][h][key] for r in rows]  # noqa: E731
        return {"per_head": [{"head": h, "min": min(pick("min", h)), "max": max(pick("max", h)),
                              "mean": float(np.mean(pick("mean", h))), "focus": float(np.mean(pick("focus", h)))}
                             for h in range(heads)],
                "sequence_steps": weights.shape[2], "own_steps": [int(t) for t in steps]}
    n, heads, t, _ = weights.shape
    entropy = -(weights.clamp_min(1e-12).log() * weights).sum(-1).mean(dim=(0, 2))
    focus = 1 - entropy / math.log(t) if t > 1 else torch.zeros(heads)
    return {"per_head": [{"head": h, "min": float(weights[:, h].min()), "max": float(weights[:, h].max()),
                          "mean": float(weights[:, h].mean()), "focus": float(focus[h])} for h in range(heads)],
            "sequence_steps": t}


# -----------------------------------------------------------------------------
# Methods
def extra_args(x, lengths):
    """Captum's additional_forward_args: each row's length (Captum repeats them with the inputs; the model reads
    rows that all fill the width unmasked)."""
    return (Rows.of(x, lengths).lengths,)


def saliency(model, x, target, lengths=None):
    return Saliency(model).attribute(x.detach().requires_grad_(True), target=target, abs=True,
                                     additional_forward_args=extra_args(x, lengths))


def input_x_gradient(model, x, target, lengths=None):
    return InputXGradient(model).attribute(x.detach().requires_grad_(True), target=target,
                                           additional_forward_args=extra_args(x, lengths))


def integrated_gradients(model, x, target, steps=64, lengths=None):
    return IntegratedGradients(model).attribute(x, baselines=0.0, target=target, n_steps=steps,
                                                internal_batch_size=max(len(x), BATCH_ROWS),
                                                additional_forward_args=extra_args(x, lengths))


def gradcam(model, x, target, lengths=None):
    with GradCAM(model, model.gradcam_layer) as cam:
        maps = cam.attribute(x, target, lengths)
    return maps[:, None, :].expand(-1, x.shape[1], -1).clone()


def occlusion_stride(length, window):
    """The largest stride not above window / 2 that makes the windows end exactly at the last step,
    so every step is occluded equally often at the ends as in the middle, and none is left out."""
    span = length - window
    return max([s for s in range(1, max(1, window // 2) + 1) if span % s == 0])


def occlusion(model, x, target, window=10, lengths=None):
    window = min(window, x.shape[2])
    return Occlusion(model).attribute(x, sliding_window_shapes=(1, window),
                                      strides=(1, occlusion_stride(x.shape[2], window)), baselines=0.0,
                                      target=target, perturbations_per_eval=max(1, BATCH_ROWS // len(x)),
                                      additional_forward_args=extra_args(x, lengths))


def masked_copies(x, spans, channel=None):
    """(N * W, C, L): every sample of x once per span (start, end) of steps, those steps set to 0 (the baseline)
    on every channel, or on `channel` only ((N,) or (N * W,) channel per copy); sample-major."""
    copies = x.repeat_interleave(len(spans), dim=0).clone()
    step = torch.arange(x.shape[2], device=x.device)
    inside = torch.stack([(step >= a) & (step < b) for a, b in spans]).repeat(len(x), 1)  # (N * W, L)
    cells = inside[:, None, :].expand(-1, x.shape[1], -1)
    if channel is not None:
        cells = cells & (torch.arange(x.shape[1], device=x.device)[None, :, None] == channel.view(-1, 1, 1))
    return copies.masked_fill(cells, 0.0)


def map_change(method, model, base, copies: Rows, target):
    """(M,) total |change| of the |maps| of `copies` (M, C, L) from `base` (M, C, L), SAMPLES_PER_CALL copies at a time."""
    changes = []
    for start in range(0, len(copies), SAMPLES_PER_CALL):
        rows = slice(start, start + SAMPLES_PER_CALL)
        maps = method(model, copies.x[rows], target[rows], lengths=copies.lengths[rows]).detach().abs()
        changes.append((maps - base[rows]).abs().sum(dim=(1, 2)))
    return torch.cat(changes)


def temporal_saliency_rescaling(model, x, target, method, windows=TSR_MAX_WINDOWS, lengths=None, **settings):
    """Temporal saliency rescaling (Ismail et al. 2020, Algorithm 1) around a gradient method, unsigned:

    1. time relevance of each window of steps (`regions.window_spans(L, windows)`): the total change of
       |method(x)| when that window is set to 0 on every channel;
    2. the windows whose time relevance is above the sample's mean are relevant; in each, the feature relevance
       of channel c is the total change of |method(x)| when the window is set to 0 on channel c only (1 for a
       single channel, where it would repeat step 1);
    3. map[c, t] = time relevance x feature relevance of t's window, 0 outside the relevant windows.

    Costs W + (relevant windows x C) maps of `method` per sample, all batched. lengths (N,): rows of their own
    lengths; a window after a row's end changes nothing, so it is never relevant."""
    n, channels, length = x.shape
    rows = Rows.of(x, lengths)
    spans = window_spans(length, windows)
    w = len(spans)
    method = functools.partial(method, **settings)
    base = method(model, x, target, lengths=rows.lengths).detach().abs()
    repeat = functools.partial(torch.repeat_interleave, repeats=w, dim=0)
    time_relevance = map_change(method, model, repeat(base), rows.repeat(w).with_values(masked_copies(x, spans)),
                                repeat(target)).view(n, w)
    relevant = time_relevance > time_relevance.mean(dim=1, keepdim=True)
    feature_relevance = torch.zeros(n, channels, w, dtype=time_relevance.dtype, device=x.device)
    if channels == 1:
        feature_relevance[:, 0] = relevant.to(feature_relevance.dtype)
    else:
        sample, window = relevant.nonzero(as_tuple=True)  # one row per relevant (sample, window)
        sample, window = sample.repeat_interleave(channels), window.repeat_interleave(channels)
        channel = torch.arange(channels, device=x.device).repeat(len(sample) // channels)
        copies = torch.stack([masked_copies(x[s:s + 1], [spans[int(k)]], c.view(1))[0]
                              for s, k, c in zip(sample, window, channel)]) if len(sample) else x[:0]
        feature_relevance[sample, channel, window] = map_change(method, model, base[sample],
                                                                rows[sample].with_values(copies), target[sample])
    per_window = time_relevance[:, None, :] * feature_relevance * relevant[:, None, :]
    return per_window.repeat_interleave(torch.as_tensor([b - a for a, b in spans], device=x.device), dim=2)


def fixed_segments(steps, lengths, channels, width, segments, generator) -> torch.Tensor:
    """(steps, N, C, width) bool: for each path step and sample, `segments` random temporal segments, each on one
    channel drawn uniformly, of a length drawn uniformly from 1 to the row's own length, starting at
    floor(u x (length - segment length)) (TIMING's sampling, drumpt/TIMING attribution/explainers.py
    `attribute_random_time_segments_one_dim_same_for_batch`, with its maximum segment length the series length)."""
    n = len(lengths)
    own = lengths.view(1, n, 1).double()
    channel = torch.randint(0, channels, (steps, n, segments), generator=generator)
    span = (1 + (torch.rand(steps, n, segments, generator=generator, dtype=torch.float64) * own).floor()).clamp(max=own)
    start = (torch.rand(steps, n, segments, generator=generator, dtype=torch.float64) * (own - span)).floor()
    t = torch.arange(width, dtype=torch.float64)
    inside = ((t >= start[..., None]) & (t < (start + span)[..., None])).double()  # (steps, N, S, width)
    one_hot = torch.nn.functional.one_hot(channel, channels).double()  # (steps, N, S, C)
    return (one_hot.transpose(2, 3) @ inside) > 0


def timing(model, x, target, steps=TIMING_STEPS, segments_per_channel=TIMING_SEGMENTS_PER_CHANNEL, seed=0,
           lengths=None):
    """TIMING (Jang et al. 2025, ICML; drumpt/TIMING): integrated gradients from the all-zeros baseline along
    paths on which random temporal segments keep the input's values. At path step s (alpha = s / steps, the
    reference's left Riemann sum) every cell not in a segment is alpha x x, a cell in one is x; a cell's map is
    x times its gradient summed over the steps where it was on the path, divided by that number of steps (0 where it
    never was). Segments: segments_per_channel x C per path step and sample (`fixed_segments`), drawn from a
    generator seeded with `seed` on the CPU, so the maps repeat on any device. For f = w . x the map is w x x
    exactly wherever a cell was on the path once; with no segments it is integrated gradients with a left Riemann
    sum. Signed, logit units; steps forward and backward passes per
    sample, BATCH_ROWS rows each. lengths (N,): rows of their own lengths, segments within each row's own steps."""
    n, channels, width = x.shape
    rows = Rows.of(x, lengths)
    generator = torch.Generator().manual_seed(seed)
    on_path = ~fixed_segments(steps, rows.lengths.cpu(), channels, width, segments_per_channel * channels,
                              generator).to(x.device)
    alpha = (torch.arange(steps, dtype=x.dtype, device=x.device) / steps).view(-1, 1, 1, 1)
    total = torch.zeros_like(x)
    per_pass = max(1, BATCH_ROWS // n)
    model.eval()
    with torch.enable_grad():
        for first in range(0, steps, per_pass):
            part = slice(first, first + per_pass)
            free = on_path[part]
            path = torch.where(free, alpha[part] * x.detach(), x.detach()).requires_grad_(True)
            copies = path.reshape(-1, channels, width)
            logits = model(copies, rows.lengths.repeat(len(free)))
            chosen = logits.gather(1, target.to(x.device).repeat(len(free)).view(-1, 1)).sum()
            gradient, = torch.autograd.grad(chosen, path)
            total += torch.where(free, gradient, 0.0).sum(0)
    count = on_path.sum(0)
    return torch.where(count > 0, total * x.detach() / count.clamp_min(1), 0.0).detach()


@dataclass(frozen=True)
class Method:
    """One attribution method. attribute: None for a map the pipeline hands in (SHAP). signed: its maps say
    for or against the class (diverging colours) rather than only how much (sequential colours).
    settings: setting name (lower case) -> keyword argument of attribute."""
    name: str
    attribute: Optional[Callable]
    signed: bool
    label: str  # how the report and figures name it
    settings: dict = field(default_factory=dict)
    in_all: bool = True  # run by ATTRIBUTION_METHODS="all"; False for methods too costly to run by default


METHODS = {m.name: m for m in [
    Method("saliency", saliency, False, "saliency |gradient|"),
    Method("input_x_gradient", input_x_gradient, True, "input x gradient"),
    Method("integrated_gradients", integrated_gradients, True, "integrated gradients", {"ig_steps": "steps"}),
    Method("gradcam", gradcam, False, "Grad-CAM (last conv block)"),
    Method("occlusion", occlusion, True, "occlusion", {"occlusion_window": "window"}),
    Method("lrp_epsilon", functools.partial(lrp_attribute, rule="epsilon"), True, "LRP-epsilon"),
    Method("lrp_sign", functools.partial(lrp_attribute, rule="sign"), True, "LRP-SIGN"),
    Method("shap", None, True, "SHAP (interventional)"),
    Method("saliency_tsr", functools.partial(temporal_saliency_rescaling, method=saliency), False,
           "saliency + temporal saliency rescaling", in_all=False),
    Method("integrated_gradients_tsr", functools.partial(temporal_saliency_rescaling, method=integrated_gradients),
           False, "integrated gradients + temporal saliency rescaling", {"ig_steps": "steps"}, in_all=False),
    Method("timing", timing, True, "TIMING (IG on segment-masked paths)", {"seed": "seed"}, in_all=False),
]}


def method_functions(settings: dict, names=None) -> dict:
    """name -> attribute(model, x, target) with the method's settings taken from `settings` (lower-case setting
    names, e.g. dataclasses.asdict(config.explain)), for the methods named (None: those in "all") computed here
    (SHAP comes from the pipeline)."""
    return {m.name: functools.partial(m.attribute, **{kw: settings[name] for name, kw in m.settings.items()})
            for m in METHODS.values()
            if m.attribute is not None and (m.in_all if names is None else m.name in names)}


def compute_maps(methods: dict, model, x, target, lengths=None) -> tuple[dict, dict]:
    """(name -> (N, C, L) float32 numpy maps, name -> seconds) for every method, SAMPLES_PER_CALL samples at a time.
    lengths (N,) tensor: rows of their own lengths, given to each method, whose maps are then exactly 0 after each
    row's end (a window that straddles the end, as occlusion's do, would otherwise spill over it)."""
    model.eval()
    batch = Rows.of(x, lengths)
    maps, seconds = {}, {}
    for name, attribute in methods.items():
        start = time.perf_counter()
        parts = []
        for i in range(0, len(x), SAMPLES_PER_CALL):
            rows = batch[i:i + SAMPLES_PER_CALL]
            own = {"lengths": rows.lengths} if rows.ragged else {}  # a method of full-length rows need not take lengths
            parts.append(rows.zeroed(attribute(model, rows.x, target[i:i + SAMPLES_PER_CALL], **own).detach()))
        maps[name] = torch.cat(parts).float().cpu().numpy()  # .cpu() waits for the device: the time is complete
        seconds[name] = time.perf_counter() - start
        if maps[name].shape != tuple(x.shape):
            raise RuntimeError(f"attribution method {name!r} returned shape {maps[name].shape}, "
                               f"expected {tuple(x.shape)}")
    return maps, seconds


def normalized_share(maps: np.ndarray) -> np.ndarray:
    """Each sample's map divided by its total |attribution|, so samples and methods weigh alike."""
    total = np.abs(maps).reshape(len(maps), -1).sum(axis=1)
    return maps / np.where(total > 0, total, 1.0)[:, None, None]
