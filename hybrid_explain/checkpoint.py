"""The checkpoint: the weights with everything needed to rebuild and feed the model, the rules a file must meet
before any memory is asked for, and `load_model`, which rebuilds the model from the file alone.

    from hybrid_explain.checkpoint import load_model
    net, checkpoint = load_model("outputs/saved_model_hybrid_explained.pth")   # eval mode, on CPU
"""
import hashlib
import math
import os

import numpy as np
import torch

from hybrid_explain.config import FRONT_ENDS, MAX_COLUMNS, NORMALIZATIONS, SETTING_RANGES, model_problem
from hybrid_explain.model import INCEPTION_DEPTH, INCEPTION_KERNELS, MODEL_ARGS, build_model
from hybrid_explain.version import __version__


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line."""


def weights_digest(state_dict: dict) -> str:
    """sha256 of the weights: each tensor's name, dtype, shape and bytes, in name order. Stored in the checkpoint
    and checked on load, so that bytes damaged inside a tensor (which still unpickles) are found."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


# The checkpoint's format: 2 adds format_version and keeps only the model's own arguments in hyperparameters
# (0.10.0); a file without the field is format 1, whose hyperparameters also hold every run setting of the
# constants block (build_model reads only the model's, so both load alike; tests/data holds one of each).
FORMAT_VERSION = 2


