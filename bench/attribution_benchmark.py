"""How well the pipeline's attribution methods find the ground truth of published benchmarks.

    python bench/attribution_benchmark.py                         # every set of bench/ground_truth_sets.py
    python bench/attribution_benchmark.py --sets=SeqComb-UV,FreqShapes --epochs=30 --explain=100

For each set: write train/test CSVs, train the default model through the pipeline's own CSV path
(`train_explain.main`, a temporary OUTPUT_DIR, EPOCHS from --epochs, no attribution suite), load the saved
checkpoint with its SHAP background, and compute every method's map for the predicted class of the first
--explain test rows that have a ground-truth mask (`attributions.compute_maps`; SHAP through
`shapley.interventional_shap` with the pipeline's background rule, `shapley.budget_background`, for each of
--shap_players). The defaults are the pipeline's (a --background of NUM_SHAP_BACKGROUND_SAMPLES rows,
SHAP_MIN_PAIRS_PER_ROW, SHAP_SEGMENTS_PER_CHANNEL x SHAP_SUBWINDOWS), and each table states its settings. Prints
one table per set: test accuracy, per method AUPRC, AUP and AUR (localization.py; per sample, then
averaged, as TimeX does), CPD and CPP (metrics/prediction_difference.py, --cpd_fills, the pipeline's fraction and
cap) and seconds per explained sample, beside a random map (the control) and the published numbers where there
are some.

Temporal saliency rescaling masks TSR windows (--tsr_windows) of steps; on 50-channel sets it costs
(windows + relevant windows x 50) gradient maps per sample.
"""
import argparse
import math
import os
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from hybrid_explain.explainers import attributions  # noqa: E402
from hybrid_explain.metrics import localization, prediction_difference  # noqa: E402
from hybrid_explain.explainers import shapley  # noqa: E402
from hybrid_explain.pipeline import stages  # noqa: E402
import train_explain  # noqa: E402
from data_loader import normalize, read_table  # noqa: E402
from ground_truth_sets import SETS  # noqa: E402
from hybrid_explain.model import predict_logits

# AUPRC of Queen et al. 2023 (TimeX, NeurIPS), Table 2, as quoted by issue 24 (their AUP and AUR were not
from hybrid_explain.checkpoint import load_model
# checked here, so they are left out); their model is a transformer.
PUBLISHED = {
    "SeqComb-UV": {"integrated gradients": 0.576, "TimeX": 0.712},
    "SeqComb-MV": {"integrated gradients": 0.330, "TimeX": 0.688},
    "FreqShapes": {"integrated gradients": 0.752, "TimeX": 0.832},
}
GRADIENT_METHODS = ["saliency", "input_x_gradient", "integrated_gradients", "gradcam", "occlusion", "lrp_epsilon",
                    "lrp_sign", "timing", "saliency_tsr", "integrated_gradients_tsr"]


def write_csv(path, X, y):
    channels, length = X.shape[1:]
    columns = [f"c{c}_t{t}" for c in range(channels) for t in range(length)]
    frame = pd.DataFrame(X.reshape(len(X), -1), columns=columns)
    frame.insert(0, "label", y)
    frame.to_csv(path, index=False, float_format="%.5g")


def train_through_pipeline(folder, train, test, args) -> str:
    """The default model trained by the pipeline on the CSVs; returns the checkpoint's path."""
    write_csv(os.path.join(folder, "train.csv"), *train[:2])
    write_csv(os.path.join(folder, "test.csv"), *test[:2])
    output = os.path.join(folder, "run")
    status = train_explain.main([f"--train_csv_path={folder}/train.csv", f"--test_csv_path={folder}/test.csv",
                                 f"--output_dir={output}", f"--epochs={args.epochs}", "--num_samples_to_explain=1",
                                 "--attribution_methods=", "--global_explain_rows=0", f"--seed={args.seed}",
                                 f"--num_shap_background_samples={args.background}",
                                 f"--shap_method={args.pipeline_shap_method}"])
    if status != 0:
        raise SystemExit(f"the pipeline failed on {folder} with status {status}")
    return os.path.join(output, "saved_model_hybrid_explained.pth")


