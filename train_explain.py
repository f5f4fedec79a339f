"""Train a hybrid CNN -> BiLSTM -> multi-head-attention classifier on two CSV files, then explain it.

    python train_explain.py                      # ./train_set.csv + ./test_set.csv -> ./outputs/
    python train_explain.py --epochs=5 --output_dir=runs/a
    python train_explain.py --help               # every constant, its default and its meaning

The file reads in the order the pipeline runs: constants -> overrides (checked once into a
hybrid_explain.config.Config) -> device and torchrun -> data -> output files -> run(): data -> the locked,
versioned output folder (pipeline/run_folder.py) -> training (or the checkpoint reused) -> scoring -> the stages
(pipeline/stages.py: predictions, evaluation, then unless NUM_SAMPLES_TO_EXPLAIN=0 SHAP, global importance, the
attribution suite, Grad-CAM, attention, counterfactuals) -> the accuracy check -> report -> publication -> main().
The library is the hybrid_explain package (nothing in it imports this script). `import train_explain` has no side
effects; `load_model()` and `predict()` (re-exported from hybrid_explain/checkpoint.py and api.py) reuse a
trained model.
"""
import ast
import difflib
import sys

from hybrid_explain.config import Config, ConfigError  # light: no torch, so --help stays fast

# -----------------------------------------------------------------------------
# Constants: edit here, or override any of them as --lower_case_name=VALUE
# data and outputs
TRAIN_CSV_PATH = "train_set.csv"  # training CSV: a label column and numeric feature columns
TEST_CSV_PATH = "test_set.csv"  # test CSV with the same columns
MISSING_VALUES = "interpolate"  # an empty/NaN cell inside a series: "interpolate" (linear in time, nearest value at the ends) or "error"; empty cells at a row's end only shorten it
LABEL_COLUMN = "label"  # name of the class column in both CSVs
OUTPUT_DIR = "outputs"  # each run in OUTPUT_DIR/runs/<id>/; the top-level names show the latest complete run
KEEP_RUNS = 5  # complete runs kept in OUTPUT_DIR/runs (older ones are removed), and as many interrupted ones
RUN = "latest"  # the run --train=False and --resume=True read: "latest" or a run id (a folder name in OUTPUT_DIR/runs)
DEVICE = "auto"  # "auto" (CUDA when present, else CPU), "cpu" or "cuda"
SEED = 0  # seeds the split, initialisation, batch order and explanations
TRAIN = True  # False: reuse OUTPUT_DIR's checkpoint, only evaluate and explain
RESUME = False  # True: continue the interrupted run RUN (with TRAIN=False the newest): its training and the parts of EXPLAIN_ROWS="all" it wrote (OUTPUT_DIR/runs/<id>.partial)
# model
CNN_CHANNELS = 32  # filters of the first Conv1d block; the second has twice as many
ENSEMBLE_SIZE = 1  # networks trained side by side from their own initial weights; the model's logits are their mean, and every explanation explains that mean
CONV_FRONT_END = "plain"  # the conv blocks before the LSTM: "plain" (Conv1d + BatchNorm + ReLU + pool, twice) or "inception" (InceptionTime's multi-scale modules, 1 then 3 with a residual; hybrid_explain/model.py)
NORMALIZATION = "per_series"  # "per_series": the network z-scores each row's channels over its own steps (recordings of any amplitude; a table of named features keeps per_channel); "per_channel": only the training file's per-channel statistics (docs/input.md#amplitude-and-normalization)
AMPLITUDE_FEATURES = True  # with per_series: each channel's mean and log std, which the z-score removes, go to the classifier as inputs
LENGTH_FEATURE = True  # rows of different lengths: log(row length) goes to the classifier as an input (a masked model cannot see it otherwise)
KERNEL_SIZE = 7  # Conv1d kernel width in time steps (odd)
LSTM_HIDDEN_SIZE = 64  # hidden units per direction of the bidirectional LSTM
LSTM_LAYERS = 1  # stacked LSTM layers
ATTENTION_HEADS = 4  # heads of the self-attention; must divide 2 * LSTM_HIDDEN_SIZE
DROPOUT = 0.1  # dropout before the classifier (and between LSTM layers)
MIN_POOLED_LENGTH = 16  # a conv block halves the sequence only while it stays at least this long
MAX_POOLED_LENGTH = 128  # longer series are pooled harder so the LSTM sees at most about this many steps
# training
EPOCHS = 200  # epochs of the warm-up + cosine schedule (early stopping can end it sooner when VAL_FRACTION > 0)
BATCH_SIZE = 8  # samples per optimisation step: small, so a 40-row set still takes 1,000 steps in 200 epochs
LEARNING_RATE = 3e-3  # peak learning rate of the warm-up + cosine schedule (AdamW)
WEIGHT_DECAY = 1e-2  # AdamW decoupled weight decay
WARMUP_EPOCHS = 5  # linear learning-rate warm-up before the cosine decay
LABEL_SMOOTHING = 0.1  # cross-entropy label smoothing
MIXUP_ALPHA = 0.4  # mixup: each batch is blended with a shuffled copy of itself, weight ~ Beta(alpha, alpha); 0 = off
VAL_FRACTION = 0.0  # 0: train on every training row and keep the last epoch; > 0: hold out this share (stratified) and keep the epoch with the lowest validation loss
EARLY_STOPPING_PATIENCE = 30  # with a validation split: stop after this many epochs without a lower validation loss
# explanations
NUM_SHAP_BACKGROUND_SAMPLES = 100  # training rows that form the SHAP reference distribution
NUM_SAMPLES_TO_EXPLAIN = 5  # test rows explained by SHAP, Grad-CAM, attention and the other methods; 0 = score only (predictions, evaluation, report; no explanation stage runs)
EXPLAIN_ROWS = ""  # which: "" round-robin over the true classes (the predicted ones without labels), "least_confident", row numbers "0,17,42", or every row "all" (or the first N, "first:N"), explained in parts and shared out over torchrun's processes, with figures for the first NUM_SAMPLES_TO_EXPLAIN (docs/scale.md)
SHAP_METHOD = "permutation"  # "permutation" (Shapley values that add up), "exact", "deep" (DeepExplainer) or "all"
SHAP_SEGMENTS_PER_CHANNEL = 10  # SHAP players: each channel cut into this many time windows
SHAP_PERMUTATIONS = 0  # permutations (each also walked in reverse) per explained sample; 0 = a budget that fits the data
SHAP_SUBWINDOWS = 5  # coarse to fine: the windows with the largest SHAP values split into up to this many parts (Owen values), as far as the permutation budget allows; 1 = flat windows
SHAP_MIN_PAIRS_PER_ROW = 4  # permutation SHAP with SHAP_SUBWINDOWS > 1 and SHAP_PERMUTATIONS = 0: the same walks spread over as few background rows as give each this many pairs (4 lets coarse to fine split); 1 = every background row
GLOBAL_EXPLAIN_ROWS = 24  # rows (seeded, stratified over the predicted classes) of the global channel and time-window importance; 0 = none
ATTRIBUTION_METHODS = "all"  # the attribution suite's methods: "all" (every method but the costly *_tsr ones), names "saliency,integrated_gradients,shap,saliency_tsr,...", or "" for no suite (a quick run)
ATTRIBUTION_WINDOWS = 10  # attribution region heatmaps: each channel cut into this many time windows
ATTRIBUTION_SEGMENTS = ""  # named regions "name:start-end,..." (end exclusive), e.g. "P:0-20,QRS:20-45,T:45-100"
IG_STEPS = 64  # integrated-gradients steps from the all-zeros baseline (completeness error < 1 % at 64)
OCCLUSION_WINDOW = 10  # occlusion: time steps of one channel set to 0 at once
CPD_FRACTION = 0.1  # cumulative prediction difference / preservation (Jang et al. 2025): share of each sample's features removed one at a time; 0 = not computed
MAX_MISCLASSIFIED = 8  # misclassified test rows drawn with their integrated gradients (most confident first)
COUNTERFACTUAL_TARGET = ""  # counterfactuals toward this class; "" = each explained sample's most likely other class
COUNTERFACTUAL_BUDGET = 2000  # model evaluations per sample the counterfactual search may spend before "not found"
# trust in each prediction (docs/trust.md)
CONFORMAL_LEVEL = 0.9  # prediction sets hold the true class with at least this probability (split conformal, from the validation rows: VAL_FRACTION > 0)
OOD_FALSE_ALARM = 0.01  # out-of-distribution flags: the share of training rows that would be flagged (sets the threshold)
SIMILAR_CASES = 5  # nearest training rows shown beside each explained row, in the model's representation; 0 = none
# baseline and distillation
BASELINE = "minirocket"  # a strong non-deep classifier fitted and scored on the same split, its scores beside the network's: "minirocket" (aeon's MiniRocketClassifier; docs/measurements/baseline.md) or "" for none
DISTILL = False  # True: the network also learns the baseline's out-of-fold class probabilities (knowledge distillation; needs BASELINE)
DISTILL_TEMPERATURE = 2.0  # distillation temperature T: the teacher's and the network's distributions both softened as softmax(log p / T)
DISTILL_WEIGHT = 0.5  # share of the distillation term in each network's loss; the rest is the cross-entropy on the labels
# resources
THREADS = 0  # torch threads: 0 = automatic (hybrid_explain/pipeline/threads.py: 1 for training, one per core for explanations), N = N threads
DRAWING_PROCESSES = 0  # processes drawing figures beside the computation: 0 = one per core (at most 4), 1 = none
PROGRESS_SECONDS = 3.0  # without a terminal: a progress line at least this often in a long phase (0: every step)