def checkpoint_dict(model, hyperparameters, class_names, channel_names, feature_columns, normalization, epoch,
                    val_accuracy, val_loss) -> dict:
    """The fields every checkpoint has: the weights and what rebuilds and feeds the model."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {
        "format_version": FORMAT_VERSION,
        "version": __version__,  # of train_explain that wrote it; a checkpoint without it is older than 0.9.0
        "model_state_dict": state,
        "weights_sha256": weights_digest(state),
        "hyperparameters": hyperparameters,
        "class_names": list(class_names),
        "channel_names": list(channel_names),
        "feature_columns": list(feature_columns),
        "normalization": normalization,
        "epoch": epoch,
        # None, not NaN, without a validation split: metrics.json stays strict JSON
        "val_accuracy": None if math.isnan(val_accuracy) else val_accuracy,
        "val_loss": None if math.isnan(val_loss) else val_loss,
        "selected_on": ("last epoch of the schedule (no validation split, VAL_FRACTION=0)" if math.isnan(val_loss)
                        else "lowest validation loss (cross-entropy without label smoothing)"),
    }


def training_checkpoint(model, hyperparameters, table, normalization, kept, train_x, background, label_type: str,
                        seed: int, held_out, training: dict, distillation: dict | None = None) -> dict:
    """The checkpoint a training writes, script and estimator alike: checkpoint_dict's fields and what
    --train=False needs to explain new data without the training file: the SHAP background, the training lengths
    and class counts, the label type and the counterfactual guides.
    table: the training rows' facts (class_names, channel_names, feature_columns, y, lengths); kept: (epoch,
    validation accuracy, validation loss) of the kept weights; train_x (N, C, L): the normalized training rows;
    background: (rows, lengths) of the SHAP background; label_type: "int" or "str" (what predict() gives back);
    held_out: the indices of the rows held out from training (the validation split), which calibrate the
    probabilities and the prediction sets (the "trust" field, hybrid_explain/trust/state.py); training: the training
    settings (config.TrainingConfig as a dict), kept as a record of how the weights were made (the model itself is
    rebuilt from `hyperparameters` alone); distillation: how the network learned from a teacher (DISTILL), or None."""
    from hybrid_explain.explainers.counterfactuals import guide_pool
    from hybrid_explain.trust import state as trust_state

    checkpoint = checkpoint_dict(model, hyperparameters, table.class_names, table.channel_names,
                                 table.feature_columns, normalization, *kept)
    checkpoint.update(background=torch.as_tensor(background[0]).cpu(), background_lengths=torch.as_tensor(background[1]),
                      length_range=[int(table.lengths.min()), int(table.lengths.max())],
                      train_class_counts=np.bincount(table.y, minlength=len(table.class_names)).tolist(),
                      label_type=label_type, training=dict(training), distillation=distillation,
                      **guide_pool(train_x, table.y, table.lengths, seed))
    device = next(model.parameters()).device
    checkpoint["trust"] = trust_state.from_model(model, torch.as_tensor(train_x).to(device), table.y, table.lengths,
                                                 held_out, seed)
    return checkpoint


def save_checkpoint(checkpoint: dict, path) -> None:
    """Write a checkpoint: under a temporary name, then renamed, so that a reader never sees half a file."""
    atomic_save(checkpoint, path)


def save_torch(obj, path):
    """torch.save, with its failed writes (a RuntimeError from its zip writer) raised as the OSError they are."""
    try:
        torch.save(obj, path)
    except RuntimeError as exc:  # our own dicts of tensors always serialize: a RuntimeError here is the file
        raise OSError(None, f"torch.save could not write the file ({str(exc).splitlines()[0][:100]})", path) from None


def atomic_save(obj, path):
    """torch.save under a temporary name, then rename: a reader never sees half a file."""
    partial = f"{path}.partial"
    try:
        save_torch(obj, partial)
    except OSError:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    os.replace(partial, path)


MAX_PARAMETERS = 200_000_000


def inception_parameters(in_channels: int, out_channels: int, depth: int, residual: bool) -> int:
    """Parameters of InceptionBlock(in_channels, out_channels, depth, residual=residual)."""
    b, total = out_channels // 4, 0
    for layer in range(depth):
        c = in_channels if layer == 0 else out_channels
        width = b if c > 1 else c
        total += (c * b if c > 1 else 0) + width * b * sum(INCEPTION_KERNELS) + c * b + 2 * 4 * b
    return total + (in_channels * out_channels + 2 * out_channels if residual else 0)


def parameter_count(hp: dict) -> int:
    """Parameters build_model(hp) would allocate, computed without allocating them."""
    c, k, h = hp["cnn_channels"], hp["kernel_size"], hp["lstm_hidden_size"]
    if hp.get("conv_front_end", "plain") == "inception":
        conv = (inception_parameters(hp["input_channels"], c, 1, False)
                + inception_parameters(c, 2 * c, INCEPTION_DEPTH, True))
    else:
        conv = hp["input_channels"] * c * k + c + 2 * c + 2 * c * c * k + 2 * c + 4 * c
    lstm = sum(2 * 4 * h * ((2 * c if layer == 0 else 2 * h) + h + 2) for layer in range(hp["lstm_layers"]))
    attention = 4 * (2 * h) ** 2 + 4 * 2 * h
    facts = (2 * hp["input_channels"] * bool(hp.get("amplitude_features") and hp.get("normalization") == "per_series")
             + bool(hp.get("length_feature")))
    return hp.get("ensemble_size", 1) * (conv + lstm + attention + (2 * c + 2 * h + facts + 1) * hp["num_classes"])


def hyperparameter_problem(hp: dict):
    """(field, why) of the first model hyperparameter that is out of SETTING_RANGES or does not fit another, or
    None. The one rule for a model: train_explain applies it before training, check_checkpoint to a file."""
    for name in MODEL_ARGS + ["ensemble_size"]:
        # ensemble_size is absent in a checkpoint written before ensembles: one network
        why = SETTING_RANGES[name].problem(hp.get(name, 1) if name == "ensemble_size" else hp.get(name))
        if why:
            return name, why
    front_end = hp.get("conv_front_end", "plain")  # absent in a checkpoint written before there was a choice
    if front_end not in FRONT_ENDS:
        return "conv_front_end", f"is {front_end!r}, expected one of {FRONT_ENDS}"
    problem = model_problem(hp)  # the rules that tie two model settings together, as the settings are checked
    if problem:
        return problem
    normalization = hp.get("normalization", "per_channel")  # absent before there was a choice: per channel
    if normalization not in NORMALIZATIONS:
        return "normalization", f"is {normalization!r}, expected one of {NORMALIZATIONS}"
    for flag in ("amplitude_features", "length_feature"):  # absent before they existed: off
        if type(hp.get(flag, False)) is not bool:
            return flag, f"is {hp.get(flag)!r}, expected true or false"
    if hp["input_channels"] * hp["sequence_length"] > MAX_COLUMNS:
        return "sequence_length", f"times input_channels is more than {MAX_COLUMNS:,} columns"
    if parameter_count(hp) > MAX_PARAMETERS:
        return None, f"describe a model of {parameter_count(hp):,} parameters, more than {MAX_PARAMETERS:,}"
    return None


def is_number_list(values, size: int) -> bool:
    return isinstance(values, list) and len(values) == size and all(
        type(v) in (int, float) and math.isfinite(v) for v in values)


def is_float_rows(tensor, hp: dict) -> bool:
    """A finite float32 (rows, input_channels, sequence_length) tensor, as the model reads rows."""
    return (torch.is_tensor(tensor) and tensor.dtype == torch.float32 and tensor.dim() == 3
            and tuple(tensor.shape[1:]) == (hp["input_channels"], hp["sequence_length"])
            and bool(torch.isfinite(tensor).all()))


def trust_problem(trust, hp: dict):
    """Why a checkpoint's trust field (hybrid_explain/trust/state.py) does not fit the model, or None."""
    if not isinstance(trust, dict):
        return "is not a dict"
    temperature = trust.get("temperature")
    if type(temperature) is not float or not 0 < temperature < math.inf:
        return f"temperature is {temperature!r}, expected a positive number"
    k = hp["num_classes"]
    logits, labels = trust.get("held_out_logits"), trust.get("held_out_labels")
    if not (torch.is_tensor(logits) and logits.dim() == 2 and logits.shape[1] == k and torch.isfinite(logits).all()
            and torch.is_tensor(labels) and labels.shape == (len(logits),) and not labels.is_floating_point()
            and (not len(labels) or 0 <= int(labels.min()) <= int(labels.max()) < k)):
        return f"held_out_logits/labels are not finite (n, {k}) logits with one class index each"
    mean, scale, means, precision = (trust.get(name) for name in ("feature_mean", "feature_scale", "class_means",
                                                                 "precision"))
    if not all(torch.is_tensor(t) for t in (mean, scale, means, precision)) or mean.dim() != 1:
        return "lacks the representation's statistics"
    d = len(mean)
    if scale.shape != (d,) or means.shape != (k, d) or precision.shape != (d, d) or not bool((scale > 0).all()):
        return f"has representation statistics of other sizes than ({k} classes, {d} dimensions)"
    cases, case_labels = trust.get("case_series"), trust.get("case_labels")
    if not is_float_rows(cases, hp) or not torch.is_tensor(case_labels) or case_labels.shape != (len(cases),) \
            or trust.get("case_features") is None or trust["case_features"].shape != (len(cases), d):
        return "has stored training cases that do not fit the model"
    if not isinstance(trust.get("reference_scores"), dict):
        return "lacks the training rows' out-of-distribution scores"
    return None


