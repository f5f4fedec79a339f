"""The project's Shapley estimator against shapiq's approximators, at equal numbers of model evaluations.

    python bench/shapley_estimators.py --sets=default=../shared/data,GunPoint=../shared/data/dev/GunPoint \
        --work_dir=/tmp/shapley_estimators

For each set (a folder with train_set.csv and test_set.csv) the default pipeline is run once into WORK_DIR/<name>
(`train_explain.main`, no attribution suite; an existing run there is reused), so the model, the explained rows, the
background rows the default SHAP used (after the budget rule) and its budget are the pipeline's. Then, per explained
row (--samples) and seed (--seeds), every estimator values the same players (the SHAP windows of each channel) of
the same game, v(S) = mean over the background rows b of f(x_S, b_rest) on the logits
(`coalitions.coalition_values`), at --budgets times the default's model rows:

- `project default`: `shapley.interventional_shap` as the pipeline calls it (antithetic walks stratified over the
  background, coarse to fine where it engages; its values summed back to the windows) at the multiplied budget;
  `project flat`: the same without coarse to fine.
- `shapiq <Approximator>`: shapiq's approximator on the game above; a coalition costs one model row per background
  row, so it gets (model rows) / (background rows) coalitions. shapiq games have one output, so each class is run
  with the same seed; the classes share the model evaluations (a coalition is evaluated once).
- `shapiq <Approximator> (one row per coalition)`: the same approximator on an unbiased one-row version of the game
  (a non-empty, non-full coalition is evaluated against one background row drawn at random, the empty one against
  every row): it gets about as many coalitions as the project's estimator gets model rows.

The converged values: with at most 16 players, exact Shapley values by enumerating every coalition
(`interventional_shap(method="exact")`); otherwise the project's flat estimator at --reference_scale times the
budget (another seed), whose own estimated error is printed (distances near it are not resolved). Printed per set
and estimator: model rows per explained row, the relative L2 distance of the window values (all players and
classes) to the converged ones (median and max over rows x seeds), the additivity error |sum phi - (v(N) - v(0))| /
|v(N) - v(0)| (median), and CPU seconds per explained row, timed on --timed_samples rows at the 1x budget, seed 0,
with real model calls (the accuracy runs of sets with exact references reuse a table of the model's outputs).
"""
import argparse
import importlib.util
import json
import math
import os
import sys
import time
import warnings

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from hybrid_explain.checkpoint import load_model  # noqa: E402
from hybrid_explain.explainers import coalitions, shapley  # noqa: E402
import train_explain  # noqa: E402


class CountedModel:
    """The model with a count of the rows it was asked for; memo=True keeps each row's output (bytes -> logits), for
    sets whose exact reference evaluates every row any estimator can ask for."""

    def __init__(self, model, memo):
        self.model, self.memo, self.rows = model, ({} if memo else None), 0

    def __call__(self, rows):
        self.rows += len(rows)
        if self.memo is None:
            return self.model(rows)
        keys = [row.tobytes() for row in rows.cpu().numpy()]
        new = list({key: i for i, key in enumerate(keys) if key not in self.memo}.values())
        if new:
            self.memo.update(zip((keys[i] for i in new), self.model(rows[new]).double().cpu().numpy()))
        return torch.from_numpy(np.stack([self.memo[key] for key in keys]))


def window_values(values, groups):
    """(P, K): per-input values (1, C, L, K) summed over each player's inputs."""
    return np.stack([values[0][groups == p].sum(axis=0) for p in range(int(groups.max()) + 1)])


def project_estimator(coarse_to_fine):
    """estimate(...) -> (P, K) window values of interventional_shap at `permutations`, with or without coarse to
    fine (SHAP_SUBWINDOWS)."""
    def estimate(f, x, background, groups, rows, permutations, seed, subwindows):
        values = shapley.interventional_shap(f, x[None], background, groups, num_permutations=permutations,
                                             seed=seed, split=subwindows if coarse_to_fine else 1)
        return window_values(values, groups)
    return estimate


def full_game(f, x, background, groups, seed):
    """(coalitions (M, P) -> (M, K), model rows per coalition): the project's value function."""
    return (lambda members: coalitions.coalition_values(f, x, background, groups, members)), len(background)