CONSTANT_NAMES = [name for name in list(globals()) if name.isupper() and name != "CONSTANT_NAMES"]


# -----------------------------------------------------------------------------
# Overrides from the command line (nanoGPT's configurator, checked against each default's type)
def constant_help() -> str:
    source = open(__file__, encoding="utf-8").read().splitlines()
    lines = ["usage: python train_explain.py [--name=VALUE ...]   (installed: train-explain [--name=VALUE ...])",
             "       python train_explain.py --version", "", "constants (default, meaning):"]
    for name in CONSTANT_NAMES:
        comment = next((line.split("#", 1)[1].strip() for line in source if line.startswith(f"{name} = ")), "")
        lines.append(f"  --{name.lower():<30} {globals()[name]!r:<16} {comment}")
    return "\n".join(lines)


def parse_value(name: str, text: str, default):
    if isinstance(default, str):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigError(f"--{name.lower()}={text} is not a {type(default).__name__}; "
                          f"give a value like --{name.lower()}={default!r}") from None
    if isinstance(default, float) and type(value) is int:
        value = float(value)
    if type(value) is not type(default):
        raise ConfigError(f"--{name.lower()}={text} is a {type(value).__name__}, "
                          f"expected a {type(default).__name__} like {default!r}")
    return value


def constants_from_args(argv: list[str]) -> dict:
    """The constants block with the command line's overrides applied; keys are the UPPER_CASE names."""
    constants = {name: globals()[name] for name in CONSTANT_NAMES}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; constants are set as --name=VALUE (see --help)")
        key, has_value, text = arg[2:].partition("=")
        if not has_value:
            if not args:
                raise ConfigError(f"--{key} needs a value, e.g. --{key}=VALUE")
            text = args.pop(0)
        name = key.upper().replace("-", "_")
        if name not in constants:
            nearest = difflib.get_close_matches(name, list(constants), n=1)
            hint = f"did you mean --{nearest[0].lower()}? " if nearest else ""
            raise ConfigError(f"unknown flag --{key}; {hint}run python train_explain.py --help for the constants")
        constants[name] = parse_value(name, text, constants[name])
    return constants


