"""Trust in each prediction, measured (docs/trust.md): calibration, conformal prediction sets and out-of-distribution
scores of models trained with train_explain's own code, on data sets given as directories.

    python bench/trust.py ../shared/data ../shared/data/dev/* --seeds=3 --extra="--epochs=100"

For every data set (a directory with train_set.csv and test_set.csv) and seed, one model is trained with a
validation split (--val_fraction, default 0.25: the held-out rows temperature scaling and the conformal threshold
are fitted on, as in the pipeline) and scored on the test file:
  calibration   ECE (15 bins) of the test rows before and after temperature scaling, and the temperature
  conformal     coverage and mean set size on the test rows at --level, for LAC, APS (randomised) and
                class-conditional LAC, each calibrated on the held-out rows
  ood           AUROC of each OOD score (mahalanobis, energy, knn) of the test rows against (b) the rows of another
                data set of the list brought to this one's shape (channels repeated or cut, each row's own steps
                resampled linearly to the length), (c) the test rows corrupted: noise (Gaussian, at each channel's
                training standard deviation, added), flat (channel 0 held at its first value), spikes (5 % of the
                steps of every channel, at least one, moved by 5 training standard deviations), reversed (time
                reversed within each row's length); and the share of in-distribution test rows flagged at the
                1 % training-row threshold (the false alarm rate on new rows)
and a second model trained without the last class gives (a): AUROC of that class's test rows against the others'.
Each (set, seed) trains on one torch thread; --jobs measures that many of them at once, in processes.
"""
import argparse
import concurrent.futures
import json
import os
import shlex
import statistics
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OOD_METHODS = ("mahalanobis", "energy", "knn")
CORRUPTIONS = ("noise", "flat", "spikes", "reversed")


def trained(train, config, seed, keep_classes=None):
    """(model, state, normalization) trained on train's rows (of keep_classes only, when given), with the trust
    state fitted on them as the pipeline fits it."""
    import torch

    import train_explain as te
    from hybrid_explain.trust import state

    rows = np.arange(len(train.y)) if keep_classes is None else np.flatnonzero(np.isin(train.y, keep_classes))
    y = np.unique(train.y[rows], return_inverse=True)[1] if keep_classes is not None else train.y
    X, lengths = train.X[rows], train.lengths[rows]
    normalization = te.fit_normalization(X, None if train.filled is None else train.filled[rows])
    x = torch.from_numpy(te.normalize(X, normalization, lengths))
    class_names = [train.class_names[k] for k in np.unique(train.y[rows])]
    table = type("Layout", (), {"X": X, "lengths": lengths, "class_names": class_names,
                                "feature_names": train.feature_names})
    fit_idx, val_idx = te.stratified_split(y, config["VAL_FRACTION"], seed, class_names)
    torch.manual_seed(seed)
    model = te.build_model(te.model_hyperparameters(config, table))
    fit = te.CustomDataset(x[fit_idx], y[fit_idx], lengths[fit_idx])
    val = te.CustomDataset(x[val_idx], y[val_idx], lengths[val_idx])
    resume = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"bench_trust_{os.getpid()}.pt")
    model.load_state_dict(te.train_model(model, fit, val, config, resume, log=lambda message: None)[1])
    os.remove(resume)
    return model.eval(), state.from_model(model, x, y, lengths, val_idx, seed), normalization


def scores_of(model, fitted, X, lengths, normalization):
    """(calibrated probabilities, {OOD method: scores}) of raw rows X."""
    import train_explain as te
    from hybrid_explain.trust import calibration, representation, state

    logits, features = representation.logits_and_features(model, te.normalize(X, normalization, lengths), lengths)
    logits, features = logits.double().numpy(), features.double().numpy()
    return (calibration.scaled_probabilities(logits, fitted["temperature"]),
            {method: state.ood_scores(fitted, logits, features, method) for method in OOD_METHODS}, logits)


