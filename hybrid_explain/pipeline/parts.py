"""Every chosen row of a file explained (EXPLAIN_ROWS="all" or "first:N"), in parts, shared out over torchrun's
processes, written part by part, resumable.

    rows = parts.chosen_rows("all", len(scored))
    written = parts.explain_in_parts(run, rows, methods, parts_dir, distributed, done)   # on every rank
    stage = parts.AllRowsStage(written)                                                  # rank 0: report, CSV

The rows are cut into parts of PART_ROWS in file order, whatever the number of processes: part p is computed by
rank p % world_size, and each round rank 0 gathers the round's parts (torch.distributed.gather_object, so ranks on
other machines need no shared disk) and writes each as one .npz. A part's values depend only on its rows, the
model and the settings: SHAP draws every row's permutations from SEED alone, the other methods and the
counterfactual search draw nothing, and a part is always computed as the same batch. So one process and N
processes write the same bytes of every array (tests/test_parts.py; bench/explain_at_scale.py).

The format: one .npz per part (`part-000012.npz`) beside `plan.json`, which says what the parts explain (rows,
settings, a digest of the weights). numpy reads it with no other package, it is the format of the run's other
arrays, and a part is written whole or not at all (a temporary name, then os.replace). zarr or parquet would add
a dependency for what a folder of .npz files and one index do here. Memory stays flat in the rows: a rank holds
one part (rank 0 one round of them) and the per-row summaries (a few numbers a row).

An interrupted run keeps its parts (run_folder.py); --resume=True continues from them when plan.json matches,
and explains the rest.
"""
import dataclasses
import hashlib
import json
import os
import time

import numpy as np

from hybrid_explain.explainers import attributions, regions
from hybrid_explain.figures import global_figures
from hybrid_explain.pipeline import stages
from hybrid_explain.pipeline.progress import Silent
from hybrid_explain.pipeline.stages import Result
from hybrid_explain.pipeline.run_folder import PARTS_DIR, own_parts_folder_names

PART_ROWS = 32  # rows a part: a batch of every method, and what a resumed run may repeat
PLAN = "plan.json"
SUMMARY_KEYS = ("rows", "predicted", "true", "confidence", "top_channel", "top_window", "counterfactual_found")


def chosen_rows(rule: str, num_rows: int) -> np.ndarray:
    """The rows EXPLAIN_ROWS explains in parts: "all", or "first:N" (the first N rows of the file)."""
    return np.arange(num_rows if rule == "all" else min(int(rule.split(":", 1)[1]), num_rows), dtype=np.int64)


def part_name(p: int) -> str:
    return f"part-{p:06d}.npz"


def plan_of(run: stages.RunContext, rows: np.ndarray, methods: list[str]) -> dict:
    """What the parts explain: the rows, the part size, the settings and a digest of the model's weights. A resumed
    run reuses parts only under the same plan."""
    weights = hashlib.sha256()
    for name, tensor in sorted(run.model.state_dict().items()):
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return {"rows": len(rows), "rows_digest": hashlib.sha256(rows.tobytes()).hexdigest(), "part_rows": PART_ROWS,
            "methods": methods, "settings": dataclasses.asdict(run.config), "weights_digest": weights.hexdigest()}


def parts_done(parts_dir: str, plan: dict, log=print) -> set:
    """Parts already written under this plan (a resumed run's); a folder made under another plan is emptied, and
    a part being written when the run stopped (a temporary file) is removed."""
    if not os.path.isdir(parts_dir):
        os.mkdir(parts_dir)
    own = own_parts_folder_names(parts_dir)[0]
    kept = None
    if PLAN in own:
        with open(os.path.join(parts_dir, PLAN), encoding="utf-8") as f:
            kept = json.load(f)
    same = kept == json.loads(json.dumps(plan))
    for name in own:
        if name.endswith(".tmp") or (not same and name != PLAN):
            os.remove(os.path.join(parts_dir, name))
    if kept is not None and not same:
        log(f"{PARTS_DIR}: the parts kept were explained under other settings, rows or weights: explaining again")
    if not same:
        write_atomically(os.path.join(parts_dir, PLAN), lambda f: f.write(json.dumps(plan, indent=1).encode()))
    return {int(n[5:11]) for n in own if same and n.startswith("part-")}


def write_atomically(path: str, write) -> None:
    """path written whole or not at all: write(f) fills a temporary file of a name no one else uses (exclusive
    create: never through a link planted there), which then replaces path."""
    temporary = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as f:
        write(f)
    os.replace(temporary, path)