def config_from_args(argv: list[str]):
    """The run's settings (hybrid_explain.config.Config): the constants with the overrides, checked once."""
    return Config.from_constants(constants_from_args(argv))


if __name__ == "__main__" and {"-h", "--help"} & set(sys.argv[1:]):
    # Answered before torch is imported, which alone takes over a second.
    print(constant_help())
    sys.exit(0)
if __name__ == "__main__" and "--version" in sys.argv[1:]:
    from hybrid_explain.version import __version__

    print(f"train_explain {__version__}")
    sys.exit(0)
if __name__ == "__main__":
    # OpenMP reads its wait policy once, when torch loads it: waiting threads sleep instead of spinning, so a busy
    # core slows a run down instead of stalling it (threads.py; measured in bench/speed.py).
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import contextlib  # noqa: E402  (below the --help fast path on purpose)
import dataclasses  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from api import integer_labels, predict  # noqa: E402,F401  (predict: re-exported for users, beside load_model)
from data_loader import (CustomDataset, DataError, SeriesCounts, fit_normalization, normalize,  # noqa: E402
                         read_train, read_train_test, stratified_split)
from hybrid_explain.checkpoint import (CheckpointError, hyperparameter_problem, load_model,  # noqa: E402,F401
                                       save_checkpoint, training_checkpoint)  # (load_model: re-exported for users)
from hybrid_explain import baseline  # noqa: E402  (aeon is imported when the baseline is fitted)
from hybrid_explain import distillation  # noqa: E402
from hybrid_explain.explainers.counterfactuals import CounterfactualError, target_index  # noqa: E402
from hybrid_explain.explainers.regions import SegmentError, parse_segments  # noqa: E402
from hybrid_explain.explainers.shapley import ShapSettingError  # noqa: E402
from hybrid_explain.metrics import checks  # noqa: E402
from hybrid_explain.model import build_model, ensemble_size, input_description, predict_logits  # noqa: E402,F401
from hybrid_explain.pipeline.metrics import METRICS_SCHEMA_VERSION  # noqa: E402
from hybrid_explain.pipeline.run_folder import (LATEST, PARTIAL, PARTS_DIR, RESUME_NAME, RUNS, OutputError,  # noqa: E402
                                                OutputFolder, describe_error)
from hybrid_explain.version import __version__  # noqa: E402  (in metrics.json and every checkpoint; --version prints it)
# the training engine (hybrid_explain/training.py): its names are re-exported (tests and bench/ use them)
from hybrid_explain.training import (RESUME_FIELDS, RESUME_SAVE_SECONDS, TrainingError,  # noqa: E402,F401
                                     atomic_save, batch_indices, beta, evaluate, mixed_batch, mixup,
                                     model_hyperparameters, restore_training_state, save_torch, save_training_state,
                                     score_from_rank0, stacked, time_left, train_background, train_epoch, train_model,
                                     warmup_cosine)

CHECKPOINT_NAME = "saved_model_hybrid_explained.pth"
HISTORY_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"]


# -----------------------------------------------------------------------------
# Training
def resolve_device(name: str) -> torch.device:
    """The device for "auto", "cpu" or "cuda"; under torchrun each process takes the GPU of its LOCAL_RANK."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("DEVICE is 'cuda' but no CUDA device is visible; use --device=auto or --device=cpu")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    torch.cuda.set_device(device)
    return device


def start_distributed(device_name: str):
    """torch.distributed with its process group started when torchrun launched several processes, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    import torch.distributed as dist

    use_nccl = device_name != "cpu" and torch.cuda.is_available()
    dist.init_process_group("nccl" if use_nccl else "gloo")
    return dist


