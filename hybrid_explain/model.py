"""The classifier and batched prediction: `HybridCNNLSTMAttention`, `Ensemble`, `build_model` from the model's
arguments, and the helpers for rows of different lengths. Stands alone: imports torch and the settings' names.

    from hybrid_explain.checkpoint import load_model
    from hybrid_explain.model import predict_logits
    net, checkpoint = load_model("outputs/saved_model_hybrid_explained.pth")
    logits = predict_logits(net, x)       # x (N, C, L), normalized with checkpoint["normalization"]
"""
import math

import numpy as np
import torch
import torch.nn as nn

from hybrid_explain.config import FRONT_ENDS, NORMALIZATIONS
from hybrid_explain.series import model_lengths, step_mask, trimmed, zeroed_after


def pooling_sizes(length: int, min_pooled_length: int, max_pooled_length: int, blocks: int = 2) -> list[int]:
    """Pool factor of each conv block: halve only while the sequence stays at least min_pooled_length
    long (so a 4-step series keeps its 4 steps for attention), and pool harder when it would stay
    above max_pooled_length (so a 1,500-step series reaches the LSTM as ~125 steps)."""
    sizes = []
    for remaining in range(blocks, 0, -1):
        size = 2 if length // 2 >= min_pooled_length else 1
        size = max(size, math.ceil((length / max_pooled_length) ** (1 / remaining)))
        sizes.append(size)
        length //= size
    return sizes


INCEPTION_KERNELS = (9, 19, 39)  # InceptionTime's 10/20/40, odd so that a series keeps its length
INCEPTION_DEPTH = 3  # inception modules of the second block, bridged by one residual shortcut (InceptionTime's unit)


def conv_block(in_channels: int, out_channels: int, kernel_size: int, pool: int) -> nn.Sequential:
    # Module layers only, each used once: shap.DeepExplainer attaches its rules to modules.
    return nn.Sequential(
        nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.BatchNorm1d(out_channels),
        nn.ReLU(),
        nn.MaxPool1d(pool) if pool > 1 else nn.Identity(),
    )


