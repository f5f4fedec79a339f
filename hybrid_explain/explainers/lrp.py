"""Layer-wise Relevance Propagation (LRP) for `train_explain.HybridCNNLSTMAttention`.

Captum's LRP has no rules for nn.LSTM, nn.MultiheadAttention or Conv1d+BatchNorm stacks, so this module
re-implements the model's eval-mode forward pass as an "LRP-modified forward": every nonlinearity is
rewritten with detached factors so that its value equals the model's logits while
``input * gradient`` of the modified graph is the LRP relevance (the technique of Ali et al. 2022 and
Zennit). The rules, layer by layer:

* Conv1d + BatchNorm1d (eval): BatchNorm is an affine map and is folded into the conv (one linear layer
  with weight W*gamma/sigma and bias (b - mean)*gamma/sigma + beta); epsilon rule on it.
* Inception front end (model.InceptionBlock): the 1x1 bottleneck is a bias-free conv (epsilon rule); each
  branch conv, and the 1x1 conv after the stride-1 max-pool (winner takes all), gets its channels of the
  BatchNorm that follows the concatenation folded in; the residual shortcut is a 1x1 conv with its BatchNorm
  folded in, and its sum with the last module is linear (epsilon rule).
* ReLU: relevance passes through unchanged (R_in = R_out; a dead unit has zero relevance).
* MaxPool1d: winner takes all (all relevance of a window goes to its argmax).
* LSTM (Arras et al. 2017, 2019): the sigmoid gates i, f, o are constants; the cell input
  g = tanh(W x + U h + b) passes relevance through tanh unchanged (identity rule) and splits it over
  x, h_{t-1} and the bias with the epsilon rule; c_t = f*c_{t-1} + i*g splits relevance over its two
  terms with the epsilon rule and each term gives all of it to its signal (c_{t-1} or g), none to the
  gate; h_t = o*tanh(c_t) gives all relevance to c_t (identity through tanh, gate o constant).
  Both directions and any number of layers.
* Multi-head attention (Ali et al. 2022, AH-rule): the softmax attention weights are constants, so
  relevance flows only through the value path: value projection (epsilon rule), weights @ values
  (linear in the values, epsilon rule), output projection (epsilon rule). Queries and keys get none.
* Residual sum ``sequence + attended``, mean over time, concatenation: linear, epsilon rule (bias-free,
  so conservative up to the epsilon stabiliser).
* Classifier head: epsilon rule. The explained quantity is the target logit itself (R = logit).
* normalization "per_series" (model.row_facts): each row's z-score is linear in x with its statistics held
  constant, its centring a per-sample bias; the classifier's amplitude and length inputs are per-sample biases.

Epsilon rule, for z_j = sum_i w_ij x_i + b_j:  R_i = sum_j x_i w_ij / (z_j + eps*sign(z_j)) * R_j
(sign(0) = +1). Biases keep the share b_j / (z_j + eps*sign(z_j)) * R_j and the stabiliser keeps
eps*sign(z_j) / (z_j + eps*sign(z_j)) * R_j, so input relevance alone does not sum to the logit when
the model has biases; ``lrp_conservation`` reports the bias share separately
(input_sum + bias_sum + stabiliser share == logit; the stabiliser share -> 0 as eps -> 0).

Rule "sign" = LRP-SIGN of Gumpfer et al. 2023 ("SIGNed explanations: Unveiling relevant features by
reducing bias", Information Fusion 101883; SIGN / SIGN-mu input-layer rule): every layer uses the rules
above except the input layer, where x_i in the numerator is replaced by s_mu(x_i):
    R_i = sum_j s_mu(x_i) * w_ij / (z_j + eps*sign(z_j)) * R_j,   s_mu(x) = +1 if x >= mu else -1
(mu = 0, the default, is the SIGN rule with sign(0) = +1). Hence, exactly, for every element:
    R_sign_i * x_i * s_mu(x_i) == R_epsilon_i      (for mu = 0: R_sign_i * |x_i| == R_epsilon_i),
i.e. SIGN relevance is the epsilon relevance divided by |x_i|, with the sign it would have for a
positive input flipped where x_i < mu. Its total does not equal the logit.

The explained function is always the eval-mode model (BatchNorm running statistics, no dropout),
whatever ``model.training`` says. Model parameters are read, never changed, and get no gradients.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from hybrid_explain.model import Ensemble, InceptionBlock, edge_padded, series_statistics
from hybrid_explain.series import model_lengths, step_mask, zeroed_after

RULES = ("epsilon", "sign")


# -----------------------------------------------------------------------------
# Rule building blocks: the value of each is the ordinary forward value; the gradient is modified.
def _stabilised(z, eps):
    """Epsilon rule at the output z of a linear map: same value, gradient scaled by z / (z + eps*sign z)."""
    if not eps:
        return z
    zd = z.detach()
    scale = zd / (zd + eps * torch.where(zd >= 0, 1.0, -1.0).to(zd.dtype))
    return zd + (z - zd) * scale


def _tanh_identity(z):
    """tanh whose relevance passes through unchanged: value tanh(z), gradient tanh(z)/z (1 at z = 0)."""
    zd = z.detach()
    t = torch.tanh(zd)
    tiny = zd.abs() < 1e-30
    ratio = torch.where(tiny, torch.ones_like(zd), t / torch.where(tiny, torch.ones_like(zd), zd))
    return t + (z - zd) * ratio


class _Biases:
    """Biases entered in the modified forward. When tracking, each is a per-sample leaf (N, *shape) whose
    input * gradient is the relevance it absorbs."""

    def __init__(self, n, track):
        self.n, self.track, self.leaves = n, track, []

    def __call__(self, b):
        b = b.detach()
        if not self.track:
            return b
        leaf = b.expand(self.n, *b.shape).clone().requires_grad_(True)
        self.leaves.append(leaf)
        return leaf

    def per_sample(self, b):
        """A bias of each sample's own, b (N, ...): entered like the shared ones."""
        b = b.detach()
        if not self.track:
            return b
        leaf = b.clone().requires_grad_(True)
        self.leaves.append(leaf)
        return leaf