def check_model_fits(config: Config, train) -> None:
    """The checkpoint loader's rule (model.hyperparameter_problem) on the model these settings build for this
    data, before training: a checkpoint that training writes always loads."""
    problem = hyperparameter_problem(model_hyperparameters(config.model, train))
    if problem:
        field, why = problem
        raise ConfigError(f"the model these settings build for {config.data.train_csv_path} cannot be saved: "
                          f"{field or 'its hyperparameters'} {why}; choose a smaller model or fewer columns")


def read_training_data(config: Config, progress):
    """(training table, test table), both files read and checked, with every setting that depends on the data's
    shape, before any work: bad input fails now, not after training."""
    if config.explain.baseline and baseline.aeon_problem():
        raise baseline.BaselineError(baseline.aeon_problem())
    train, test = read_train_test(config.data.train_csv_path, config.data.test_csv_path, config.data.label_column,
                                  config.data.missing_values, progress)
    check_settings_fit_data(config, test, len(test.X))
    check_model_fits(config, train)
    return train, test


def data_line(inputs, device, world_size: int) -> str:
    train, test = inputs.train, inputs.test
    return (f"data: {f'{len(train.y)} training and ' if train else ''}{len(test.X) if train else 'new'} "
            f"{'test' if test.labelled else 'unlabelled'} samples, {test.X.shape[1]} channels x {test.X.shape[2]} "
            f"{'steps' if test.feature_names is None else 'features'}, {len(test.class_names)} classes, device "
            f"{device}, {world_size} process(es)")


# -----------------------------------------------------------------------------
# Output files (the versioned OUTPUT_DIR itself is run_folder.OutputFolder)
def save_json(data, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)


def needed_bytes(model) -> int:
    """A generous estimate of a run's files: checkpoint (weights), resume state (weights, the kept epoch's copy
    and AdamW's two moments), and 50 MB of figures, report and arrays."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return 5 * weights + 50_000_000


def link_or_copy(source, target):
    """A hard link where the filesystem has them (no second copy of the weights), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def write_history(history, path):
    import pandas as pd

    pd.DataFrame(history, columns=HISTORY_COLUMNS).to_csv(path, index=False)


def read_history(run_dir):
    import pandas as pd

    path = os.path.join(run_dir, "train_results_hybrid_explained.csv")
    return pd.read_csv(path).to_dict("records") if os.path.isfile(path) else None


def check_checkpoint_matches(checkpoint, train, path):
    if checkpoint["class_names"] != list(train.class_names) or checkpoint["channel_names"] != list(train.channel_names) \
            or checkpoint["hyperparameters"]["sequence_length"] != train.X.shape[2]:
        raise CheckpointError(f"{path} was trained on other data (classes {checkpoint['class_names']}, channels "
                              f"{checkpoint['channel_names']}); train again with --train=True or use that run's CSVs")


# -----------------------------------------------------------------------------
# The pipeline
# The SHAP values of the explained samples, one per sample, input cell and class (shap_values.npz): the one
# output that grows with the classes times the columns times a setting (1 GB as float32).
MAX_SHAP_VALUES = 250_000_000


def check_settings_fit_data(config, table, num_rows):
    """Settings that depend on the data's shape, checked before any work: a typo fails now, not after training.
    num_rows: the rows of the file explained (None: not known yet, EXPLAIN_ROWS is checked when it is)."""
    from hybrid_explain.pipeline import stages

    values = config.explain.num_samples_to_explain * len(table.class_names) * table.X.shape[1] * table.X.shape[2]
    if values > MAX_SHAP_VALUES:
        raise ConfigError(f"NUM_SAMPLES_TO_EXPLAIN={config.explain.num_samples_to_explain} samples x "
                          f"{len(table.class_names):,} classes x {table.X.shape[1] * table.X.shape[2]:,} cells is "
                          f"more than {MAX_SHAP_VALUES:,} SHAP values; explain fewer samples")

    parse_segments(config.explain.attribution_segments, table.X.shape[2])
    target_index(config.explain.counterfactual_target, table.class_names)
    chosen_methods(config)
    stages.check_exact_shap_is_feasible(config.explain, table.X.shape[1], table.X.shape[2], table.feature_names)
    if num_rows is not None:
        explain_rows(config, num_rows)