def reshaped(other, channels, length):
    """other's test rows brought to (channels, length): channels repeated or cut, each row's own steps resampled."""
    X = np.empty((len(other.X), channels, length))
    for i, row in enumerate(other.X):
        own = row[:, :other.lengths[i]]
        picked = own[np.arange(channels) % own.shape[0]]
        grid = np.linspace(0, own.shape[1] - 1, length)
        X[i] = [np.interp(grid, np.arange(own.shape[1]), values) for values in picked]
    return X, np.full(len(X), length, dtype=np.int64)


def corrupted(X, lengths, kind, std, rng):
    """A copy of rows X (N, C, L) with lengths, corrupted as the module docstring says; std (C,) training std."""
    X = X.copy()
    for i, n in enumerate(lengths):
        if kind == "noise":
            X[i, :, :n] += rng.normal(0, 1, (X.shape[1], n)) * std[:, None]
        elif kind == "flat":
            X[i, 0, :n] = X[i, 0, 0]
        elif kind == "spikes":
            for c in range(X.shape[1]):
                steps = rng.choice(n, max(1, int(0.05 * n)), replace=False)
                X[i, c, steps] += 5 * std[c] * rng.choice([-1, 1], len(steps))
        elif kind == "reversed":
            X[i, :, :n] = X[i, :, :n][:, ::-1]
    return X


def measure(directory, other, seed, extra, level):
    sys.path.insert(0, ROOT)
    import torch

    import train_explain as te
    from hybrid_explain.trust import calibration, conformal, ood

    torch.set_num_threads(1)
    config = te.config_from_args([f"--val_fraction={0.25}", *extra, f"--seed={seed}"])
    train, test = te.read_train_test(os.path.join(directory, "train_set.csv"), os.path.join(directory, "test_set.csv"))
    model, fitted, normalization = trained(train, config, seed)
    probabilities, scores, logits = scores_of(model, fitted, test.X, test.lengths, normalization)
    result = {"held_out_rows": fitted["held_out_rows"], "temperature": fitted["temperature"],
              "accuracy": float((probabilities.argmax(1) == test.y).mean()),
              "ece_before": calibration.expected_calibration_error(calibration.scaled_probabilities(logits, 1.0), test.y),
              "ece_after": calibration.expected_calibration_error(probabilities, test.y)}
    held_probabilities = calibration.scaled_probabilities(fitted["held_out_logits"].double().numpy(),
                                                          fitted["temperature"])
    held_y = fitted["held_out_labels"].numpy()
    rng = np.random.default_rng(seed)
    for score in ("lac", "aps"):
        noise_held, noise_test = rng.random(len(held_y)), rng.random(len(test.y))
        limit = conformal.threshold(conformal.true_class_scores(held_probabilities, held_y, score, noise_held), level)
        result[score] = conformal.coverage_and_size(conformal.prediction_sets(probabilities, limit, score, noise_test),
                                                    test.y)
    limits = conformal.class_thresholds(conformal.true_class_scores(held_probabilities, held_y), held_y,
                                        len(train.class_names), level)
    result["class_lac"] = conformal.coverage_and_size(conformal.prediction_sets(probabilities, limits), test.y)
    std = np.asarray(normalization["std"])
    shifts = {kind: corrupted(test.X, test.lengths, kind, std, rng) for kind in CORRUPTIONS}
    other_train, other_test = te.read_train_test(os.path.join(other, "train_set.csv"),
                                                 os.path.join(other, "test_set.csv"))
    shifted = {"other_set": reshaped(other_test, test.X.shape[1], test.X.shape[2])}
    shifted.update({kind: (X, test.lengths) for kind, X in shifts.items()})
    result["ood"] = {}
    for name, (X, lengths) in shifted.items():
        shifted_scores = scores_of(model, fitted, X, lengths, normalization)[1]
        result["ood"][name] = {m: ood.auroc(scores[m], shifted_scores[m]) for m in OOD_METHODS}
    result["false_alarms"] = {m: float((scores[m] > ood.flag_threshold(fitted["reference_scores"][m].numpy(), 0.01))
                                       .mean()) for m in OOD_METHODS}
    # (a) a class held out from training: its test rows against the test rows of the classes trained on
    last = len(train.class_names) - 1
    model_a, fitted_a, normalization_a = trained(train, config, seed, keep_classes=list(range(last)))
    scores_a = scores_of(model_a, fitted_a, test.X, test.lengths, normalization_a)[1]
    unseen = test.y == last
    result["ood"]["held_out_class"] = {m: ood.auroc(scores_a[m][~unseen], scores_a[m][unseen]) for m in OOD_METHODS}
    return result