def method_maps(model, x, target, background, methods, args) -> tuple[dict, dict]:
    """name -> (N, C, L) maps and name -> seconds per sample."""
    config = {name.lower(): getattr(train_explain, name) for name in train_explain.CONSTANT_NAMES}
    functions = attributions.method_functions(config, methods)
    for name in ("saliency_tsr", "integrated_gradients_tsr"):
        if name in functions:
            functions[name] = _with_windows(functions[name], args.tsr_windows)
    with torch.backends.cudnn.flags(enabled=False):
        maps, seconds = attributions.compute_maps(functions, model, x, target)
    rows = {}
    if "shap" in methods:
        for windows, split, pairs in args.shap_players:
            default = (windows, split, pairs) == (config["shap_segments_per_channel"], config["shap_subwindows"],
                                                  config["shap_min_pairs_per_row"])
            name = "shap" if default else f"shap_{windows}x{split}x{pairs}"
            groups = shapley.player_groups(x.shape[1], x.shape[2], windows)
            # the pipeline's rule (stages.shap_outputs): the same walks over fewer rows where split > 1
            chosen, permutations = shapley.budget_background(len(background), int(groups.max()) + 1, x.shape[2],
                                                             None, pairs if split > 1 else 1)
            start = time.perf_counter()
            values = shapley.interventional_shap(model, x, background[chosen], groups, seed=config["seed"],
                                                 split=split, num_permutations=permutations)
            seconds[name] = time.perf_counter() - start
            maps[name] = values[np.arange(len(x)), :, :, target.cpu().numpy()]
            walks = 2 * len(chosen) * math.ceil(permutations / len(chosen))
            rows[name] = {"background_rows": len(chosen), "walks": walks,
                          "model_rows": walks * (int(groups.max()) + 1 - 1)}
    return maps, {name: s / len(x) for name, s in seconds.items()}, rows


def _with_windows(function, windows):
    return lambda model, x, target: function(model, x, target, windows=windows)


def benchmark(name, args) -> dict:
    generate = SETS[name]
    train, test = generate(args.train, args.seed), generate(args.test, args.seed + 1)
    with tempfile.TemporaryDirectory(prefix="attribution_benchmark_") as folder:
        start = time.perf_counter()
        checkpoint_path = train_through_pipeline(folder, train, test, args)
        train_seconds = time.perf_counter() - start
        model, checkpoint = load_model(checkpoint_path)
        raw = read_table(os.path.join(folder, "test.csv"), checkpoint).X
    x_all = torch.from_numpy(normalize(raw.astype(np.float64), checkpoint["normalization"])).float()
    predicted = predict_logits(model, x_all).argmax(1)
    accuracy = float((predicted.numpy() == test[1]).mean())
    masked = np.flatnonzero(test[2].reshape(len(test[2]), -1).any(1))[:args.explain]  # class 0 of SeqComb: none
    x, target, mask = x_all[masked], predicted[masked], test[2][masked]
    background = checkpoint["background"][:args.background].float()
    methods = [m for m in args.methods if m != "shap" or x.shape[1] <= args.shap_max_channels]
    maps, seconds, shap_rows = method_maps(model, x, target, background, methods, args)
    maps["random"] = np.random.default_rng(args.seed).normal(size=mask.shape)
    scores = {method: localization.mean_scores(m, mask) for method, m in maps.items()}
    start = time.perf_counter()
    differences = prediction_difference.summary(prediction_difference.prediction_difference(
        model, x, maps, args.seed, args.cpd_fills, background, train_explain.CPD_FRACTION,
        most=prediction_difference.MAX_REMOVALS))
    for method, fills in differences.items():
        scores[method].update({f"{order}_{fill}": v for fill, orders in fills.items() for order, v in orders.items()})
    return {"name": name, "accuracy": accuracy, "explained": len(masked), "train_seconds": train_seconds,
            "prevalence": float(mask.mean()), "scores": scores, "seconds": seconds, "shap_rows": shap_rows,
            "cpd_seconds": time.perf_counter() - start, "shape": tuple(x.shape[1:]), "background": len(background)}