def chosen_methods(config) -> list[str]:
    """ATTRIBUTION_METHODS as a list of attributions.METHODS names, checked."""
    from hybrid_explain.explainers.attributions import METHODS

    text = config.explain.attribution_methods.strip()
    names = [name for name, m in METHODS.items() if m.in_all] if text == "all" else [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise ConfigError(f"ATTRIBUTION_METHODS names {', '.join(unknown)}, which are not methods; choose among "
                          f"{', '.join(METHODS)}, 'all' or ''")
    return names


def explain_rows(config, num_rows: int):
    """EXPLAIN_ROWS as stages.rows_to_explain takes it: "" or "least_confident", or a list of row indices (for
    "all" and "first:N", explained in parts, the first NUM_SAMPLES_TO_EXPLAIN rows, which the figures show)."""
    text = config.explain.explain_rows.strip()
    if text in ("", "least_confident"):
        return text
    if config.explain.in_parts:
        return list(range(min(config.explain.num_samples_to_explain, num_rows)))
    try:
        rows = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"EXPLAIN_ROWS={text!r} is not row numbers like 0,17,42, nor 'least_confident'") from None
    outside = [r for r in rows if not 0 <= r < num_rows]
    if outside or not rows or len(set(rows)) != len(rows):
        raise ConfigError(f"EXPLAIN_ROWS={text!r} names rows {outside or 'twice'}, but "
                          f"{config.data.test_csv_path} has rows 0..{num_rows - 1}; give each row once, counted from 0")
    return rows


def checkpoint_background(checkpoint, config, path, log) -> tuple[np.ndarray, np.ndarray]:
    """The SHAP background (rows, lengths) a checkpoint carries (the first NUM_SHAP_BACKGROUND_SAMPLES of them);
    a checkpoint of an earlier version carries none, and the training file gives it, as it did then (rows without
    recorded lengths are full length)."""
    if "background" in checkpoint:
        background = checkpoint["background"].numpy()[:config.explain.num_shap_background_samples]
        lengths = checkpoint.get("background_lengths")
        return background, (np.full(len(background), background.shape[2], dtype=np.int64) if lengths is None
                            else lengths.numpy()[:len(background)])
    log(f"{path} carries no SHAP background (an earlier version wrote it): reading {config.data.train_csv_path}")
    train = read_train(config.data.train_csv_path, config.data.label_column, config.data.missing_values)
    check_checkpoint_matches(checkpoint, train, path)
    return train_background(normalize(train.X, checkpoint["normalization"], train.lengths), train.lengths,
                            config.explain.num_shap_background_samples, config.explain.seed)


def counterfactual_guides(checkpoint, inputs) -> tuple:
    """(rows, labels, lengths) the counterfactuals take their guides from: the checkpoint's guide pool, or for a
    checkpoint of an earlier version its SHAP background with no labels (the model's classes stand in for them)."""
    if "guides" in checkpoint:
        lengths = checkpoint.get("guide_lengths")  # absent before rows could differ in length: all full length
        return (checkpoint["guides"], checkpoint["guide_labels"].cpu().numpy(),
                None if lengths is None else lengths.numpy())
    return torch.from_numpy(inputs.background), None, inputs.background_lengths


def kept_train_accuracy(history, epoch):
    """The training accuracy of the kept epoch; None without a training history (a reused checkpoint of a run
    that wrote none)."""
    return next((row["train_accuracy"] for row in history or [] if row["epoch"] == epoch), None)


def choose_resources(config: Config, log) -> tuple[int, int]:
    """Say what the run uses (threads.py); returns (torch threads for the explanations, drawing processes) and
    sets torch's threads for training."""
    from hybrid_explain.pipeline import threads

    training, explaining, source = threads.torch_threads(config.resources.threads, torch.get_num_threads())
    torch.set_num_threads(training)
    cores = threads.available_cores()
    processes = threads.drawing_processes(config.resources.drawing_processes, cores)
    log(f"resources: torch threads {training} for training, {explaining} for explanations ({source}; --threads=N "
        f"or OMP_NUM_THREADS=N to change), OpenMP wait policy {os.environ.get('OMP_WAIT_POLICY', 'default')}, "
        + (f"figures drawn in {processes} processes" if processes > 1 else "figures drawn in this process")
        + f", {cores} core{'s' * (cores != 1)} available")
    return explaining, processes


class Laps:
    """Seconds per phase of a run (metrics.json's timings_s): lap(phase) adds the time since the last lap."""

    def __init__(self):
        self.started = self.clock = time.perf_counter()
        self.seconds = {}

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = self.seconds.get(phase, 0.0) + now - self.clock
        self.clock = now

    def total(self) -> float:
        self.seconds["total"] = time.perf_counter() - self.started
        return self.seconds["total"]


@dataclasses.dataclass
class Inputs:
    """The data a run explains: the training table (None with --train=False), the test table (its first part when
    the file is read in parts), the test rows as the model is fed them (a tensor, or stages.FileRows), the
    normalization, the SHAP background, the files' series counts, and with --train=False the checkpoint reused and
    its run folder and its model."""
    train: object
    test: object
    test_x: object
    normalization: dict
    background: np.ndarray
    background_lengths: np.ndarray
    series: dict
    checkpoint: dict = None
    model: torch.nn.Module = None
    source: str = None