def _row_facts(model, x, bias, lengths=None):
    """model.row_facts in the modified forward: the per-series z-score is linear in x with each row's statistics
    held constant (the treatment of LayerNorm in Ali et al. 2022), its centring a per-sample bias; the classifier's
    row facts (amplitude, length) are per-sample biases too. So input relevance is that of the series' shape, and
    what the amplitude and length inputs take is counted with the biases (lrp_conservation's bias_sum)."""
    facts = model.row_facts(x.detach(), lengths)[1]
    if model.per_series:
        mean, std = (s.detach() for s in series_statistics(x.detach(), lengths))
        x = x / std + bias.per_sample(-mean / std)
    return x, bias.per_sample(facts)


# -----------------------------------------------------------------------------
# Layers
def _folded(norm, channels=slice(None)):
    """(scale, shift) of the eval-mode BatchNorm1d's channels: norm(h) = h * scale + shift."""
    if norm.running_mean is None:
        raise ValueError("BatchNorm1d without running statistics cannot be folded")
    scale = norm.weight.detach()[channels] / torch.sqrt(norm.running_var.detach()[channels] + norm.eps)
    return scale, norm.bias.detach()[channels] - norm.running_mean.detach()[channels] * scale


def _folded_conv(conv, a, norm, channels, eps, bias):
    """Epsilon rule on a bias-free Conv1d with the BatchNorm channels that follow it folded in."""
    scale, shift = _folded(norm, channels)
    z = F.conv1d(a, conv.weight.detach() * scale[:, None, None], None, conv.stride, conv.padding)
    return _stabilised(z + bias(shift)[..., None], eps)


def _inception_block(block, a, eps, bias, count=None):
    """model.InceptionBlock: its modules, the residual shortcut, the pool. count (N,): rows of their own lengths,
    the padding zeroed before each module and edge-padded before each max-pool branch, as the model does."""
    x = a
    for module in block.layers:
        a = a if count is None else zeroed_after(a, count)
        squeezed = a if isinstance(module.bottleneck, nn.Identity) else _stabilised(
            F.conv1d(a, module.bottleneck.weight.detach()), eps)
        pooled = module.pool(a if count is None else edge_padded(a, count))
        width = module.pool_conv.out_channels
        parts = [_folded_conv(conv, source, module.norm, slice(i * width, (i + 1) * width), eps, bias)
                 for i, (conv, source) in enumerate([(branch, squeezed) for branch in module.branches]
                                                    + [(module.pool_conv, pooled)])]
        a = torch.relu(torch.cat(parts, dim=1))
    if block.shortcut is not None:
        conv, norm = block.shortcut
        a = torch.relu(_stabilised(a + _folded_conv(conv, x, norm, slice(None), eps, bias), eps))
    return block.pool(a)


