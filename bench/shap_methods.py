"""Cost and accuracy of the SHAP methods on the project's model, default data shape.

    python bench/shap_methods.py                      # ~15 minutes on 2 CPU cores
    python bench/shap_methods.py --backgrounds 10 --reference-permutations 200 --repeats 1   # quicker

Trains HybridCNNLSTMAttention briefly on ./train_set.csv (6 channels x 100 steps, 4 classes),
explains 5 test rows against backgrounds of several sizes, and prints per method: seconds
wall-clock and CPU (the least of --repeats runs each: CPU time is what a method costs when it
has the cores to itself, wall time on a shared machine is not), the CPU ratio to
DeepExplainer's, the additivity error (median and max over the samples) and the relative L2
distance of the player values (each channel x window group summed) to a reference estimate
with many more permutations (another seed), which is itself off by about
(L2 at p permutations) * sqrt(p / reference permutations).
The training file has 40 rows; a background larger than that is drawn with replacement (the
cost of 100 distinct rows; the pipeline itself caps the background at the training rows).
"""
import argparse
import os
import sys
import time
import warnings

import numpy as np
import pandas as pd
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from hybrid_explain.explainers import shapley  # noqa: E402
from hybrid_explain.model import HybridCNNLSTMAttention  # noqa: E402


def load_series(path, mean=None, std=None):
    """(X (N, C, L) normalized per channel with the given or its own statistics, y, mean, std)."""
    table = pd.read_csv(path)
    features = [c for c in table.columns if c != "label"]
    channels = list(dict.fromkeys(c.rsplit("_t", 1)[0] for c in features))
    x = table[features].to_numpy(np.float32).reshape(len(table), len(channels), -1)
    if mean is None:
        mean, std = x.mean(axis=(0, 2), keepdims=True), x.std(axis=(0, 2), keepdims=True) + 1e-8
    labels = {name: i for i, name in enumerate(sorted(table["label"].astype(str).unique()))}
    y = table["label"].astype(str).map(labels).to_numpy()
    return torch.tensor((x - mean) / std), torch.tensor(y), mean, std


def train_briefly(x, y, steps, seed):
    torch.manual_seed(seed)
    model = HybridCNNLSTMAttention(x.shape[1], x.shape[2], int(y.max()) + 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1).backward()
        optimizer.step()
    return model.eval()


class GroupMasker:
    """shap masker over grouped players: a masked player's inputs come from each background row."""

    def __init__(self, background, groups):
        self.background = background.reshape(len(background), -1)
        self.groups = groups.reshape(-1)
        self.shape = (len(background), int(groups.max()) + 1)

    def mask_shapes(self, x):
        return [(self.shape[1],)]

    def __call__(self, mask, x):
        return np.where(mask[self.groups][None, :], x[None, :], self.background)


def shap_permutation_explainer(model, x, background, groups, permutations, seed):
    """shap.PermutationExplainer over the grouped players, values spread back onto the inputs."""
    import shap

    shape = x.shape[1:]

    def f(rows):
        with torch.inference_mode():
            return model(torch.as_tensor(rows, dtype=torch.float32).reshape(-1, *shape)).numpy()

    num_players = int(groups.max()) + 1
    explainer = shap.PermutationExplainer(f, GroupMasker(background.numpy(), groups), seed=seed)
    result = explainer(x.reshape(len(x), -1).numpy(), max_evals=permutations * (2 * num_players + 1),
                       batch_size=4 * num_players, silent=True)
    sizes = np.bincount(groups.reshape(-1))
    return result.values[:, groups] / sizes[groups][None, :, :, None]


def player_values(values, groups):
    """(N, P, K): the values of each group summed."""
    flat = values.reshape(len(values), -1, values.shape[-1])
    out = np.zeros((len(values), int(groups.max()) + 1, values.shape[-1]))
    np.add.at(out, (slice(None), groups.reshape(-1)), flat)
    return out