def read_inputs(config: Config, train, test, folder, device, log) -> Inputs:
    """The run's Inputs: from the files read for training, or from the checkpoint of RUN (--train=False), which
    alone gives the layout, the normalization and the SHAP background."""
    from hybrid_explain.pipeline import stages

    if train is not None:
        normalization = fit_normalization(train.X, train.filled)
        background = train_background(normalize(train.X, normalization, train.lengths), train.lengths,
                                      config.explain.num_shap_background_samples, config.explain.seed)
        series = {"train": SeriesCounts(train.channel_names).add(train), "test": SeriesCounts(test.channel_names).add(test)}
        log(series["train"].message(config.data.train_csv_path))
        log(series["test"].message(config.data.test_csv_path))
        test_x = torch.from_numpy(normalize(test.X, normalization, test.lengths)).to(device)
        return Inputs(train, test, test_x, normalization, *background, series)
    source = folder.run_dir(config.outputs.run)
    checkpoint_path = os.path.join(source, CHECKPOINT_NAME)
    model, checkpoint = load_model(checkpoint_path, device)
    log(f"explaining the checkpoint of {os.path.relpath(source, folder.root)}")
    log(input_description(model))
    # the new file is read in parts, so that its size is bounded by the disk, not the memory
    test_x = stages.FileRows(config.data.test_csv_path, checkpoint, config.data.label_column,
                             checkpoint["normalization"], device, reference=checkpoint_path,
                             missing_values=config.data.missing_values)
    test = next(iter(test_x.parts()))  # its first part: checked now, and shown in the report
    check_settings_fit_data(config, test, num_rows=None)
    background = checkpoint_background(checkpoint, config, checkpoint_path, log)
    series = {"test": SeriesCounts(checkpoint["channel_names"])}  # counted as stages.score reads the parts
    return Inputs(None, test, test_x, checkpoint["normalization"], *background, series, checkpoint, model, source)


def fitted_baseline(config: Config, inputs: Inputs, rank: int, log):
    """The baseline (BASELINE) fitted on the training rows, with its predictions of the test rows
    (baseline.fitted_and_scored), on rank 0 only (with DISTILL, it sends its teacher's probabilities to the other
    torchrun processes); None without BASELINE, or with --train=False, which reads no training file."""
    if inputs.train is None or not config.explain.baseline or rank:
        return None
    fitted = baseline.fitted_and_scored(inputs.train, inputs.test, config.training.seed)
    log(f"baseline: {config.explain.baseline} fitted on {len(inputs.train.y)} training rows in "
        f"{fitted['seconds']:.1f} s")
    return fitted


def trained_network(config: Config, inputs: Inputs, device, distributed, resume_path, folder, baseline_fit, log):
    """(model in eval mode, checkpoint, history): a network trained on the training table (every torchrun process
    trains its share; `folder`, rank 0's, checks first that its files fit on the disk; with DISTILL it also learns
    the fitted baseline's probabilities), or with --train=False the checkpoint reused, with its training's curves
    when it has them."""
    if inputs.train is None:
        return inputs.model, inputs.checkpoint, read_history(inputs.source)
    train = inputs.train
    train_x = torch.from_numpy(normalize(train.X, inputs.normalization, train.lengths)).to(device)
    fit_idx, val_idx = stratified_split(train.y, config.training.val_fraction, config.training.seed, train.class_names)
    fit_data = CustomDataset(train_x[fit_idx], train.y[fit_idx], train.lengths[fit_idx]).to(device)
    val_data = CustomDataset(train_x[val_idx], train.y[val_idx], train.lengths[val_idx]).to(device)
    teacher, taught = (distillation.baseline_teacher(baseline_fit["classifier"], train.X, train.y, train.lengths,
                                                     fit_idx, config.training, config.explain.baseline, device)
                       if config.training.distill and baseline_fit else (None, None))
    if config.training.distill and distributed:  # fitted once, on rank 0: every process learns the same targets
        teacher = distillation.broadcast_teacher(teacher, (len(fit_idx), len(train.class_names)),
                                                 config.training.distill_temperature,
                                                 config.training.distill_weight, distributed, device)
    hyperparameters = model_hyperparameters(config.model, train)
    model = build_model(hyperparameters).to(device)
    log(input_description(model))
    if folder is not None:
        folder.check_free_space(needed_bytes(model))
    if distributed:
        torch.manual_seed(config.training.seed + distributed.get_rank())  # same initial weights, other dropout masks
    history, state, epoch, val_acc, val_loss = train_model(model, fit_data, val_data, config.training, resume_path,
                                                           distributed, log, teacher=teacher,
                                                           resume=config.outputs.resume and os.path.isfile(resume_path))
    model.load_state_dict(state)
    checkpoint = training_checkpoint(model, hyperparameters, train, inputs.normalization, (epoch, val_acc, val_loss),
                                     train_x.cpu().numpy(), (inputs.background, inputs.background_lengths),
                                     "int" if integer_labels(train.class_names) else "str", config.training.seed,
                                     val_idx, dataclasses.asdict(config.training), taught)
    return model.eval(), checkpoint, history


