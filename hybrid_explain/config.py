"""The run's settings as typed, read-only records, grouped as the script's constants block groups them, and every
check on a setting in one place.

    config = Config.from_constants(constants)      # train_explain.main(): once, from the constants and the flags
    config.model.cnn_channels, config.training.epochs, config.explain.ig_steps

Each group's field is its constant in lower case. A record checks itself when it is made (`__post_init__`): each
number against SETTING_RANGES, each choice against CHOICES, then the rules that tie two fields together. The
script's flags, `HybridClassifier`'s parameters and the checkpoint loader all read these tables, so that training
never writes a checkpoint the loader refuses. A record is frozen: after `from_constants` nothing changes a setting.
"""
import dataclasses
import math
from dataclasses import dataclass

FRONT_ENDS = ("plain", "inception")
NORMALIZATIONS = ("per_channel", "per_series")


class ConfigError(ValueError):
    """A setting that makes no sense; the message is one line. With `setting` (its name, lower case), `why` is a
    phrase and the message names the setting as the constants block does (UPPER_CASE)."""

    def __init__(self, why: str, setting: str | None = None):
        super().__init__(f"{setting.upper()} {why}" if setting else why)
        self.setting, self.why = setting, why


@dataclass(frozen=True)
class Range:
    """The values a setting may take: [low, high], an end open where a setting may only approach it. Integer ends
    make an integer setting; float ends, a number."""
    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def __str__(self):
        return f"{'(' if self.low_open else '['}{self.low:,}, {self.high:,}{')' if self.high_open else ']'}"

    def problem(self, value):
        """Why value is not in the range (a phrase), or None."""
        integer = type(self.low) is int and type(self.high) is int
        if type(value) not in ((int,) if integer else (int, float)) or not (
                (self.low < value if self.low_open else self.low <= value)
                and (value < self.high if self.high_open else value <= self.high)):
            return f"is {value!r}, expected {'an integer' if integer else 'a number'} in {self}"
        return None


# One range for every numeric setting (a constant of train_explain.py, lower case as in a checkpoint's
# hyperparameters) and every dimension the data give the model. The ends of settings whose memory or time grows
# with them are far beyond any useful value, but below a run that would fill the memory or never end; a damaged or
# hostile checkpoint that unpickles (weights_only=True refuses code, not nonsense) is refused before any memory is
# asked for.
SETTING_RANGES = {
    # what the data give: channels, steps, classes (the columns, channels x steps, are MAX_COLUMNS at most)
    "input_channels": Range(1, 100_000), "sequence_length": Range(1, 1_000_000), "num_classes": Range(1, 1_000),
    # the model
    "cnn_channels": Range(1, 4096), "ensemble_size": Range(1, 64), "kernel_size": Range(1, 1001),
    "lstm_hidden_size": Range(1, 4096), "lstm_layers": Range(1, 16), "attention_heads": Range(1, 256),
    "dropout": Range(0.0, 1.0, high_open=True), "min_pooled_length": Range(1, 1_000_000),
    "max_pooled_length": Range(1, 1_000_000),
    # training (numpy, torch and scikit-learn all take a seed in [0, 2**32 - 1])
    "seed": Range(0, 2**32 - 1), "epochs": Range(1, 100_000), "batch_size": Range(1, 65_536),
    "learning_rate": Range(0.0, math.inf, low_open=True, high_open=True),
    "weight_decay": Range(0.0, math.inf, high_open=True), "warmup_epochs": Range(0, 100_000),
    "label_smoothing": Range(0.0, 1.0, high_open=True), "mixup_alpha": Range(0.0, math.inf, high_open=True),
    "val_fraction": Range(0.0, 1.0, high_open=True), "early_stopping_patience": Range(1, 100_000),
    # explanations
    "num_shap_background_samples": Range(1, 5_000), "num_samples_to_explain": Range(0, 500),
    "shap_segments_per_channel": Range(1, 1000), "shap_permutations": Range(0, 10_000),
    "shap_subwindows": Range(1, 1000), "shap_min_pairs_per_row": Range(1, 10_000),
    "global_explain_rows": Range(0, 10_000), "attribution_windows": Range(1, 1000),
    "ig_steps": Range(1, 2_000), "occlusion_window": Range(1, 100_000), "max_misclassified": Range(0, 100),
    "counterfactual_budget": Range(1, 1_000_000), "cpd_fraction": Range(0.0, 1.0),
    "distill_temperature": Range(0.0, 100.0, low_open=True), "distill_weight": Range(0.0, 1.0),
    "conformal_level": Range(0.0, 1.0, low_open=True, high_open=True),
    "ood_false_alarm": Range(0.0, 1.0, low_open=True, high_open=True), "similar_cases": Range(0, 100),
    # resources and the output folder
    "keep_runs": Range(1, 1000), "threads": Range(0, 1024), "drawing_processes": Range(0, 64),
    "progress_seconds": Range(0.0, math.inf, high_open=True),
}
MAX_COLUMNS = 1_000_000  # feature columns (channels x steps): the checkpoint stores each one's name

