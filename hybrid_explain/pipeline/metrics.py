"""metrics.json's schema: every top-level key a run writes and the type of its value, with the version of the
schema. The stages fill their keys (stages.Result.metrics), train_explain.run_metrics adds the run's facts, the
report reads them, and tests/test_pipeline.py checks a run's file against this schema. A change that renames or
removes a key, or changes its type, raises METRICS_SCHEMA_VERSION; a new key is added here.

    1  (0.10.0) the first versioned schema; files of earlier versions carry no schema_version
"""
import typing
from typing import Optional, TypedDict, Union

METRICS_SCHEMA_VERSION = 1

Number = Union[int, float]


class Metrics(TypedDict, total=False):
    schema_version: int
    version: str  # train_explain's
    test_accuracy: Optional[float]  # None without labels
    test_macro_f1: Optional[float]
    accuracy_check: dict  # checks.accuracy_check: has the model learned its task?
    labelled: bool
    predictions: dict  # stages.PredictionsStage
    num_parameters: int
    networks: int
    best_epoch: int
    val_accuracy: Optional[float]  # None without a validation split
    device: str
    world_size: int
    run: str  # the run's folder name in OUTPUT_DIR/runs
    timings_s: dict  # phase -> seconds, and "total"
    explained_rows: list
    series: dict  # lengths and filled cells of each file
    explained: list  # one stages.Samples.describe() per explained row
    explanations_skipped: str  # NUM_SAMPLES_TO_EXPLAIN=0: why no explanation section is there
    shap: dict  # stages.ShapStage
    global_: dict  # stages.GlobalStage (the key is "global", a Python keyword)
    attributions: dict  # stages.AttributionStage
    gradcam: dict  # stages.GradCamStage
    attention: dict  # stages.AttentionStage
    counterfactuals: list  # stages.CounterfactualStage: one entry per explained row
    counterfactual_summary: dict
    baseline: dict  # stages.BaselineStage: the baseline beside the network (BASELINE)
    distillation: dict  # how the network learned from the baseline (DISTILL)
    trust: dict  # stages.TrustStage: calibration, prediction sets, out-of-distribution flags, similar cases
    explained_in_parts: dict  # parts.AllRowsStage: EXPLAIN_ROWS="all" or "first:N", every row in parts


# Keys every run writes; the explanation sections are there when NUM_SAMPLES_TO_EXPLAIN > 0.
REQUIRED = ("schema_version", "version", "test_accuracy", "test_macro_f1", "accuracy_check", "labelled",
            "predictions", "num_parameters", "networks", "best_epoch", "val_accuracy", "device", "world_size", "run",
            "timings_s", "explained_rows", "series", "explained", "trust")
EXPLANATIONS = ("shap", "attention", "gradcam", "counterfactuals", "counterfactual_summary")


def schema_types() -> dict:
    """key -> the types its value may have (None allowed for Optional)."""
    hints = typing.get_type_hints(Metrics)
    return {name.rstrip("_"): typing.get_args(hint) or (hint,) for name, hint in hints.items()}


def schema_problems(metrics: dict) -> list[str]:
    """What in a metrics.json differs from the schema (empty: it conforms): a missing key, a key the schema does
    not name, a value of another type."""
    types = schema_types()
    required = REQUIRED + (EXPLANATIONS if "explanations_skipped" not in metrics else ())
    problems = [f"lacks {key}" for key in required if key not in metrics]
    problems += [f"{key} is not in the schema (hybrid_explain/pipeline/metrics.py)" for key in metrics
                 if key not in types]
    for key, value in metrics.items():
        allowed = tuple(t for t in types.get(key, (object,)) if t is not type(None))
        if value is None and type(None) in types.get(key, ()):
            continue
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            problems.append(f"{key} is a {type(value).__name__}, not {' or '.join(t.__name__ for t in allowed)}")
    return problems
