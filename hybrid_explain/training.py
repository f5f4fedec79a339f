"""The training engine the script and the estimator share: the checkpoint's hyperparameters, the epoch loop
(AdamW, warm-up + cosine schedule, label smoothing, mixup, ensembles, torchrun), early stopping and the resume state.
A library module, so that the estimator trains without importing the script (nothing imports the script);
train_explain re-exports these names.
"""
import dataclasses
import functools
import hashlib
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

from data_loader import CustomDataset
from hybrid_explain.checkpoint import CheckpointError, atomic_save, save_torch  # noqa: F401  (re-exported)
from hybrid_explain.config import ModelConfig, TrainingConfig
from hybrid_explain.model import ensemble_size, predict_logits

RESUME_SAVE_SECONDS = 5.0


def model_hyperparameters(config: ModelConfig, train) -> dict:
    """The checkpoint's hyperparameters: the model's own arguments (its settings, and what the training file gives:
    its channels, length and classes), all that build_model reads; run settings stay out of it."""
    # The length input only where the training rows differ in length: a constant would only move the bias.
    varying = bool((np.asarray(train.lengths) < train.X.shape[2]).any())
    # A table's columns are features in their own units, not steps of one series: a row's z-score across them would
    # mix height with age, so a table keeps the per-channel statistics.
    table = getattr(train, "feature_names", None) is not None
    return {**dataclasses.asdict(config), "input_channels": train.X.shape[1],
            "sequence_length": train.X.shape[2], "num_classes": len(train.class_names),
            "length_feature": config.length_feature and varying,
            "normalization": "per_channel" if table else config.normalization}


def batch_indices(n: int, batch_size: int, generator=None, rank: int = 0, world_size: int = 1) -> list[torch.Tensor]:
    """Index batches of this process's shard: the epoch's seeded permutation (every process draws the
    same one) dealt out round-robin, padded by wrapping so every process runs the same number of
    steps (DistributedSampler's rule). A lone last sample joins the batch before it, since BatchNorm
    cannot train on a batch of one."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    if world_size > 1:
        order = order.repeat(math.ceil(world_size / n) + 1)[:math.ceil(n / world_size) * world_size][rank::world_size]
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def warmup_cosine(warmup_steps: int, total_steps: int):
    """Learning-rate factor per optimisation step: linear warm-up, then cosine decay to zero."""
    def factor(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return factor


@functools.lru_cache(maxsize=4)
def beta(alpha: float) -> torch.distributions.Beta:
    """Beta(alpha, alpha), made once: building the distribution (its argument checks) cost more than drawing from it."""
    return torch.distributions.Beta(alpha, alpha)


def mixup(y, alpha: float) -> tuple[torch.Tensor, float]:
    """(partner indices, weight w) of a mixup batch (Zhang et al., 2018): each sample blended with a partner drawn
    from its batch, w * x + (1 - w) * x_partner, one w ~ Beta(alpha, alpha) per batch. The model blends (its `mix`
    argument), as it reads the rows; the loss weighs the two labels w and 1 - w."""
    weight = float(beta(alpha).sample())
    return torch.randperm(len(y)).to(y.device), weight


def mixed_batch(data: CustomDataset, idx, minimum: int, mixup_alpha: float):
    """(x, y, partner labels, weight w, lengths, mix) of the rows idx, mix = the model's mixup argument (None, w = 1
    and the partners the rows' own labels when mixup_alpha is 0)."""
    x, y, lengths = data.batch(idx.to(data.X.device), minimum)
    if not mixup_alpha:
        return x, y, y, 1.0, lengths, None
    partner, weight = mixup(y, mixup_alpha)
    return x, y, y[partner], weight, lengths, (partner, weight)


def stacked(batches):
    """The members' batches as (members, B, C, W) inputs and (members, B) lengths (None when every row fills the
    common width W): each member's rows padded with zeros to the widest member's batch, their lengths kept."""
    width = max(x.shape[2] for x, *_ in batches)
    x = torch.stack([nn.functional.pad(x, (0, width - x.shape[2])) for x, *_ in batches])
    lengths = torch.stack([torch.full((len(x),), x.shape[2], device=x.device) if lengths is None else lengths
                           for x, *_, lengths, _ in batches])
    return x, None if bool((lengths >= width).all()) else lengths