def print_table(result, args):
    print(f"\n### {result['name']}: test accuracy {result['accuracy']:.3f}, {result['explained']} explained rows, "
          f"ground-truth prevalence {result['prevalence']:.3f} (training {result['train_seconds']:.0f} s)\n")
    channels, length = result["shape"]
    removals = min(prediction_difference.MAX_REMOVALS, int(train_explain.CPD_FRACTION * channels * length))
    print(f"Settings: {args.train} training rows, seed {args.seed}, {args.epochs} epochs; background "
          f"{result['background']} rows (--background {args.background}); SHAP players WINDOWSxSPLITxMIN_PAIRS: "
          + ("; ".join(f"{name} = {r['background_rows']} background rows, {r['walks']} walks, {r['model_rows']:,} model "
                      "rows per sample" for name, r in result["shap_rows"].items()) or "no SHAP")
          + f"; CPD/CPP: {removals} removals per sample ({train_explain.CPD_FRACTION:.0%} of {channels * length} "
          f"features, at most {prediction_difference.MAX_REMOVALS}), fills {', '.join(args.cpd_fills)} "
          f"({result['cpd_seconds']:.0f} s for every method)\n")
    columns = [f"{order}_{fill}" for fill in args.cpd_fills for order in ("cpd", "cpp")]
    print("| method | AUPRC | AUP | AUR | " + " | ".join(c.replace("_", " ", 1) for c in columns) + " | s / sample |")
    print("|---|---:|---:|---:|" + "---:|" * len(columns) + "---:|")
    for method, s in sorted(result["scores"].items(), key=lambda item: -item[1]["auprc"]):
        seconds = result["seconds"].get(method)
        print(f"| {method} | {s['auprc']:.3f} | {s['aup']:.3f} | {s['aur']:.3f} | "
              + " | ".join(f"{s[c]:.3f}" for c in columns) + f" | {'' if seconds is None else f'{seconds:.3f}'} |")
    for method, auprc in PUBLISHED.get(result["name"], {}).items():
        print(f"| published: {method} (TimeX paper, transformer) | {auprc:.3f} | | |" + " |" * len(columns) + " |")
    sys.stdout.flush()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated names of ground_truth_sets.SETS")
    parser.add_argument("--train", type=int, default=400, help="training rows per set")
    parser.add_argument("--test", type=int, default=100, help="test rows per set (accuracy)")
    parser.add_argument("--explain", type=int, default=40, help="test rows with a mask explained and scored")
    parser.add_argument("--epochs", type=int, default=20, help="EPOCHS of the pipeline's training")
    parser.add_argument("--background", type=int, default=train_explain.NUM_SHAP_BACKGROUND_SAMPLES,
                        help="NUM_SHAP_BACKGROUND_SAMPLES (the pipeline's default)")
    parser.add_argument("--methods", default=",".join(GRADIENT_METHODS + ["shap"]))
    parser.add_argument("--shap_players", default=f"{train_explain.SHAP_SEGMENTS_PER_CHANNEL}x{train_explain.SHAP_SUBWINDOWS}"
                                                  f"x{train_explain.SHAP_MIN_PAIRS_PER_ROW}",
                        help="SHAP variants, one row each: WINDOWSxSPLITxMIN_PAIRS, windows per channel, the parts the "
                             "largest are split into (1: flat players) and SHAP_MIN_PAIRS_PER_ROW (1: every background "
                             "row); 'shap' is the pipeline's default, the only one by default")
    parser.add_argument("--cpd_fills", default="zero,background_mean",
                        help="fill values of CPD and CPP (metrics/prediction_difference.FILLS)")
    parser.add_argument("--shap_max_channels", type=int, default=4,
                        help="SHAP only on sets with at most this many channels (500 players on 50 x 50 cost "
                             "~2,000x a gradient map per sample)")
    parser.add_argument("--tsr_windows", type=int, default=10, help="windows of steps temporal saliency rescaling masks")
    parser.add_argument("--pipeline_shap_method", default="permutation",
                        help="SHAP_METHOD of the training run's own SHAP stage (one sample; not scored here): 'deep' "
                             "saves its minutes on 50 x 50 sets")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    args.methods = args.methods.split(",")
    args.shap_players = [tuple(int(n) for n in item.split("x")) for item in args.shap_players.split(",")]
    args.cpd_fills = args.cpd_fills.split(",")
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    for name in args.sets.split(","):
        print_table(benchmark(name, args), args)
    print(f"\nwhole benchmark: {time.perf_counter() - start:.0f} s, torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main(sys.argv[1:])