def write_training_outputs(checkpoint, history, inputs: Inputs, path) -> None:
    """The checkpoint and the training curves in this run's folder; with --train=False the checkpoint explained
    (linked, not copied, where the filesystem allows) and that training's curves."""
    from hybrid_explain.figures import summary_figures

    if inputs.source is None:
        save_checkpoint(checkpoint, path(CHECKPOINT_NAME))
    else:
        link_or_copy(os.path.join(inputs.source, CHECKPOINT_NAME), path(CHECKPOINT_NAME))
    if history:
        write_history(history, path("train_results_hybrid_explained.csv"))
        summary_figures.training_curves(history, checkpoint["epoch"], path("train_plots_hybrid_explained"))


def scored_run_context(config: Config, model, checkpoint, inputs: Inputs, device, progress, log):
    """The stages' RunContext: every row of the test (or new) file scored, and the rows chosen to explain."""
    from hybrid_explain.pipeline import stages

    scored = stages.score(model, [inputs.test] if inputs.train else inputs.test_x.parts(), inputs.test_x,
                          inputs.normalization, None if inputs.train else inputs.series["test"], progress,
                          checkpoint.get("trust"), config.explain.conformal_level, config.explain.ood_false_alarm)
    if inputs.train is None:
        log(inputs.series["test"].message(config.data.test_csv_path))
    samples = scored.subset(stages.rows_to_explain(scored, explain_rows(config, len(scored)),
                                                   config.explain.num_samples_to_explain))
    background = torch.from_numpy(inputs.background).to(device)
    return stages.RunContext(model, config.explain, scored, samples, background, inputs.background_lengths,
                             counterfactual_guides(checkpoint, inputs), progress)


def left_process_group(distributed) -> bool:
    """Leave torchrun's process group once every process is here; True on the processes that stop here (all but
    rank 0, which goes on alone)."""
    rank = distributed.get_rank()
    distributed.barrier()
    distributed.destroy_process_group()
    return rank != 0


def explained_in_parts(config: Config, context, folder, distributed, log) -> dict:
    """Every row EXPLAIN_ROWS="all" (or "first:N") chooses, explained in parts by every torchrun process
    (pipeline/parts.py) and written into rank 0's run folder (`folder`; None on the other ranks, which hold no
    folder); rank 0's summaries of them, {} on the other ranks."""
    from hybrid_explain.pipeline import parts

    rows = parts.chosen_rows(config.explain.explain_rows.strip(), len(context.scored))
    methods = [name for name in chosen_methods(config) if name != "shap"]  # SHAP's values are in every part
    if folder is not None:
        folder.check_free_space(parts.estimated_bytes(len(rows), tuple(context.background.shape[1:]),
                                                      len(context.scored.class_names), len(methods)))
    return parts.explain_in_parts(context, rows, methods, folder.path(PARTS_DIR) if folder else None, distributed,
                                  log)


def run_metrics(config: Config, model, checkpoint, scored, samples, inputs: Inputs, sections: dict, accuracy: dict,
                device, world_size: int, run_id: str, timings: dict) -> dict:
    """metrics.json: the stages' sections with the run's facts (schema in hybrid_explain/pipeline/metrics.py)."""
    return {
        "schema_version": METRICS_SCHEMA_VERSION, "version": __version__, **sections, "accuracy_check": accuracy,
        "labelled": scored.labelled, "num_parameters": sum(p.numel() for p in model.parameters()),
        "networks": ensemble_size(model), "best_epoch": checkpoint["epoch"],
        "val_accuracy": checkpoint["val_accuracy"], "device": str(device), "world_size": world_size, "run": run_id,
        "timings_s": timings, "explained_rows": samples.rows.tolist(),
        "series": {"missing_values": config.data.missing_values,
                   **{part: counts.summary() for part, counts in inputs.series.items()},
                   **({"explained_lengths": samples.lengths.tolist()} if samples.lengths is not None else {})},
        "explained": [samples.describe(i) for i in range(len(samples))],
        **({} if len(samples) else {"explanations_skipped": "NUM_SAMPLES_TO_EXPLAIN=0: the file was only scored"}),
        **({"distillation": checkpoint["distillation"]} if checkpoint.get("distillation") else {}),
    }