# -----------------------------------------------------------------------------
# One part
def part_arrays(run: stages.RunContext, part: stages.Samples, methods: list[str]) -> dict:
    """Everything explained about one part's rows: the chosen SHAP method's values (N, C, L, K), each attribution
    method's map of the predicted class (`map_<name>`, (N, C, L)), the counterfactual toward the most likely
    other class (or COUNTERFACTUAL_TARGET), and each row's summary (SUMMARY_KEYS)."""
    config = dataclasses.replace(run.config, shap_method="permutation" if run.config.shap_method == "all"
                                 else run.config.shap_method)  # "all" compares methods; a part keeps the first
    one = dataclasses.replace(run, config=config, samples=part, progress=Silent, results={})
    shap = stages.ShapStage().compute(one)
    one.results["shap"] = shap
    computed = attributions.method_functions(stages.method_settings(config, part), methods)
    maps, _ = stages.attribution_maps(run.model, part, computed)
    found = stages.CounterfactualStage().compute(one).arrays
    values = shap.arrays["values"].astype(np.float32)
    explained = values[np.arange(len(part)), :, :, part.y_pred]
    top_channel, top_window = top_regions(explained, part.own_lengths, windows(run))
    return {"rows": part.rows, "predicted": part.y_pred, "probabilities": part.probabilities,
            "confidence": part.probabilities.max(axis=1),
            **({"true": part.y_true} if part.labelled else {}),
            **({"lengths": part.own_lengths} if part.lengths is not None else {}),
            "shap_values": values, "shap_estimated_rel_error": np.array(
                [np.nan if e is None else e for e in shap.metrics["shap"].get("estimated_rel_error", [None] * len(part))]),
            **{f"map_{name}": m for name, m in maps.items()},
            "counterfactual": found["counterfactuals"], "counterfactual_mask": found["mask"],
            "counterfactual_target": found["targets"], "counterfactual_predicted": found["predicted"],
            "counterfactual_found": found["found"], "top_channel": top_channel, "top_window": top_window}


def windows(run: stages.RunContext) -> int:
    """Windows per channel of the summaries: the SHAP players' (SHAP_SEGMENTS_PER_CHANNEL), of each row's length."""
    return stages.windows_per_channel(run.background.shape[2], run.scored.feature_names,
                                      run.config.shap_segments_per_channel)