# Every text setting that is one of a few words.
CHOICES = {
    "conv_front_end": FRONT_ENDS, "normalization": NORMALIZATIONS, "device": ("auto", "cpu", "cuda"),
    "missing_values": ("interpolate", "error"), "shap_method": ("permutation", "exact", "deep", "all"),
    "baseline": ("minirocket", ""),  # hybrid_explain/baseline.py; "" = none
}


def setting_problem(name: str, value):
    """Why `value` cannot be the setting `name` (lower case) by its range or its choices (a phrase), or None."""
    if name in SETTING_RANGES:
        return SETTING_RANGES[name].problem(value)
    if name in CHOICES and value not in CHOICES[name]:
        return f"is {value!r}; use one of {', '.join(map(repr, CHOICES[name]))}"
    return None


def model_problem(model) -> tuple[str, str] | None:
    """(field, why) of the first rule two model settings break together, or None: the one copy of these rules,
    read by ModelConfig and by the checkpoint loader (model arguments in a dict or a record alike)."""
    get = model.get if isinstance(model, dict) else lambda name, default=None: getattr(model, name, default)
    if get("kernel_size", 1) % 2 == 0:
        return "kernel_size", f"is {get('kernel_size')}; use an odd width so the series keeps its length"
    if (2 * get("lstm_hidden_size")) % get("attention_heads"):
        return "attention_heads", (f"is {get('attention_heads')}, which does not divide the attention width "
                                   f"2 * lstm_hidden_size = {2 * get('lstm_hidden_size')}; pick a divisor")
    if get("conv_front_end", "plain") == "inception" and get("cnn_channels") % 4:
        return "cnn_channels", (f"is {get('cnn_channels')}; the inception front end splits it over 4 branches, "
                                "so use a multiple of 4")
    return None


def distill_problem(distill: bool, baseline: str) -> tuple[str, str] | None:
    """(field, why) when DISTILL cannot be on with this BASELINE, else None: the one copy of the rule, read by Config
    and by the estimator (interop/estimator.py)."""
    if distill and not baseline:
        return "distill", "is True, which learns from the baseline, but BASELINE is ''; set BASELINE to 'minirocket'"
    return None