def train_epoch(model, data: CustomDataset, optimizer, scheduler, criterion, batch_size, generator, progress,
                distributed=None, mixup_alpha=0.0, teacher=None):
    """One pass over this process's shard; returns the mean training loss over all processes' samples
    (with mixup, each blended sample's loss weighted w and 1 - w between its two labels). It only
    watches for divergence: the curves score the model afterwards, unblended and in eval mode.
    An Ensemble's members each draw their own batch order and mixup, as networks trained apart would (sharing
    them made the members' errors alike: docs/measurements/accuracy.md), and the loss is the sum of their own losses, so that each
    member's gradient is that of its loss alone.
    teacher: a distillation.Teacher of the data's rows, whose term each network's loss also carries, or None."""
    model.train()
    rank, world_size = (distributed.get_rank(), distributed.get_world_size()) if distributed else (0, 1)
    # Accumulated on the device: no host sync per batch.
    totals = torch.zeros(2, device=data.X.device)  # loss sum, samples
    network = getattr(model, "module", model)  # DistributedDataParallel keeps the model in .module
    minimum, members = math.prod(network.pool_factors), ensemble_size(network)
    orders = [batch_indices(len(data), batch_size, generator, rank, world_size) for _ in range(members)]
    for step in zip(*orders):
        batches = [mixed_batch(data, idx, minimum, mixup_alpha) for idx in step]
        if members == 1:
            x, *_, lengths, mix = batches[0]
            logits = [model(x, lengths, mix=mix)]
        else:
            logits = model(*stacked(batches), members=True, mixes=[mix for *_, mix in batches])  # (members, B, K)
        losses = [weight * criterion(own, y) + (1 - weight) * criterion(own, partner_y)
                  for own, (_, y, partner_y, weight, *_) in zip(logits, batches)]
        if teacher is not None:  # each network's own rows and mixup: batch[-1] is its mix
            losses = [teacher.loss(hard, own, idx, batch[-1])
                      for hard, own, idx, batch in zip(losses, logits, step, batches)]
        loss = sum(losses)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        rows = len(batches[0][1])
        totals += torch.stack([loss.detach() * rows, torch.tensor(rows, device=totals.device)])
        progress.update(rows)
    if distributed:
        distributed.all_reduce(totals)
    loss_sum, count = totals.tolist()
    return loss_sum / count


def evaluate(model, data: CustomDataset) -> tuple[float, float]:
    """(mean cross-entropy without smoothing, accuracy) on the data."""
    logits = predict_logits(model, data.X, lengths=data.lengths)
    loss = nn.functional.cross_entropy(logits, data.y).item()
    return loss, (logits.argmax(1) == data.y).float().mean().item()


def score_from_rank0(model, data, distributed=None) -> tuple[float, float]:
    """evaluate()'s (loss, accuracy), computed by rank 0 and shared with every process; NaN without data."""
    if not len(data):
        return float("nan"), float("nan")
    score = torch.tensor(evaluate(model, data) if not distributed or distributed.get_rank() == 0 else [0.0, 0.0],
                         device=data.X.device)
    if distributed:
        distributed.broadcast(score, src=0)
    return tuple(score.tolist())