def _front_block(block, a, eps, bias, count=None):
    """One of the model's two conv blocks, plain or inception."""
    if isinstance(block, InceptionBlock):
        return _inception_block(block, a, eps, bias, count)
    return _conv_block(block, a, eps, bias)


def _conv_block(block, a, eps, bias):
    """Conv1d (+ BatchNorm1d folded in) -> ReLU -> MaxPool1d / Identity, as in train_explain.conv_block."""
    layers = list(block)
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, nn.Conv1d):
            w = layer.weight.detach()
            b = layer.bias.detach() if layer.bias is not None else w.new_zeros(w.shape[0])
            if i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm1d):
                bn = layers[i + 1]
                if bn.running_mean is None:
                    raise ValueError("BatchNorm1d without running statistics cannot be folded")
                gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(b)
                beta = bn.bias.detach() if bn.bias is not None else torch.zeros_like(b)
                scale = gamma / torch.sqrt(bn.running_var.detach() + bn.eps)
                w = w * scale[:, None, None]
                b = (b - bn.running_mean.detach()) * scale + beta
                i += 1
            z = F.conv1d(a, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)
            if layer.padding_mode != "zeros":
                raise ValueError(f"unsupported Conv1d padding_mode {layer.padding_mode!r}")
            a = _stabilised(z + bias(b)[..., None], eps)
        elif isinstance(layer, nn.ReLU):
            a = torch.relu(a)  # identity rule: R passes unchanged to the active units
        elif isinstance(layer, (nn.MaxPool1d, nn.Identity)):
            a = layer(a)  # gradient (hence relevance) goes to each window's argmax
        else:
            raise ValueError(f"no LRP rule for {type(layer).__name__} in a conv block")
        i += 1
    return a


def lstm_direction(x, w_ih, w_hh, b, eps, reverse=False, lengths=None):
    """One direction of one LSTM layer, LRP-modified (Arras et al.): x (N, T, D) -> h (N, T, H).

    Gate order i, f, g, o as in torch; ``b`` is bias_ih + bias_hh (N, 4H) or (4H,). lengths (N,): each row's own
    steps, as a packed sequence: the state stays zero after a row's end (the reverse pass starts at its last
    step) and the outputs there are 0."""
    n, steps, _ = x.shape
    hidden = w_hh.shape[1]
    zx = x @ w_ih.T  # input part of all pre-activations at once
    h = x.new_zeros(n, hidden)
    c = x.new_zeros(n, hidden)
    out = [None] * steps
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        z = zx[:, t] + h @ w_hh.T + b
        zd = z.detach()
        i_gate = torch.sigmoid(zd[:, :hidden])
        f_gate = torch.sigmoid(zd[:, hidden:2 * hidden])
        o_gate = torch.sigmoid(zd[:, 3 * hidden:])
        g = _tanh_identity(_stabilised(z[:, 2 * hidden:3 * hidden], eps))
        c = _stabilised(f_gate * c + i_gate * g, eps)  # gates are constants: relevance to signal only
        h = o_gate * _tanh_identity(c)
        if lengths is not None:
            inside = (t < lengths)[:, None]
            h, c = torch.where(inside, h, 0.0), torch.where(inside, c, 0.0)
        out[t] = h
    return torch.stack(out, dim=1)


def _lstm(lstm, x, eps, bias, lengths=None):
    if not lstm.batch_first or lstm.proj_size:
        raise ValueError("expected a batch_first LSTM without projection")
    for layer in range(lstm.num_layers):
        outputs = []
        for suffix in ([""] + (["_reverse"] if lstm.bidirectional else [])):
            name = f"l{layer}{suffix}"
            w_ih = getattr(lstm, f"weight_ih_{name}").detach()
            w_hh = getattr(lstm, f"weight_hh_{name}").detach()
            if lstm.bias:
                b = getattr(lstm, f"bias_ih_{name}").detach() + getattr(lstm, f"bias_hh_{name}").detach()
            else:
                b = w_ih.new_zeros(w_ih.shape[0])
            outputs.append(lstm_direction(x, w_ih, w_hh, bias(b), eps, reverse=bool(suffix), lengths=lengths))
        x = torch.cat(outputs, dim=2)  # inter-layer dropout is the identity in eval mode
    return x