class Settings:
    """A group of settings: checked when made, each field against its range or choices, then `rules()`."""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kinds = (int, float) if field.type is float else (field.type,)
            if type(value) not in kinds or (field.type is not bool and isinstance(value, bool)):
                raise ConfigError(f"is {value!r}, expected a {field.type.__name__}", field.name)
            why = setting_problem(field.name, value)
            if why:
                raise ConfigError(why, field.name)
        self.rules()

    def rules(self) -> None:
        """Checks that tie two fields together; ConfigError when one fails."""

    @classmethod
    def from_constants(cls, constants: dict):
        """The group from a dict of constants (UPPER_CASE names; others are ignored)."""
        return cls(**{field.name: constants[field.name.upper()] for field in dataclasses.fields(cls)})

    def constants(self) -> dict:
        """The group as constants (UPPER_CASE names), as the script's flags name them."""
        return {name.upper(): value for name, value in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class DataConfig(Settings):
    train_csv_path: str
    test_csv_path: str
    missing_values: str
    label_column: str


@dataclass(frozen=True)
class OutputConfig(Settings):
    output_dir: str
    keep_runs: int
    run: str
    train: bool
    resume: bool


@dataclass(frozen=True)
class ModelConfig(Settings):
    """What build_model reads besides what the data give (channels, length, classes)."""
    cnn_channels: int
    ensemble_size: int
    conv_front_end: str
    normalization: str
    amplitude_features: bool
    length_feature: bool
    kernel_size: int
    lstm_hidden_size: int
    lstm_layers: int
    attention_heads: int
    dropout: float
    min_pooled_length: int
    max_pooled_length: int

    def rules(self):
        problem = model_problem(self)
        if problem:
            raise ConfigError(problem[1], problem[0])


@dataclass(frozen=True)
class TrainingConfig(Settings):
    """Everything that changes the trained weights besides the model and the data: what a resumed run must keep."""
    seed: int
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_epochs: int
    label_smoothing: float
    mixup_alpha: float
    val_fraction: float
    early_stopping_patience: int
    distill: bool
    distill_temperature: float
    distill_weight: float


@dataclass(frozen=True)
class ExplainConfig(Settings):
    seed: int
    num_shap_background_samples: int
    num_samples_to_explain: int
    explain_rows: str
    shap_method: str
    shap_segments_per_channel: int
    shap_permutations: int
    shap_subwindows: int
    shap_min_pairs_per_row: int
    global_explain_rows: int
    attribution_methods: str
    attribution_windows: int
    attribution_segments: str
    ig_steps: int
    occlusion_window: int
    cpd_fraction: float
    max_misclassified: int
    counterfactual_target: str
    counterfactual_budget: int
    conformal_level: float
    ood_false_alarm: float
    similar_cases: int
    baseline: str

    @property
    def in_parts(self) -> bool:
        """Whether EXPLAIN_ROWS asks for every row ("all") or the first N ("first:N") explained in parts
        (pipeline/parts.py)."""
        rule = self.explain_rows.strip()
        return rule == "all" or rule.startswith("first:")

    def rules(self):
        rule = self.explain_rows.strip()
        if rule.startswith("first:") and not (rule[6:].strip().isdigit() and int(rule[6:]) > 0):
            raise ConfigError(f"is {rule!r}; 'first:N' takes a number of rows, like first:1000", "explain_rows")
        if not self.num_samples_to_explain and rule not in ("", "least_confident") and not self.in_parts:
            raise ConfigError(f"names rows ({self.explain_rows!r}), but NUM_SAMPLES_TO_EXPLAIN=0 only scores; drop "
                              "one of the two", "explain_rows")


@dataclass(frozen=True)
class ResourceConfig(Settings):
    device: str
    threads: int
    drawing_processes: int
    progress_seconds: float


@dataclass(frozen=True)
class Config:
    """Every setting of a run, in its groups."""
    data: DataConfig
    outputs: OutputConfig
    model: ModelConfig
    training: TrainingConfig
    explain: ExplainConfig
    resources: ResourceConfig

    def __post_init__(self):
        problem = distill_problem(self.training.distill, self.explain.baseline)
        if problem:
            raise ConfigError(problem[1], problem[0])

    @classmethod
    def from_constants(cls, constants: dict) -> "Config":
        return cls(**{field.name: field.type.from_constants(constants) for field in dataclasses.fields(cls)})

    def constants(self) -> dict:
        """Every setting as the constants block names it (UPPER_CASE)."""
        return {name: value for field in dataclasses.fields(self)
                for name, value in getattr(self, field.name).constants().items()}

    def replace(self, **groups_changes) -> "Config":
        """A copy with fields of some groups changed: replace(training={"epochs": 3})."""
        return dataclasses.replace(self, **{group: dataclasses.replace(getattr(self, group), **changes)
                                            for group, changes in groups_changes.items()})
