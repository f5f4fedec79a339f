"""Cost and background error of the global importance pass, beside the SHAP stage, on a trained run.

    python bench/global_cost.py OUTPUT_DIR TEST_CSV [--rows=40] [--threads=1]

Loads OUTPUT_DIR's checkpoint (and its SHAP background), then in one process times
- the SHAP stage's computation: NUM_SAMPLES_TO_EXPLAIN rows with the default permutation budget, 60 players;
- the global pass (global_importance.global_importance) on --rows rows chosen as the pipeline chooses them;
and counts the model rows each evaluates. Then it measures what the small global background costs in accuracy:
the channel importance (mean |value| for the predicted class) with global_importance.BACKGROUND_ROWS rows
against the exact channel values with the whole background, as a relative L2 error and a rank agreement.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hybrid_explain.explainers import global_importance  # noqa: E402
from hybrid_explain.explainers import shapley  # noqa: E402
from hybrid_explain.pipeline import stages  # noqa: E402
from data_loader import normalize, read_table  # noqa: E402
from hybrid_explain.checkpoint import load_model  # noqa: E402


class Counted(torch.nn.Module):
    """The model, counting the rows it is called on."""

    def __init__(self, model):
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x):
        self.rows += len(x)
        return self.model(x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("test_csv")
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, checkpoint = load_model(os.path.join(args.output_dir, "saved_model_hybrid_explained.pth"))
    model = Counted(model).eval()
    x = torch.from_numpy(normalize(read_table(args.test_csv, checkpoint).X, checkpoint["normalization"])).float()
    background = checkpoint["background"].float()
    with torch.inference_mode():
        predicted = model(x).argmax(dim=1).numpy()
    hp = checkpoint["hyperparameters"]
    n, channels, length = x.shape
    windows = hp["shap_segments_per_channel"]
    print(f"{n} rows, {channels} channels x {length} steps, background {len(background)} rows, "
          f"{args.threads} thread(s)")

    groups = shapley.player_groups(channels, length, windows)
    explained = x[stages.round_robin(predicted, hp["num_samples_to_explain"])]
    model.rows, start = 0, time.perf_counter()
    shapley.interventional_shap(model, explained, background, groups)
    shap_seconds, shap_rows = time.perf_counter() - start, model.rows
    print(f"SHAP stage ({len(explained)} rows, {int(groups.max()) + 1} players): {shap_rows:,} model rows, "
          f"{shap_seconds:.2f} s")

    chosen = global_importance.choose_rows(predicted, args.rows, seed=0)
    labels = [f"w{w}" for w in range(windows)]
    model.rows, start = 0, time.perf_counter()
    _, section = global_importance.global_importance(model, x[chosen], background, predicted[chosen],
                                                     checkpoint["channel_names"], checkpoint["class_names"],
                                                     windows, 0, labels)
    global_seconds, global_rows = time.perf_counter() - start, model.rows
    print(f"global pass ({len(chosen)} rows): {global_rows:,} model rows ({global_rows / shap_rows:.2f}x the SHAP "
          f"stage), {global_seconds:.2f} s ({global_seconds / shap_seconds:.2f}x); per grouping "
          + ", ".join(f"{g} {section['method'][g]} {s:.2f} s" for g, s in section["seconds"].items()))

    channel_groups = global_importance.players("channels", channels, length, windows)
    small = background[global_importance.background_rows(len(background), 0)]
    importance = {}
    one_hot = np.eye(channels)[channel_groups.reshape(-1)]
    for name, reference in (("whole", background), ("subset", small)):
        if name == "whole":  # the reference: exact values against the whole background
            spread = shapley.interventional_shap(model, x[chosen], reference, channel_groups, method="exact")
            values = np.einsum("nik,ip->npk", spread.reshape(len(chosen), -1, spread.shape[-1]), one_hot)
        else:  # what the pipeline computes
            values = global_importance.group_values(model, x[chosen], reference, channel_groups, 0)
        evidence = global_importance.centred(values)[np.arange(len(chosen)), :, predicted[chosen]]
        importance[name] = np.abs(evidence).mean(axis=0)
    error = np.linalg.norm(importance["subset"] - importance["whole"]) / np.linalg.norm(importance["whole"])
    same_top = np.argmax(importance["subset"]) == np.argmax(importance["whole"])
    print(f"channel importance with {len(small)} background rows against the whole {len(background)}: relative L2 "
          f"{error:.3f}, same top channel: {same_top}, ranks whole {np.argsort(-importance['whole']).tolist()} "
          f"subset {np.argsort(-importance['subset']).tolist()}")


if __name__ == "__main__":
    main()