def top_regions(explained: np.ndarray, lengths: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) channel and (N,) window (of `count` over each row's own length) with the largest |SHAP value| of the
    predicted class, summed over the window's steps and the channel's steps."""
    magnitude = np.abs(explained)
    channel = magnitude.sum(axis=2).argmax(axis=1)
    window = np.array([regions.span_sums(magnitude[i:i + 1].sum(axis=1, keepdims=True),
                                         regions.window_spans(int(n), count))[0, 0].argmax()
                       for i, n in enumerate(lengths)], dtype=np.int64)
    return channel.astype(np.int64), window


# -----------------------------------------------------------------------------
# Every part, shared out by rank
def explain_in_parts(run: stages.RunContext, rows: np.ndarray, methods: list[str], parts_dir, distributed=None,
                     log=print) -> dict:
    """Explain `rows` of run.scored in parts of PART_ROWS: each rank its share, rank 0 (parts_dir: its folder;
    None on the other ranks) writing every part. Returns, on rank 0, the rows' summaries (SUMMARY_KEYS, read back
    from the parts, so a resumed run's parts count) with "parts", "seconds" and "rows_explained_now"; {} on the
    others."""
    start = time.perf_counter()
    rank, world = (distributed.get_rank(), distributed.get_world_size()) if distributed else (0, 1)
    parts = [rows[i:i + PART_ROWS] for i in range(0, len(rows), PART_ROWS)]
    done = parts_done(parts_dir, plan_of(run, rows, methods), log) if rank == 0 else None
    if distributed:
        shared = [done]
        distributed.broadcast_object_list(shared, src=0)
        done = shared[0]
    if rank == 0 and done:
        log(f"{PARTS_DIR}: {len(done)} of {len(parts)} parts kept from the interrupted run")
    todo = [p for p in range(len(parts)) if p not in done]
    explained_now = 0
    with run.progress(f"explaining every row ({world} process{'es' * (world > 1)})",
                      sum(len(parts[p]) for p in todo), "row") as step:
        for first in range(0, len(todo), world):  # a round: one part per rank
            mine = todo[first + rank] if first + rank < len(todo) else None
            arrays = None if mine is None else part_arrays(run, run.scored.subset(parts[mine]), methods)
            gathered = [arrays]
            if distributed:
                gathered = [None] * world if rank == 0 else None
                distributed.gather_object(arrays, gathered, dst=0)
            for offset, part in enumerate(gathered or []):
                if part is not None:
                    write_atomically(os.path.join(parts_dir, part_name(todo[first + offset])),
                                     lambda f, part=part: np.savez(f, **part))
                    explained_now += len(part["rows"])
                    step(len(part["rows"]))
    if rank:
        return {}
    summaries = [read_summary(os.path.join(parts_dir, part_name(p))) for p in range(len(parts))]
    return {**({key: np.concatenate([s[key] for s in summaries]) for key in summaries[0]} if summaries else {}),
            "parts": len(parts), "rows_explained_now": explained_now, "processes": world,
            "seconds": time.perf_counter() - start}


def read_summary(path: str) -> dict:
    """A part's per-row summary (SUMMARY_KEYS it has), without reading its maps."""
    with np.load(path) as part:
        return {key: part[key] for key in SUMMARY_KEYS if key in part.files}


def read_parts(parts_dir: str, keys=None) -> dict:
    """Every part of a parts folder, concatenated in row order (keys: the arrays wanted; None: all). For files
    that fit in memory: read a large one part by part with np.load."""
    names = sorted(n for n in own_parts_folder_names(parts_dir)[0] if n.startswith("part-"))
    arrays = {}
    for name in names:
        with np.load(os.path.join(parts_dir, name)) as part:
            for key in keys or part.files:
                arrays.setdefault(key, []).append(part[key])
    return {key: np.concatenate(values) for key, values in arrays.items()}


def estimated_bytes(num_rows: int, shape, classes: int, methods: int) -> int:
    """The parts' size on disk: SHAP values of every class, a map a method, the counterfactual and its mask."""
    channels, length = shape
    return num_rows * channels * length * 4 * (classes + methods + 2)


# -----------------------------------------------------------------------------
# The report's view of every row
class AllRowsStage(stages.Stage):
    """explained_rows.csv (a row per explained row: its prediction, top channel and window by |SHAP value| of the
    predicted class, and whether a counterfactual was found) and metrics["explained_in_parts"]: per predicted class,
    how often each channel and each window is the top one. `written`: explain_in_parts's summaries."""
    name, phase = "explained_in_parts", "explained_in_parts"

    def __init__(self, written: dict):
        self.written = written

    def compute(self, run):
        w, scored = self.written, run.scored
        count = windows(run)
        labels = stages.window_labels(run.background.shape[2], count, scored.feature_names, scored.lengths is not None)
        per_class = {}
        for k, name in enumerate(scored.class_names):
            mine = w["predicted"] == k
            if mine.any():
                per_class[name] = {
                    "rows": int(mine.sum()),
                    "top_channel": dict(zip(scored.channel_names, np.bincount(
                        w["top_channel"][mine], minlength=len(scored.channel_names)).tolist())),
                    "top_window": dict(zip(labels, np.bincount(w["top_window"][mine], minlength=count).tolist()))}
        rate = w["rows_explained_now"] / w["seconds"] if w["rows_explained_now"] else None
        section = {"rows": int(len(w["rows"])), "parts": w["parts"], "part_rows": PART_ROWS,
                   "processes": w["processes"], "rows_explained_now": w["rows_explained_now"],
                   "seconds": w["seconds"], "rows_per_second": rate, "folder": PARTS_DIR,
                   "explained_by": "|SHAP value| of the predicted class (the top channel over all steps; the top "
                                   "window over all channels)", "windows": labels,
                   "counterfactual_found_share": float(w["counterfactual_found"].mean()) if len(w["rows"]) else None,
                   "per_predicted_class": per_class}
        return Result({"explained_in_parts": section}, {"windows": count, "labels": labels}, [
            f"every row: {section['rows']} rows explained in {section['parts']} parts of {PARTS_DIR}/ "
            f"({w['rows_explained_now']} now, {w['processes']} process{'es' * (w['processes'] > 1)}, "
            f"{w['seconds']:.1f} s)"])

    def save(self, result, run, path):
        import pandas as pd

        w, names = self.written, np.array(run.scored.class_names)
        columns = {"row": w["rows"], "predicted": names[w["predicted"]],
                   **({"true": names[w["true"]]} if "true" in w else {}), "confidence": w["confidence"],
                   "top_channel": np.array(run.scored.channel_names)[w["top_channel"]],
                   "top_window": np.array(result.arrays["labels"])[w["top_window"]],
                   "counterfactual_found": w["counterfactual_found"]}
        pd.DataFrame(columns).to_csv(path("explained_rows.csv"), index=False)

    def draw(self, result, run, path):
        section = result.metrics["explained_in_parts"]
        global_figures.explained_rows_figure(section["per_predicted_class"], run.scored.channel_names,
                                              section["windows"], section["rows"], path("explained_rows.png"))