def run(config: Config) -> int:
    from hybrid_explain.figures import drawing
    from hybrid_explain.pipeline import parts, report, stages
    from hybrid_explain.pipeline.progress import Progress

    lap = Laps()
    distributed = start_distributed(config.resources.device)
    rank, world_size = (distributed.get_rank(), distributed.get_world_size()) if distributed else (0, 1)
    log = print if rank == 0 else (lambda *args: None)
    overridden = {k: v for k, v in config.constants().items() if v != globals()[k]}
    log(f"overrides: {overridden}" if overridden else "no overrides: default constants")
    explaining_threads, drawing_processes = choose_resources(config, log)
    # a line at least every PROGRESS_SECONDS in each long phase when the output is not a terminal
    progress = functools.partial(Progress, log=log, every_seconds=config.resources.progress_seconds)
    device = resolve_device(config.resources.device)
    torch.manual_seed(config.training.seed)
    train, test = read_training_data(config, progress) if config.outputs.train else (None, None)

    # the output folder, locked for the whole run: rank 0 writes it, other torchrun processes only read; the
    # drawing processes start before the lock is taken, so that none of them holds it
    folder = OutputFolder(config.outputs.output_dir, config.outputs.keep_runs, log)
    with drawing.workers(drawing_processes if rank == 0 else 1), folder if rank == 0 else contextlib.nullcontext():
        # with TRAIN=False, RUN names the checkpoint explained, and the run resumed is the newest interrupted one
        resumed = folder.resumable(config.outputs.run if config.outputs.train else LATEST) \
            if config.outputs.resume else None
        inputs = read_inputs(config, train, test, folder, device, log)
        log(data_line(inputs, device, world_size))
        lap("load")
        with folder.staged_run(resumed) if rank == 0 else contextlib.nullcontext(), drawing.finished():
            path = folder.path if rank == 0 else None
            if rank == 0:
                log(f"this run writes {RUNS}/{folder.run_id}{PARTIAL}/ until it is complete")
            resume_path = path(RESUME_NAME) if path else folder.partial_path(resumed, RESUME_NAME) if resumed else None
            baseline_fit = fitted_baseline(config, inputs, rank, log)
            lap("baseline")
            model, checkpoint, history = trained_network(config, inputs, device, distributed, resume_path,
                                                         folder if rank == 0 else None, baseline_fit, log)
            if distributed and not config.explain.in_parts:  # everything after training runs on rank 0 alone
                if left_process_group(distributed):
                    return 0
            lap("train")
            if rank == 0:
                write_training_outputs(checkpoint, history, inputs, path)

            torch.set_num_threads(explaining_threads)  # batches of up to 1,024 rows from here on
            context = scored_run_context(config, model, checkpoint, inputs, device, progress, log)
            scored, samples = context.scored, context.samples
            written = explained_in_parts(config, context, folder if rank == 0 else None, distributed, log) \
                if config.explain.in_parts else None
            if written is not None and distributed and left_process_group(distributed):  # shared out until here
                return 0
            lap("explained_in_parts")
            report.data_summary((inputs.train, inputs.test), scored.y_pred, folder.staging)
            steps = [stages.PredictionsStage(), stages.EvaluationStage(), stages.TrustStage(checkpoint.get("trust")),
                     stages.BaselineStage(baseline_fit)]
            steps += stages.explanation_stages(chosen_methods(config)) if len(samples) else []
            steps += [parts.AllRowsStage(written)] if written else []
            if not len(samples):
                log("explanations skipped (NUM_SAMPLES_TO_EXPLAIN=0): predictions, evaluation and the report only")
            with torch.backends.cudnn.flags(enabled=False):  # cuDNN's LSTM has no backward pass in eval mode
                sections = stages.run_stages(steps, context, path, print, lap)
            accuracy = checks.accuracy_check(scored.class_names, checkpoint.get("train_class_counts"),
                                             kept_train_accuracy(history, checkpoint["epoch"]), scored.y_true,
                                             scored.y_pred)
            metrics = run_metrics(config, model, checkpoint, scored, samples, inputs, sections, accuracy, device,
                                  world_size, folder.run_id, lap.seconds)
            drawing.wait(progress)  # the report inlines every figure
            lap("figures")
            report.write_report(folder.staging, metrics, config.constants(), history, (inputs.train, inputs.test),
                                path("report.html"), checkpoint.get("train_class_counts"), scored.y_pred)
            lap("report")
            lap.total()
            save_json(metrics, path("metrics.json"))
            published, replaced = folder.publish()
    for line in closing_lines(config, folder, published, replaced, metrics, accuracy):
        log(line)
    return 0


def closing_lines(config, folder, published, replaced, metrics, accuracy) -> list[str]:
    """The console's last lines: where the outputs are, then, where a reader looks last, whether the model has
    learned its task, and beside it what a strong cheap classifier reaches on the same split."""
    where = (f"outputs in {config.outputs.output_dir}/ = {os.path.relpath(published, folder.root)}"
             + (f" (replaces {os.path.relpath(replaced, folder.root)} as the latest, which is kept)" if replaced else "")
             + f" ({metrics['timings_s']['total']:.1f} s)")
    return [where, *checks.accuracy_lines(accuracy),
            *([baseline.baseline_line(metrics["baseline"], metrics["test_accuracy"])] if metrics.get("baseline") else [])]


# -----------------------------------------------------------------------------
# main
USER_ERRORS = (ConfigError, DataError, CheckpointError, TrainingError, SegmentError, ShapSettingError, OutputError,
               CounterfactualError, baseline.BaselineError)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run stops, the earlier runs stay whole."""


def raise_terminated(signum, frame):
    raise Terminated()


def main(argv: list[str]) -> int:
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        config = config_from_args(argv)
        return run(config)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a write that fails mid-run (disk full, folder removed); the run left nothing partial
        print(f"error: could not write the run's outputs: {describe_error(exc)}; the latest complete run in "
              "OUTPUT_DIR is unchanged", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"\n{'terminated' if isinstance(exc, Terminated) else 'interrupted'}: OUTPUT_DIR's latest complete "
              "run is whole and unchanged; training interrupted after its first epoch continues with --resume=True",
              file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