def edge_padded(x: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """x (N, C, T) with the steps from count (N,) on replaced by each row's last real step: a max over a window
    that reaches past a row's end then equals MaxPool1d's on the row alone (which pads with -inf)."""
    last = torch.minimum(torch.arange(x.shape[2], device=x.device)[None, :], (count - 1)[:, None])  # (N, T)
    return x.gather(2, last[:, None, :].expand(-1, x.shape[1], -1))


def normalized(norm: nn.BatchNorm1d, h: torch.Tensor, count=None) -> torch.Tensor:
    """norm(h); in training mode with count (N,), whose steps from count on are padding, BatchNorm's batch
    statistics, and the running statistics it updates, are over the real steps only, as for the rows alone (in
    eval mode its running statistics do not depend on the padding)."""
    if count is None or not norm.training:
        return norm(h)
    keep = step_mask(count, h.shape[2])[:, None, :].to(h.dtype)  # (N, 1, T)
    steps = keep.sum()
    mean = (h * keep).sum(dim=(0, 2)) / steps
    var = ((h - mean[None, :, None]) ** 2 * keep).sum(dim=(0, 2)) / steps
    with torch.no_grad():  # BatchNorm1d's update: momentum 0.1, the unbiased variance
        norm.running_mean.mul_(1 - norm.momentum).add_(norm.momentum * mean)
        norm.running_var.mul_(1 - norm.momentum).add_(norm.momentum * var * steps / (steps - 1).clamp(min=1))
        norm.num_batches_tracked.add_(1)
    h = (h - mean[None, :, None]) / torch.sqrt(var[None, :, None] + norm.eps)
    return h * norm.weight[None, :, None] + norm.bias[None, :, None]


class InceptionModule(nn.Module):
    """InceptionTime's module (Ismail Fawaz et al. 2020): a 1x1 bottleneck (for more than one input channel),
    parallel convs of widths INCEPTION_KERNELS on it and a 1x1 conv on a stride-1 max-pool of the input,
    concatenated, BatchNorm, ReLU: 4 * branch_channels out, the input's length kept. The convs have no bias
    (BatchNorm follows), so a zero-padded step stays zero up to the BatchNorm: rows of their own lengths are read
    like the rows alone."""

    def __init__(self, in_channels: int, branch_channels: int):
        super().__init__()
        self.bottleneck = nn.Conv1d(in_channels, branch_channels, 1, bias=False) if in_channels > 1 else nn.Identity()
        width = branch_channels if in_channels > 1 else in_channels
        self.branches = nn.ModuleList(nn.Conv1d(width, branch_channels, k, padding=k // 2, bias=False)
                                      for k in INCEPTION_KERNELS)
        self.pool = nn.MaxPool1d(3, stride=1, padding=1)
        self.pool_conv = nn.Conv1d(in_channels, branch_channels, 1, bias=False)
        self.norm = nn.BatchNorm1d(4 * branch_channels)
        self.relu = nn.ReLU()

    def forward(self, x, count=None):
        """x (N, C, T) -> (N, 4 * branch_channels, T). count (N,): row i's real steps, x being 0 after them."""
        squeezed = self.bottleneck(x)
        pooled = self.pool(x if count is None else edge_padded(x, count))
        h = torch.cat([branch(squeezed) for branch in self.branches] + [self.pool_conv(pooled)], dim=1)
        return self.relu(normalized(self.norm, h, count))


class InceptionBlock(nn.Module):
    """`depth` InceptionModules, with (residual=True) a 1x1 conv + BatchNorm shortcut from the block's input added
    after the last one (then ReLU), then MaxPool1d(pool): (N, in_channels, T) -> (N, out_channels, T // pool)."""

    def __init__(self, in_channels: int, out_channels: int, depth: int, pool: int, residual: bool):
        super().__init__()
        self.layers = nn.ModuleList(InceptionModule(in_channels if i == 0 else out_channels, out_channels // 4)
                                    for i in range(depth))
        self.shortcut = nn.Sequential(nn.Conv1d(in_channels, out_channels, 1, bias=False),
                                      nn.BatchNorm1d(out_channels)) if residual else None
        self.relu = nn.ReLU() if residual else nn.Identity()
        self.pool = nn.MaxPool1d(pool) if pool > 1 else nn.Identity()

    def forward(self, x, count=None):
        """count (N,): row i's real steps, x being 0 after them; the padding is zeroed again before each module."""
        h = x
        for module in self.layers:
            h = module(h if count is None else zeroed_after(h, count), count)
        if self.shortcut is not None:
            conv, norm = self.shortcut
            h = self.relu(h + normalized(norm, conv(x), count))
        return self.pool(h)


# A constant series is centred, not blown up from float rounding: its std counts as at least this share of its mean
# (1e-5, above float32's rounding of the mean) or 1e-8 in absolute terms. A row 10,000 times quieter than the file's
# loudest still has a std far above both, so its shape is read in full.
SERIES_STD_FLOOR = (1e-5, 1e-8)


def series_statistics(x: torch.Tensor, lengths=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std), each (N, C, 1): every row's channels over their own steps (the first lengths[i] of row i; all of
    them without lengths), the std floored (SERIES_STD_FLOOR)."""
    if lengths is None:
        mean = x.mean(dim=2, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=2, keepdim=True)
    else:
        keep = step_mask(lengths, x.shape[2])[:, None, :]
        count = keep.sum(dim=2, keepdim=True).clamp(min=1).to(x.dtype)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        mean = torch.where(keep, x, zero).sum(dim=2, keepdim=True) / count
        var = torch.where(keep, (x - mean) ** 2, zero).sum(dim=2, keepdim=True) / count
    relative, absolute = SERIES_STD_FLOOR
    return mean, torch.sqrt(var + (relative * mean) ** 2 + absolute ** 2)


class HybridCNNLSTMAttention(nn.Module):
    """(N, C, L) normalized series -> (N, K) logits.

    Two Conv1d blocks extract local shapes, a bidirectional LSTM reads them in order, multi-head
    self-attention (weights kept per head, read by a forward hook) relates all steps, and the
    classifier sees the time-averaged attention output beside the time-averaged conv features.
    `gradcam_layer` is the last conv block, the layer Grad-CAM hooks.

    conv_front_end "plain": the two conv blocks are Conv1d(kernel_size) + BatchNorm + ReLU + pool. "inception": the
    first is one InceptionModule (cnn_channels out), the second INCEPTION_DEPTH of them (2 * cnn_channels out) with
    a residual shortcut, each followed by the same pooling; kernel_size is then unused.

    normalization "per_series": the network first z-scores each row's channels over the row's own steps
    (series_statistics), so that a quiet recording's shape reaches the convs as clearly as a loud one's; with
    amplitude_features the classifier also sees what that removed, each channel's mean and log std (2 C inputs).
    "per_channel": the input is read as given (the training file's per-channel statistics, applied outside).
    length_feature: the classifier also sees log(row length), which a masked model cannot otherwise see."""

    def __init__(self, input_channels, sequence_length, num_classes, cnn_channels=32, lstm_hidden_size=64,
                 lstm_layers=1, attention_heads=4, dropout=0.1, kernel_size=7, min_pooled_length=16,
                 max_pooled_length=128, conv_front_end="plain", normalization="per_channel",
                 amplitude_features=False, length_feature=False):
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, not {normalization!r}")
        self.per_series = normalization == "per_series"
        self.amplitude_features = amplitude_features and self.per_series
        self.length_feature = length_feature
        pool1, pool2 = pooling_sizes(sequence_length, min_pooled_length, max_pooled_length)
        self.pool_factors = (pool1, pool2)
        if conv_front_end == "plain":
            self.conv1 = conv_block(input_channels, cnn_channels, kernel_size, pool1)
            self.conv2 = conv_block(cnn_channels, 2 * cnn_channels, kernel_size, pool2)
        elif conv_front_end == "inception":
            self.conv1 = InceptionBlock(input_channels, cnn_channels, 1, pool1, residual=False)
            self.conv2 = InceptionBlock(cnn_channels, 2 * cnn_channels, INCEPTION_DEPTH, pool2, residual=True)
        else:
            raise ValueError(f"conv_front_end must be one of {FRONT_ENDS}, not {conv_front_end!r}")
        self.lstm = nn.LSTM(2 * cnn_channels, lstm_hidden_size, lstm_layers, batch_first=True,
                            bidirectional=True, dropout=dropout if lstm_layers > 1 else 0.0)
        self.attention = nn.MultiheadAttention(2 * lstm_hidden_size, attention_heads, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * cnn_channels + 2 * lstm_hidden_size, num_classes)
        # The row facts' own weights start at zero and draw no random numbers: training starts from the network that
        # reads shapes alone, and on rows z-scored already (the UCR sets) it is the per_channel network, same seed.
        facts = self.row_fact_count(input_channels)
        self.fact_head = nn.utils.skip_init(nn.Linear, facts, num_classes, bias=False) if facts else None
        if self.fact_head is not None:
            nn.init.zeros_(self.fact_head.weight)
        self.pooled_length = sequence_length // pool1 // pool2

    @property
    def gradcam_layer(self) -> nn.Module:
        return self.conv2

    def row_fact_count(self, input_channels: int) -> int:
        """Inputs of the classifier beyond the context vector: 2 per channel (amplitude) and 1 (length)."""
        return 2 * input_channels * self.amplitude_features + self.length_feature

    def row_facts(self, x, lengths=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x as the conv blocks read it, the row facts (N, row_fact_count) for the classifier). per_series: each
        row's channels z-scored over the row's own steps, and with amplitude_features their mean and log std;
        length_feature: log of each row's length (the width L without lengths)."""
        facts = []
        if self.per_series:
            mean, std = series_statistics(x, lengths)
            x = (x - mean) / std
            if self.amplitude_features:
                facts += [mean[..., 0], torch.log(std[..., 0])]
        if self.length_feature:
            steps = torch.full((len(x),), x.shape[2], device=x.device) if lengths is None else lengths
            facts.append(torch.log(steps.to(x.dtype))[:, None])
        return x, torch.cat(facts, dim=1) if facts else x.new_zeros(len(x), 0)

    def read_lengths(self, lengths: torch.Tensor, width: int) -> torch.Tensor:
        """The steps the first conv block reads of rows `width` steps wide: a series shorter than the pooling
        factor is read as if zero-padded to it, so that at least one step reaches the LSTM."""
        return torch.clamp(lengths, min=math.prod(self.pool_factors)).clamp(max=width)

    def pooled_lengths(self, lengths: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The real steps after each conv block of rows `width` steps wide (of read_lengths). MaxPool1d drops a
        last incomplete window, as it does on a series alone."""
        pool1, pool2 = self.pool_factors
        after1 = self.read_lengths(lengths, width) // pool1
        return after1, after1 // pool2

    def forward(self, x, lengths=None, mix=None):
        """x (N, C, L) -> logits (N, K). lengths (N,): row i's series is x[i, :, :lengths[i]]; the steps after it
        (zeros, NaN, anything) do not change the output. None, or every row full length: all of x is read.
        mix (partner indices (N,), weight w), in training: mixup, row i read as w * row i + (1 - w) * row partner[i],
        blended as the network reads them (after the per-series z-score, with the row facts), so that a loud row
        does not drown a quiet partner's shape; rows of different lengths blend to the longer one."""
        lengths = model_lengths(lengths, x.shape[2], x.device)
        x, facts = self.row_facts(x, lengths)
        if mix is not None:
            partner, weight = mix
            x = blended(x if lengths is None else zeroed_after(x, lengths), partner, weight)
            facts = blended(facts, partner, weight)
            lengths = None if lengths is None else torch.maximum(lengths, lengths[partner])
        if lengths is None:
            features = self.conv2(self.conv1(x))  # (N, 2*cnn, T)
            sequence, _ = self.lstm(features.transpose(1, 2))  # (N, T, 2*hidden)
            attended, _ = self.attention(sequence, sequence, sequence, need_weights=True, average_attn_weights=False)
            context = torch.cat([features.mean(dim=2), (sequence + attended).mean(dim=1)], dim=1)
        else:
            context = self._masked_context(x, lengths)
        logits = self.head(self.dropout(context))
        return logits if self.fact_head is None else logits + self.fact_head(facts)

    def _masked_context(self, x, lengths):
        """forward's context vector for rows of their own lengths: every padded value is replaced (zeroed_after)
        before each layer that mixes steps."""
        real = zeroed_after
        after1, after2 = self.pooled_lengths(lengths, x.shape[2])
        features = masked_block(self.conv1, real(x, lengths, 2), self.read_lengths(lengths, x.shape[2]))
        features = real(masked_block(self.conv2, real(features, after1, 2), after1), after2, 2)  # (N, 2*cnn, T)
        packed = nn.utils.rnn.pack_padded_sequence(features.transpose(1, 2), after2.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        sequence, _ = nn.utils.rnn.pad_packed_sequence(self.lstm(packed)[0], batch_first=True,
                                                       total_length=features.shape[2])  # zeros after each length
        padded = ~step_mask(after2, features.shape[2])
        attended, _ = self.attention(sequence, sequence, sequence, key_padding_mask=padded, need_weights=True,
                                     average_attn_weights=False)
        count = after2[:, None].to(features.dtype)
        return torch.cat([features.sum(dim=2) / count, real(sequence + attended, after2, 1).sum(dim=1) / count], dim=1)


def blended(values: torch.Tensor, partner: torch.Tensor, weight: float) -> torch.Tensor:
    """Mixup (Zhang et al., 2018): w * values + (1 - w) * values[partner], row by row."""
    return weight * values + (1 - weight) * values[partner]


def masked_block(block: nn.Module, x: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """A conv block on rows whose steps from count (N,) on are padding (set to 0): in training mode BatchNorm's
    batch statistics, and the running statistics it updates, are over the real steps only, as for the rows
    alone (`normalized`); in eval mode it uses its running statistics, which do not depend on the padding."""
    if isinstance(block, InceptionBlock):
        return block(x, count)  # the module itself, so that hooks on it (Grad-CAM's) see it
    conv, norm, relu, pool = block
    if not norm.training:
        return block(x)  # the module itself, so that hooks on it (Grad-CAM's) see it
    return pool(relu(normalized(norm, conv(x), count)))


class Ensemble(nn.Module):
    """`size` HybridCNNLSTMAttention networks of one architecture, each initialised and trained on its own: their
    logits (N, K) averaged. The mean of logits, not of probabilities, so that every explanation of the ensemble is
    the mean of its members' (gradients, Shapley values and LRP relevances are linear in the output, and LRP's
    conservation holds for the mean); its accuracy is within 0.02 of the mean of softmax's on the sets measured
    (docs/measurements/accuracy.md). Grad-CAM's layers and the attention modules are the members', one each."""

    def __init__(self, size: int, **arguments):
        super().__init__()
        self.members = nn.ModuleList(HybridCNNLSTMAttention(**arguments) for _ in range(size))
        self.pool_factors = self.members[0].pool_factors
        self.pooled_length = self.members[0].pooled_length

    @property
    def gradcam_layer(self) -> list[nn.Module]:
        return [member.gradcam_layer for member in self.members]

    @property
    def attention(self) -> list[nn.Module]:
        return [member.attention for member in self.members]

    def read_lengths(self, lengths, width):
        return self.members[0].read_lengths(lengths, width)

    def pooled_lengths(self, lengths, width):
        return self.members[0].pooled_lengths(lengths, width)

    def forward(self, x, lengths=None, members=False, mixes=None):
        """x (N, C, L) -> the members' mean logits (N, K). members=True: each member's own logits, (size, N, K),
        which training fits one loss each to; x (and lengths) may then hold one batch per member, (size, N, C, L)
        (and (size, N)), member i reading x[i], and mixes one mixup per member (HybridCNNLSTMAttention's mix)."""
        size = len(self.members)
        inputs = zip(x, [None] * size if lengths is None else lengths) if x.dim() == 4 else [(x, lengths)] * size
        mixes = [None] * size if mixes is None else mixes
        logits = torch.stack([member(part, own, mix)
                              for member, (part, own), mix in zip(self.members, inputs, mixes)])
        return logits if members else logits.mean(dim=0)


def input_description(model: nn.Module) -> str:
    """What the network reads, in words, for the log and the report."""
    network = model.members[0] if isinstance(model, Ensemble) else model
    words = ["inputs: the training file's per-channel statistics applied"]
    if network.per_series:
        words.append("then each row's channels z-scored over the row's own steps by the network")
    extras = (["each channel's mean and log std"] if network.amplitude_features else []) + (
        ["log row length"] if network.length_feature else [])
    if extras:
        words.append(f"the classifier also reads {' and '.join(extras)}")
    return ", ".join(words)


def ensemble_size(model: nn.Module) -> int:
    """The networks whose mean the model's logits are: 1 for one network."""
    return len(model.members) if isinstance(model, Ensemble) else 1


MODEL_ARGS = ["input_channels", "sequence_length", "num_classes", "cnn_channels", "lstm_hidden_size",
              "lstm_layers", "attention_heads", "dropout", "kernel_size", "min_pooled_length", "max_pooled_length"]
# Model arguments added later, with the value that a checkpoint written before them means.
LATER_MODEL_ARGS = {"conv_front_end": "plain", "normalization": "per_channel", "amplitude_features": False,
                    "length_feature": False}


def build_model(hyperparameters: dict) -> nn.Module:
    """One network, or with ensemble_size > 1 an Ensemble of that many (a checkpoint written before ensembles
    has no ensemble_size: one network)."""
    arguments = {name: hyperparameters[name] for name in MODEL_ARGS}
    arguments.update({name: hyperparameters.get(name, old) for name, old in LATER_MODEL_ARGS.items()})
    size = hyperparameters.get("ensemble_size", 1)
    model = HybridCNNLSTMAttention(**arguments) if size == 1 else Ensemble(size, **arguments)
    model.arguments = {**arguments, "ensemble_size": size}  # what rebuilds it (nanoGPT's model_args)
    return model


@torch.inference_mode()
def predict_logits(model: nn.Module, X, batch_size: int = 512, lengths=None) -> torch.Tensor:
    """Logits (N, K) of the model in eval mode, batch_size rows per forward pass. X: (N, C, L) tensor or array of
    any float type (a float64 array from pandas included), moved to the model's device and dtype. lengths (N,):
    each row's series length (see HybridCNNLSTMAttention.forward); None: every row is L steps long."""
    model.eval()
    parameter = next(model.parameters())
    X = torch.as_tensor(np.asarray(X) if not torch.is_tensor(X) else X, dtype=parameter.dtype,
                        device=parameter.device)
    if not len(X):
        return X.new_zeros(0)
    lengths = model_lengths(lengths, X.shape[2], X.device)
    if lengths is None:
        return torch.cat([model(part) for part in X.split(batch_size)])
    minimum = math.prod(getattr(model, "pool_factors", (1,)))
    return torch.cat([model(*trimmed(part, part_lengths, minimum))
                      for part, part_lengths in zip(X.split(batch_size), lengths.split(batch_size))])