def name_of(directory):
    name = os.path.basename(os.path.normpath(directory))
    return "BasicMotions" if name == "data" else name


def mean(values):
    return statistics.mean(values)


def tables(results, sets, level):
    lines = ["| data set | held-out rows | accuracy | T | ECE before | ECE after | LAC coverage / size | "
             "APS coverage / size | class-cond. LAC coverage / size |", "|---|---|---|---|---|---|---|---|---|"]
    for name in sets + ["mean"]:
        runs = [r for (n, _), r in results.items() if n == name or name == "mean"]
        cell = lambda f: f"{mean([f(r) for r in runs]):.3f}"  # noqa: E731
        lines.append(f"| {name} | {cell(lambda r: r['held_out_rows'])} | {cell(lambda r: r['accuracy'])} | "
                     f"{cell(lambda r: r['temperature'])} | {cell(lambda r: r['ece_before'])} | "
                     f"{cell(lambda r: r['ece_after'])} | "
                     + " | ".join(f"{cell(lambda r: r[s]['coverage'])} / {cell(lambda r: r[s]['mean_set_size'])}"
                                  for s in ("lac", "aps", "class_lac")) + " |")
    shifts = ["held_out_class", "other_set", *CORRUPTIONS]
    lines += ["", "| data set | score | " + " | ".join(shifts) + " | false alarms on test rows |",
              "|---|---|" + "---|" * (len(shifts) + 1)]
    for name in sets + ["mean"]:
        runs = [r for (n, _), r in results.items() if n == name or name == "mean"]
        for m in OOD_METHODS:
            lines.append(f"| {name} | {m} | " + " | ".join(f"{mean([r['ood'][s][m] for r in runs]):.3f}"
                                                          for s in shifts)
                         + f" | {mean([r['false_alarms'][m] for r in runs]):.3f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", help="directories with train_set.csv and test_set.csv (at least 2)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 per data set (default 3)")
    parser.add_argument("--level", type=float, default=0.9, help="conformal level (default 0.9)")
    parser.add_argument("--extra", default="", help='flags for train_explain.py, e.g. "--epochs=100"')
    parser.add_argument("--jobs", type=int, default=1, help="data sets measured at once (default 1)")
    parser.add_argument("--json", default="", help="also write every number to this file")
    args = parser.parse_args()
    if len(args.datasets) < 2:
        parser.error("give at least two data sets: each one's shifted rows (b) come from the next")
    extra = shlex.split(args.extra)
    sets = [name_of(d) for d in args.datasets]
    tasks = {(name_of(d), seed): (d, args.datasets[(i + 1) % len(args.datasets)], seed, extra, args.level)
             for i, d in enumerate(args.datasets) for seed in range(args.seeds)}
    with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(measure, *task): key for key, task in tasks.items()}
        results = {}
        for future in concurrent.futures.as_completed(futures):
            results[futures[future]] = future.result()
            print(f"done: {futures[future][0]} seed {futures[future][1]} ({len(results)} of {len(tasks)})", flush=True)
    results = {key: results[key] for key in tasks}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({f"{n}/{s}": r for (n, s), r in results.items()}, f, indent=1)
    print(tables(results, sets, args.level))


if __name__ == "__main__":
    main()