def timed(repeats, compute):
    """(result of compute(), (wall seconds, CPU seconds of this process)), each the least of
    `repeats` runs: CPU time is what the method costs when it has the cores to itself."""
    wall = cpu = float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = compute()
        wall, cpu = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - start_cpu)
    return result, (wall, cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backgrounds", type=int, nargs="+", default=[10, 32, 100])
    parser.add_argument("--permutations", type=int, nargs="+", default=[0, 32, 64, 128, 256],
                        help="0: the default, shapley.default_permutations")
    parser.add_argument("--segments", type=int, nargs="+", default=[10, 5])
    parser.add_argument("--reference-permutations", type=int, default=1000)
    parser.add_argument("--shap-permutations", type=int, default=1, help="0 skips shap.PermutationExplainer")
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="unrecognized nn.Module")  # DeepExplainer on the LSTM

    torch.set_num_threads(min(2, torch.get_num_threads()))
    train_x, train_y, mean, std = load_series(os.path.join(ROOT, "train_set.csv"))
    test_x, test_y, _, _ = load_series(os.path.join(ROOT, "test_set.csv"), mean, std)
    model, (seconds, _) = timed(1, lambda: train_briefly(train_x, train_y, args.train_steps, seed=0))
    with torch.inference_mode():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    print(f"model: {sum(p.numel() for p in model.parameters())} parameters, trained {args.train_steps} "
          f"full-batch steps in {seconds:.1f}s, test accuracy {accuracy:.3f}; torch threads "
          f"{torch.get_num_threads()}; load average {os.getloadavg()[0]:.1f}")
    rows = torch.from_numpy(np.random.default_rng(0).permutation(len(test_x))[:args.samples])
    x = test_x[rows]
    with torch.inference_mode():
        outputs = model(x).double().numpy()

    header = (f"{'method':<22}{'players':>8}{'perms':>7}{'bg':>5}{'rows/sample':>12}{'wall s':>8}{'cpu s':>7}"
              f"{'x deep':>8}{'add med':>10}{'add max':>10}{'L2 to ref':>11}")
    for size in args.backgrounds:
        chosen = np.random.default_rng(size).choice(len(train_x), size, replace=size > len(train_x))
        background = train_x[torch.from_numpy(np.sort(chosen))]
        with torch.inference_mode():
            expected = model(background).double().mean(0).numpy()
        print(f"\nbackground {size} rows{' (drawn with replacement)' if size > len(train_x) else ''}, "
              f"{len(x)} explained samples")
        print(header)
        print("-" * len(header), flush=True)
        references = {}
        for segments in args.segments:
            groups = shapley.player_groups(x.shape[1], x.shape[2], segments)
            values, (seconds, _) = timed(1, lambda: shapley.interventional_shap(
                model, x, background, groups, num_permutations=args.reference_permutations, seed=12345))
            references[segments] = (groups, player_values(values, groups), seconds)

        def report(name, values, seconds, segments, permutations, evaluations, deep_seconds):
            groups, reference, _ = references[segments]
            errors = shapley.additivity_errors(values, outputs, expected)
            distance = np.linalg.norm(player_values(values, groups) - reference) / np.linalg.norm(reference)
            print(f"{name:<22}{int(groups.max()) + 1:>8}{permutations:>7}{size:>5}{evaluations:>12}"
                  f"{seconds[0]:>8.2f}{seconds[1]:>7.2f}{seconds[1] / deep_seconds[1]:>8.1f}"
                  f"{np.median(errors):>10.2e}{errors.max():>10.2e}{distance:>11.3f}", flush=True)

        values, deep_seconds = timed(args.repeats, lambda: shapley.deep_shap(model, x, background))
        report("deep (DeepExplainer)", values, deep_seconds, args.segments[0], 0, 2 * size, deep_seconds)
        for segments in args.segments:
            groups = references[segments][0]
            players = int(groups.max()) + 1
            for permutations in args.permutations:
                values, seconds = timed(args.repeats, lambda: shapley.interventional_shap(
                    model, x, background, groups, num_permutations=permutations or None))
                name, count = "permutation", permutations
                if not permutations:  # the rule interventional_shap applies to num_permutations=None
                    name, count = "permutation default", shapley.default_permutations(players, x.shape[2])
                count = size * -(-count // size)  # rounded up so every background row is used equally
                report(name, values, seconds, segments, count, 2 * count * (players - 1) + size + 1, deep_seconds)
            if args.shap_permutations:
                values, seconds = timed(1, lambda: shap_permutation_explainer(
                    model, x, background, groups, args.shap_permutations, seed=0))
                report("shap.Permutation", values, seconds, segments, args.shap_permutations,
                       args.shap_permutations * (2 * players + 1) * size, deep_seconds)
        for segments, (groups, _, seconds) in references.items():
            count = size * -(-args.reference_permutations // size)
            print(f"(reference: permutation, {int(groups.max()) + 1} players, {count} permutations, "
                  f"seed 12345: {seconds:.1f}s)")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