def one_row_game(f, x, background, groups, seed):
    """An unbiased one-row version of the game: v(S) = f(x_S, b_r), r drawn per coalition; v(0) over every row."""
    rng = np.random.default_rng([seed, 7])
    groups_t = torch.as_tensor(groups).long()

    def values(members):
        one_row, empty = members.any(1), ~members.any(1)
        rows = torch.where(torch.as_tensor(members)[:, groups_t], x, background[rng.integers(len(background),
                                                                                             size=len(members))])
        with torch.inference_mode():
            parts = [(one_row, f(rows[one_row]))] if one_row.any() else []
            parts += [(empty, f(background).mean(0, keepdim=True))] if empty.any() else []
        result = np.empty((len(members), parts[0][1].shape[1]))
        for chosen, out in parts:
            result[chosen] = out.double().cpu().numpy()
        return result
    return values, 1


def shapiq_estimator(name, game_of):
    """estimate(...) -> (P, K) values of shapiq's approximator `name` on game_of's game, with as many coalitions as
    `rows` model rows buy, one run per class."""
    def estimate(f, x, background, groups, rows, permutations, seed, subwindows):
        import shapiq

        players = int(groups.max()) + 1
        game, rows_per_coalition = game_of(f, x, background, groups, seed)
        cache = {}

        def values_of(members):  # (M, P) -> (M, K); each coalition evaluated once for all the classes
            members = np.atleast_2d(np.asarray(members, dtype=bool))
            keys = [np.packbits(m).tobytes() for m in members]
            new = {key: m for key, m in zip(keys, members) if key not in cache}
            if new:
                cache.update(zip(new, game(np.array(list(new.values())))))
            return np.stack([cache[key] for key in keys])

        budget = max(players + 2, rows // rows_per_coalition)
        approximator = getattr(shapiq, name)
        options = {"pairing_trick": True} if "pairing_trick" in approximator.__init__.__code__.co_varnames else {}
        classes = values_of(np.ones((1, players), bool)).shape[1]
        phi = [approximator(n=players, random_state=seed, **options).approximate(
            budget, lambda members, k=k: values_of(members)[:, k]).get_n_order_values(1) for k in range(classes)]
        return np.stack(phi, axis=1)
    return estimate


SHAPIQ = ("KernelSHAP", "UnbiasedKernelSHAP", "SVARM", "PermutationSamplingSV", "StratifiedSamplingSV")
ESTIMATORS = {"project default": project_estimator(True), "project flat": project_estimator(False),
              **{f"shapiq {name}": shapiq_estimator(name, full_game) for name in SHAPIQ},
              **{f"shapiq {name} (one row per coalition)": shapiq_estimator(name, one_row_game)
                 for name in ("KernelSHAP", "PermutationSamplingSV")}}


def pipeline_run(name, data, work_dir):
    """(folder) of the default pipeline's run on data/{train,test}_set.csv, run unless WORK_DIR/<name> has one."""
    folder = os.path.join(work_dir, name)
    if not os.path.exists(os.path.join(folder, "shap_values.npz")):
        status = train_explain.main([f"--train_csv_path={data}/train_set.csv", f"--test_csv_path={data}/test_set.csv",
                                     f"--output_dir={folder}", "--attribution_methods=", "--global_explain_rows=0",
                                     "--cpd_fraction=0"])
        if status != 0:
            raise SystemExit(f"error: the pipeline failed on {data} with status {status}")
    return folder


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", required=True, help="comma-separated NAME=FOLDER (train_set.csv, test_set.csv)")
    parser.add_argument("--work_dir", required=True, help="the pipeline's runs, one folder per set (reused)")
    parser.add_argument("--budgets", default="1,4,16", help="multiples of the default SHAP's model rows")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=5, help="explained rows per set (the run's first ones)")
    parser.add_argument("--timed_samples", type=int, default=2)
    parser.add_argument("--estimators", default=",".join(ESTIMATORS), help="comma-separated names of ESTIMATORS")
    parser.add_argument("--reference_scale", type=int, default=16,
                        help="budget of the reference where exact enumeration is out of reach (> 16 players)")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("shapiq") is None:
        print("error: bench/shapley_estimators.py needs shapiq: pip install '.[bench]'", file=sys.stderr)
        return 2
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    budgets = [int(b) for b in args.budgets.split(",")]
    names = args.estimators.split(",")
    for item in args.sets.split(","):
        name, data = item.split("=", 1)
        folder = pipeline_run(name, data, args.work_dir)
        model = load_model(os.path.join(folder, "saved_model_hybrid_explained.pth"))[0].eval()
        run = np.load(os.path.join(folder, "shap_values.npz"))
        with open(os.path.join(folder, "metrics.json")) as file:
            shap = json.load(file)["shap"]
        x = torch.from_numpy(run["inputs"]).float()[:args.samples]
        background = torch.from_numpy(run["background"]).float()
        groups = shapley.player_groups(x.shape[1], x.shape[2], shap["segments_per_channel"])
        players, permutations, subwindows = int(groups.max()) + 1, shap["permutations"], shap["subwindows"]
        exact = players <= shapley.EXACT_MAX_PLAYERS
        default_rows = 2 * permutations * (players - 1) + len(background) + 1
        print(f"\n## {name}: {x.shape[1]} x {x.shape[2]}, {players} players, {len(background)} background rows "
              f"(of {shap['background_rows_available']}), {permutations // len(background)} pairs of walks per row: "
              f"{default_rows:,} model rows per explained row at 1x; {len(x)} rows x {args.seeds} seeds; load "
              f"average {os.getloadavg()[0]:.1f}", flush=True)
        references, reference_error, start = [], [], time.process_time()
        for i in range(len(x)):
            if exact:
                memo = CountedModel(model, memo=True)
                references.append((memo, window_values(shapley.interventional_shap(
                    memo, x[i:i + 1], background, groups, method="exact"), groups)))
                reference_error.append(0.0)
            else:
                values, error = shapley.interventional_shap(
                    model, x[i:i + 1], background, groups, num_permutations=args.reference_scale * permutations,
                    seed=10_000, return_error=True)
                references.append((CountedModel(model, memo=False), window_values(values, groups)))
                reference_error.append(error[0])
        converged = ("exact (every coalition)" if exact else f"project flat at {args.reference_scale}x, its estimated "
                     f"error median {np.median(reference_error):.4f}")
        print(f"converged values: {converged}, {(time.process_time() - start) / len(x):.0f} CPU s per row\n")
        print("| estimator | budget | model rows / row | rel. L2 to converged, median (max) | the same, reference's "
              "error taken out | additivity error (median) | CPU s / row (1x) |")
        print("|---|---:|---:|---:|---:|---:|---:|", flush=True)
        for estimator in names:
            timed = CountedModel(model, memo=False)
            start = time.process_time()
            for i in range(min(args.timed_samples, len(x))):
                ESTIMATORS[estimator](timed, x[i], background, groups, default_rows, permutations, 0, subwindows)
            seconds = (time.process_time() - start) / min(args.timed_samples, len(x))
            for scale in budgets:
                distance, corrected, additivity, rows = [], [], [], []
                for i, (f, reference) in enumerate(references):
                    gap = reference.sum(0)  # v(N) - v(0) per class: the exact or the reference's additive total
                    for seed in range(args.seeds):
                        before = f.rows
                        phi = ESTIMATORS[estimator](f, x[i], background, groups, scale * default_rows,
                                                    scale * permutations, seed, subwindows)
                        rows.append(f.rows - before)
                        distance.append(np.linalg.norm(phi - reference) / np.linalg.norm(reference))
                        # the reference's own error is independent of the estimate's: take it out in quadrature
                        corrected.append(math.sqrt(max(distance[-1] ** 2 - reference_error[i] ** 2, 0.0)))
                        additivity.append(np.linalg.norm(phi.sum(0) - gap) / np.linalg.norm(gap))
                print(f"| {estimator} | {scale}x | {np.mean(rows):,.0f} | {np.median(distance):.4f} "
                      f"({np.max(distance):.4f}) | {np.median(corrected):.4f} | {np.median(additivity):.1e} | "
                      f"{seconds if scale == 1 else float('nan'):.2f} |".replace("| nan |", "|  |"), flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