def train_model(model, train_data, val_data, config: TrainingConfig, resume_path, distributed=None, log=print,
                resume: bool = False, teacher=None):
    """Train with AdamW, a warm-up + cosine schedule, label smoothing and mixup; return (history rows, kept
    state dict, its epoch, validation accuracy and loss). With no validation split (the default) the last
    epoch is kept; with one, the epoch with the lowest validation loss, and early stopping ends training.
    The whole training state goes to resume_path after the first epoch and then every few seconds, so
    --resume=True continues an interrupted run and ends with the same weights as an uninterrupted one.
    resume_path None: no resume state is written (HybridClassifier.fit); resume: continue from the state there.
    Under torchrun (`distributed` = torch.distributed) the model trains data-parallel on this
    process's shard; rank 0 alone validates, saves and logs, and shares its validation score so
    every process stops at the same epoch. teacher: a distillation.Teacher of train_data's rows (DISTILL), or None."""
    from tqdm import tqdm

    rank = distributed.get_rank() if distributed else 0
    world_size = distributed.get_world_size() if distributed else 1
    network = nn.parallel.DistributedDataParallel(model) if distributed else model
    if rank:
        log = lambda message: None  # noqa: E731  (one voice: rank 0's)

    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = len(batch_indices(len(train_data), config.batch_size, None, rank, world_size))
    # fused: one kernel for all parameters, a third of the per-parameter loop's time per step (measured in docs/measurements/speed.md)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                                  fused=True)
    total_steps = config.epochs * steps_per_epoch
    # A short run still reaches the peak rate: warm-up takes at most a fifth of it.
    warmup_steps = min(config.warmup_epochs * steps_per_epoch, total_steps // 5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup_steps, total_steps))
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    progress_state = {"epoch": 0, "history": [], "best": None, "best_key": None, "since_best": 0}
    trained_on = training_inputs(config, model, train_data, teacher)
    if resume:
        progress_state = restore_training_state(resume_path, trained_on, model, optimizer, scheduler, generator)
        log(f"resumed after epoch {progress_state['epoch']} from {resume_path}")
    history = progress_state["history"]
    epoch = progress_state["epoch"]
    last_save = time.perf_counter()
    while epoch < config.epochs and progress_state["since_best"] < config.early_stopping_patience:
        epoch += 1
        start = time.perf_counter()
        learning_rate = optimizer.param_groups[0]["lr"]
        with tqdm(total=math.ceil(len(train_data) / world_size), desc=f"epoch {epoch}/{config.epochs}",
                  unit="sample", leave=False, disable=True if rank else None, file=sys.stderr) as progress:
            batch_loss = train_epoch(network, train_data, optimizer, scheduler, criterion, config.batch_size,
                                     generator, progress, distributed, config.mixup_alpha, teacher)
            if not math.isfinite(batch_loss):
                raise TrainingError(f"the training loss became {batch_loss} in epoch {epoch}; the learning rate "
                                    f"{config.learning_rate} is likely too high (try --learning_rate="
                                    f"{config.learning_rate / 10:g}) or the data hold extreme values")
            # The curves measure the model as it stands after the epoch, in eval mode and without smoothing,
            # the same way on both parts: the batches' own loss is blended by mixup and shifted by dropout.
            train_loss, train_acc = score_from_rank0(model, train_data, distributed)
            val_loss, val_acc = score_from_rank0(model, val_data, distributed)
            progress.set_postfix(loss=f"{train_loss:.3f}", acc=f"{train_acc:.3f}", val_acc=f"{val_acc:.3f}")
        history.append({"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss,
                        "val_accuracy": val_acc, "learning_rate": learning_rate,
                        "seconds": time.perf_counter() - start})
        # The epoch with the lowest validation loss: on a small validation split accuracy moves in steps
        # of one sample and ties early, while the loss still tells the epochs apart
        # (measured in docs/measurements/accuracy.md).
        key = -val_loss if len(val_data) else epoch
        if progress_state["best_key"] is None or key > progress_state["best_key"]:
            progress_state.update(best_key=key, since_best=0, best={
                "epoch": epoch, "val_accuracy": val_acc, "val_loss": val_loss,
                "model_state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}})
        else:
            progress_state["since_best"] += 1
        progress_state["epoch"] = epoch
        # Saved after the first epoch, then at most every RESUME_SAVE_SECONDS: a save costs about as
        # much as a small data set's epoch, and a resumed run repeats at most those seconds of work.
        if rank == 0 and resume_path and (epoch == 1 or time.perf_counter() - last_save >= RESUME_SAVE_SECONDS):
            save_training_state(resume_path, progress_state, trained_on, model, optimizer, scheduler, generator)
            last_save = time.perf_counter()
        if epoch == 1 or epoch % 10 == 0 or epoch == config.epochs:
            validation = f"val loss {val_loss:.4f} acc {val_acc:.3f}  " if len(val_data) else ""
            log(f"epoch {epoch:3d}  train loss {train_loss:.4f} acc {train_acc:.3f}  {validation}lr {learning_rate:.2e}  "
                f"{history[-1]['seconds']:.2f} s, {time_left(history, config.epochs)}")
    if progress_state["since_best"] >= config.early_stopping_patience:
        log(f"early stop after epoch {epoch}: no better validation score for {progress_state['since_best']} epochs")
    best = progress_state["best"]
    log(f"best epoch {best['epoch']}: val acc {best['val_accuracy']:.3f} loss {best['val_loss']:.4f}" if len(val_data)
        else f"kept the last epoch, {best['epoch']} (no validation split)")
    return history, best["model_state_dict"], best["epoch"], best["val_accuracy"], best["val_loss"]


def time_left(history, epochs: int) -> str:
    """The time the remaining epochs will take at the mean pace of those run so far, in words ("about 1 min 20 s
    left"); early stopping may end sooner."""
    seconds = (epochs - history[-1]["epoch"]) * sum(row["seconds"] for row in history) / len(history)
    if seconds < 60:
        return f"about {seconds:.0f} s left"
    return f"about {seconds // 60:.0f} min {seconds % 60:.0f} s left"


RESUME_FIELDS = ("trained_on", "model_state_dict", "optimizer", "scheduler", "generator", "torch_rng", "cuda_rng",
                 "epoch", "history", "best", "best_key", "since_best")


def training_inputs(config: TrainingConfig, model, train_data, teacher=None) -> dict:
    """What decides the trained weights, as the resume state records it: the training settings, the model's own
    arguments, a digest of the rows it trains on and, when it distils, of its teacher's probabilities. A resumed run
    must match all of them; any other setting (an explanation's, the output folder's) may change."""
    rows = hashlib.sha256()
    teacher_rows = None if teacher is None else teacher.probabilities
    for tensor in (train_data.X, train_data.y, train_data.lengths, teacher_rows):  # None: full length, no teacher
        if tensor is not None:
            rows.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return {"training": dataclasses.asdict(config), "model": dict(getattr(model, "arguments", {})),
            "rows_sha256": rows.hexdigest()}


def save_training_state(path, progress_state, trained_on, model, optimizer, scheduler, generator):
    state = {**progress_state, "trained_on": trained_on, "model_state_dict": model.state_dict(),
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    atomic_save(state, path)


def restore_training_state(path, trained_on, model, optimizer, scheduler, generator) -> dict:
    """Load the resume state into the training objects; every field is checked, and a bad one is named."""
    try:
        state = torch.load(path, map_location=next(model.parameters()).device, weights_only=True)
    except Exception as exc:  # a damaged file fails in torch's unpickler with many exception types
        raise CheckpointError(f"{path} is damaged ({type(exc).__name__}); train without --resume") from None
    missing = [k for k in RESUME_FIELDS if not isinstance(state, dict) or k not in state]
    if missing or not isinstance(state["trained_on"], dict):
        raise CheckpointError(f"{path} is not a resume state of this program (lacks "
                              f"{', '.join(missing) or 'trained_on'}); train without --resume")
    changed = changed_inputs(state["trained_on"], trained_on)
    if changed:
        raise CheckpointError(f"{path} was saved with other settings ({', '.join(changed)} differ); "
                              "resume with the same constants, or train without --resume")
    restores = [("model_state_dict", model.load_state_dict), ("optimizer", optimizer.load_state_dict),
                ("scheduler", scheduler.load_state_dict), ("generator", generator.set_state),
                ("torch_rng", torch.set_rng_state)]
    if state["cuda_rng"]:
        restores.append(("cuda_rng", torch.cuda.set_rng_state_all))
    for field, restore in restores:
        try:
            restore(state[field])
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise CheckpointError(f"{path}: field {field} does not fit this model and optimizer "
                                  f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
                                  "train without --resume") from None
    if type(state["epoch"]) is not int or not isinstance(state["history"], list) or state["best"] is None:
        raise CheckpointError(f"{path}: fields epoch, history or best are damaged; train without --resume")
    return {k: state[k] for k in ("epoch", "history", "best", "best_key", "since_best")}


def changed_inputs(saved: dict, now: dict) -> list[str]:
    """The settings (UPPER_CASE, as the flags name them) and parts that differ between two training_inputs()."""
    changed = [name.upper() for group in ("training", "model") for name in sorted(set(saved.get(group, {}))
                                                                                  | set(now[group]))
               if saved.get(group, {}).get(name) != now[group].get(name)]
    return changed + (["the training rows"] if saved.get("rows_sha256") != now["rows_sha256"] else [])


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss is no longer finite); the message is one line."""


def train_background(train_x: np.ndarray, lengths: np.ndarray, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, their lengths) of the training set that form the SHAP reference distribution: a seeded sample of
    `rows` of them (NUM_SHAP_BACKGROUND_SAMPLES), in file order."""
    chosen = np.sort(np.random.default_rng(seed).choice(len(train_x), min(rows, len(train_x)), replace=False))
    return train_x[chosen], lengths[chosen]