def _attention(mha, x, eps, bias, lengths=None):
    """Self-attention (query = key = value = x), AH-rule: attention weights are constants. lengths (N,): the keys
    after a row's end get weight 0, as key_padding_mask gives them."""
    if mha.in_proj_weight is None or mha.bias_k is not None or mha.add_zero_attn or not mha.batch_first:
        raise ValueError("expected batch_first self-attention with a packed in-projection")
    n, steps, embed = x.shape
    heads = mha.num_heads
    head_dim = embed // heads
    w = mha.in_proj_weight.detach()
    b = mha.in_proj_bias.detach() if mha.in_proj_bias is not None else w.new_zeros(3 * embed)
    xd = x.detach()
    q = (xd @ w[:embed].T + b[:embed]).view(n, steps, heads, head_dim).transpose(1, 2)
    k = (xd @ w[embed:2 * embed].T + b[embed:2 * embed]).view(n, steps, heads, head_dim).transpose(1, 2)
    scores = (q * math.sqrt(1.0 / head_dim)) @ k.transpose(-2, -1)
    if lengths is not None:
        padded = ~step_mask(lengths, steps)
        scores = scores.masked_fill(padded[:, None, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (N, h, T, T)
    v = _stabilised(x @ w[2 * embed:].T + bias(b[2 * embed:]).unsqueeze(-2), eps)
    v = v.view(n, steps, heads, head_dim).transpose(1, 2)
    mixed = _stabilised(weights @ v, eps)  # linear in v once the weights are constants
    mixed = mixed.transpose(1, 2).reshape(n, steps, embed)
    out_w = mha.out_proj.weight.detach()
    out_b = mha.out_proj.bias.detach() if mha.out_proj.bias is not None else out_w.new_zeros(embed)
    return _stabilised(mixed @ out_w.T + bias(out_b).unsqueeze(-2), eps)


def lrp_forward(model, x, epsilon=1e-6, track_bias=False, lengths=None):
    """LRP-modified forward of the eval-mode model: returns (logits (N, K), list of bias leaves).

    The logits equal ``model.eval()(x)`` (``model(x, lengths)`` with lengths) up to float rounding (BatchNorm is
    folded into the convs); x * d logit / d x is the epsilon-rule relevance of x, and for each bias leaf
    b * d logit / d b the relevance that bias absorbs (only with track_bias). With lengths the steps after each
    row's end are replaced by 0 before every layer that mixes steps, as the model does, so they get no relevance."""
    if isinstance(model, Ensemble):  # the members' mean logits: their relevances averaged, conservation kept
        runs = [lrp_forward(member, x, epsilon, track_bias, lengths) for member in model.members]
        return torch.stack([logits for logits, _ in runs]).mean(dim=0), [leaf for _, leaves in runs for leaf in leaves]
    bias = _Biases(x.shape[0], track_bias)
    lengths = model_lengths(lengths, x.shape[2], x.device)
    x, facts = _row_facts(model, x, bias, lengths)
    if lengths is None:
        features = _front_block(model.conv2, _front_block(model.conv1, x, epsilon, bias), epsilon, bias)  # (N, F, T)
        sequence = _lstm(model.lstm, features.transpose(1, 2), epsilon, bias)  # (N, T, 2H)
        attended = _attention(model.attention, sequence, epsilon, bias)
        pooled = _stabilised(_stabilised(sequence + attended, epsilon).mean(dim=1), epsilon)
        context = torch.cat([_stabilised(features.mean(dim=2), epsilon), pooled], dim=1)
    else:  # the model's _masked_context, layer by layer
        real = zeroed_after
        after1, after2 = model.pooled_lengths(lengths, x.shape[2])
        read = model.read_lengths(lengths, x.shape[2])
        first = _front_block(model.conv1, real(x, lengths), epsilon, bias, read)
        features = real(_front_block(model.conv2, real(first, after1), epsilon, bias, after1), after2)
        sequence = _lstm(model.lstm, features.transpose(1, 2), epsilon, bias, after2)
        attended = _attention(model.attention, sequence, epsilon, bias, after2)
        count = after2[:, None].to(features.dtype)
        summed = real((_stabilised(sequence + attended, epsilon)).transpose(1, 2), after2).sum(dim=2)
        pooled = _stabilised(summed / count, epsilon)
        context = torch.cat([_stabilised(features.sum(dim=2) / count, epsilon), pooled], dim=1)
    head_w = model.head.weight.detach()
    head_b = model.head.bias.detach() if model.head.bias is not None else head_w.new_zeros(head_w.shape[0])
    logits = context @ head_w.T + bias(head_b)
    if model.fact_head is not None:
        logits = logits + facts @ model.fact_head.weight.detach().T
    logits = _stabilised(logits, epsilon)  # dropout is the identity in eval mode
    return logits, bias.leaves


# -----------------------------------------------------------------------------
# Public API
def _relevance(model, x, target, rule, epsilon, mu, track_bias, lengths=None):
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, not {rule!r}")
    if x.dim() != 3:
        raise ValueError(f"x must be (N, C, L), got shape {tuple(x.shape)}")
    with torch.inference_mode(False), torch.enable_grad():
        dtype = next(model.parameters()).dtype
        inp = x.detach().clone().to(dtype).requires_grad_(True)
        logits, leaves = lrp_forward(model, inp, epsilon, track_bias, lengths)
        n = inp.shape[0]
        if target is None:
            target = logits.detach().argmax(dim=1)
        else:
            target = torch.as_tensor(target, device=logits.device).long().reshape(-1)
            if target.numel() == 1 and n != 1:
                target = target.expand(n)
            if target.shape != (n,):
                raise ValueError(f"target must hold one class per sample ({n}), got shape {tuple(target.shape)}")
            if n and (target.min() < 0 or target.max() >= logits.shape[1]):
                raise ValueError(f"target classes must lie in [0, {logits.shape[1]})")
        explained = logits.gather(1, target[:, None])[:, 0]
        if n == 0:
            grads = [torch.zeros_like(inp)] + [torch.zeros_like(leaf) for leaf in leaves]
        else:
            grads = torch.autograd.grad(explained.sum(), [inp] + leaves, allow_unused=True)
            grads = [torch.zeros_like(t) if g is None else g for t, g in zip([inp] + leaves, grads)]
    grad_x = grads[0].detach()
    if rule == "epsilon":
        relevance = inp.detach() * grad_x
    else:
        relevance = torch.where(inp.detach() >= mu, 1.0, -1.0).to(grad_x.dtype) * grad_x
    bias_sum = sum((leaf.detach() * g.detach()).flatten(1).sum(1) for leaf, g in zip(leaves, grads[1:]))
    if not leaves:
        bias_sum = relevance.new_zeros(n)
    return relevance.to(x.dtype), bias_sum, explained.detach()


def lrp_attribute(model, x, target=None, rule="epsilon", epsilon=1e-6, mu=0.0, lengths=None) -> torch.Tensor:
    """LRP relevance of each input value: x (N, C, L) -> (N, C, L), detached, on x's device.

    target: None explains each sample's predicted class, else one class index per sample (N,).
    rule: "epsilon" (LRP-epsilon throughout) or "sign" (LRP-SIGN: SIGN-mu rule in the input layer,
    epsilon above; see the module docstring). epsilon: the stabiliser of every epsilon rule
    (0 gives LRP-0). mu: threshold of the SIGN-mu rule (0 = SIGN). Batched over N. lengths (N,): rows of their
    own lengths (model.forward); the relevance after a row's end is 0."""
    return _relevance(model, x, target, rule, epsilon, mu, track_bias=False, lengths=lengths)[0]


def lrp_conservation(model, x, target=None, rule="epsilon", epsilon=1e-6, mu=0.0) -> dict:
    """How the explained logit is shared out, per sample (each value a tensor (N,)):

    logit: the explained logit; input_sum: total input relevance; bias_sum: relevance absorbed by all
    biases (conv and folded BatchNorm shifts, LSTM, attention, head); residual: logit - input_sum -
    bias_sum, the share absorbed by the epsilon stabilisers plus float rounding (for rule "epsilon" it
    tends to 0 with epsilon; for "sign" input_sum is not meant to match the logit)."""
    relevance, bias_sum, logit = _relevance(model, x, target, rule, epsilon, mu, track_bias=True)
    input_sum = relevance.flatten(1).sum(1).to(logit.dtype)
    return {"input_sum": input_sum, "bias_sum": bias_sum, "logit": logit,
            "residual": logit - input_sum - bias_sum}