def check_checkpoint(checkpoint, path):
    """Every field load_model reads, with its type and a sane range; CheckpointError names the first bad one."""
    def bad(field, why):
        return CheckpointError(f"{path}: field {field} {why}; the file is damaged or not from this program, "
                               "train again")

    missing = [k for k in ("model_state_dict", "hyperparameters", "class_names", "channel_names", "normalization")
               if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: not a checkpoint of this program (lacks {', '.join(missing)}); train again")
    version = checkpoint.get("format_version", 1)  # absent: written before the field, format 1
    if type(version) is not int or version < 1:
        raise bad("format_version", f"is {version!r}, expected a format number from 1")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written in checkpoint format {version} by a newer train_explain (this one "
                              f"reads formats 1 to {FORMAT_VERSION}); upgrade train_explain, or train again")
    hp = checkpoint["hyperparameters"]
    if not isinstance(hp, dict):
        raise bad("hyperparameters", "is not a dict")
    problem = hyperparameter_problem(hp)
    if problem:
        field, why = problem
        raise bad("hyperparameters" + (f".{field}" if field else ""), why)
    for field, size in (("class_names", hp["num_classes"]), ("channel_names", hp["input_channels"])):
        names = checkpoint[field]
        if not isinstance(names, list) or len(names) != size or not all(isinstance(n, str) for n in names):
            raise bad(field, f"is not a list of {size} names")
    normalization = checkpoint["normalization"]
    if not isinstance(normalization, dict) or not all(is_number_list(normalization.get(key), hp["input_channels"])
                                                      for key in ("mean", "std")) \
            or not all(s > 0 for s in normalization["std"]):
        raise bad("normalization", f"is not a mean and a positive std (finite numbers) of {hp['input_channels']} "
                                   "channels")
    state = checkpoint["model_state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise bad("model_state_dict", "is not a dict of tensors")
    digest = checkpoint.get("weights_sha256")  # absent in a checkpoint written before it was stored
    if digest is not None and digest != weights_digest(state):
        raise bad("model_state_dict", "does not match the checksum stored with it (weights_sha256)")
    if type(checkpoint.get("epoch")) is not int or checkpoint["epoch"] < 1:
        raise bad("epoch", f"is {checkpoint.get('epoch')!r}, expected the kept epoch, an integer from 1")
    accuracy = checkpoint.get("val_accuracy", math.nan)  # None without a validation split
    if accuracy is not None and (type(accuracy) not in (int, float) or not 0 <= accuracy <= 1):
        raise bad("val_accuracy", "is not None or a number in [0, 1]")
    columns = checkpoint.get("feature_columns")
    if not isinstance(columns, list) or len(columns) != hp["input_channels"] * hp["sequence_length"] \
            or not all(isinstance(c, str) for c in columns):
        raise bad("feature_columns", f"is not a list of {hp['input_channels']} x {hp['sequence_length']} column names")
    counts = checkpoint.get("train_class_counts")  # optional: absent in a checkpoint of an earlier version
    if counts is not None and (not isinstance(counts, list) or len(counts) != hp["num_classes"]
                               or not all(type(n) is int and n >= 0 for n in counts)):
        raise bad("train_class_counts", f"is not a count of training rows for each of {hp['num_classes']} classes")
    background = checkpoint.get("background")
    if background is not None and not is_float_rows(background, hp):
        raise bad("background", "is not a finite float32 (B, channels, length) tensor")
    guides, labels = checkpoint.get("guides"), checkpoint.get("guide_labels")
    if guides is not None and not is_float_rows(guides, hp):
        raise bad("guides", "is not a finite float32 (G, channels, length) tensor")
    if guides is not None and (not torch.is_tensor(labels) or labels.shape != (len(guides),) or labels.is_floating_point()
                               or (len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < hp["num_classes"])):
        raise bad("guide_labels", f"is not one class index below {hp['num_classes']} per guide")
    guide_lengths = checkpoint.get("guide_lengths")  # optional: absent, every guide is full length
    if guide_lengths is not None and (guides is None or not torch.is_tensor(guide_lengths)
                                      or guide_lengths.shape != (len(guides),) or guide_lengths.dtype != torch.long
                                      or not bool(((guide_lengths >= 1) & (guide_lengths <= hp["sequence_length"])).all())):
        raise bad("guide_lengths", f"is not one length in [1, {hp['sequence_length']}] per guide")
    # Both fields are optional: a checkpoint written before rows could differ in length has every row full length.
    lengths = checkpoint.get("background_lengths")
    if lengths is not None and (background is None or not torch.is_tensor(lengths) or lengths.shape != (len(background),)
                                or lengths.dtype != torch.long or not bool(((lengths >= 1) &
                                                                             (lengths <= hp["sequence_length"])).all())):
        raise bad("background_lengths", f"is not one length in [1, {hp['sequence_length']}] per background row")
    length_range = checkpoint.get("length_range")
    if length_range is not None and (not isinstance(length_range, list) or len(length_range) != 2
                                     or not all(type(n) is int for n in length_range)
                                     or not 1 <= length_range[0] <= length_range[1] <= hp["sequence_length"]):
        raise bad("length_range", f"is not [shortest, longest] training length within [1, {hp['sequence_length']}]")
    training = checkpoint.get("training")  # optional: absent before format 2
    if training is not None and not (isinstance(training, dict) and all(
            isinstance(k, str) and type(v) in (int, float, bool, str) for k, v in training.items())):
        raise bad("training", "is not a dict of the training settings")
    # optional: absent before calibration, sets, flags and similar cases were stored (read as temperature 1, none)
    trust = checkpoint.get("trust")
    why = None if trust is None else trust_problem(trust, hp)
    if why:
        raise bad("trust", why)


def load_model(path, device="cpu"):
    """Rebuild the model from the checkpoint alone. Returns (model in eval mode, checkpoint dict)."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no checkpoint there; train first (TRAIN=True) or point OUTPUT_DIR at a run") from None
    except Exception as exc:  # torch raises many types for a damaged file; each means the same here
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}); "
                              "it is damaged or truncated, train again") from None
    check_checkpoint(checkpoint, path)
    model = build_model(checkpoint["hyperparameters"])
    try:
        model.load_state_dict(checkpoint["model_state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model its hyperparameters describe "
                              f"({str(exc).splitlines()[0]}); train again") from None
    return model.to(device).eval(), checkpoint
