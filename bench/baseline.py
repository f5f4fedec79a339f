"""The baseline beside the network, and the network distilled from it (BASELINE, DISTILL; docs/measurements/baseline.md).

    python bench/aeon_sets.py                                    # bench/data/<set>/ (once)
    python bench/baseline.py bench/data/ArrowHead bench/data/UnitTest --seeds=1
    python bench/baseline.py DIR [DIR ...] --seeds=2 --extra="--distill_weight=0.7"
    python bench/baseline.py DIR [DIR ...] --keep=/tmp/baseline_runs      # resumes; rebuilds the table from kept runs

Per (data set, seed), two whole runs of train_explain.py on the set's own split (scoring only,
NUM_SAMPLES_TO_EXPLAIN=0, so that explanations add no time): the default run with BASELINE=minirocket, which gives
the network alone and the MiniRocket classifier on the same rows (its accuracy and seconds are in metrics.json), and
the same run with DISTILL=True, the network distilled from MiniRocket's out-of-fold probabilities. Seconds are
metrics.json's phase timings of the same runs: `baseline` (MiniRocket fit + test predictions), `train` (with
DISTILL, it includes the teacher's cross-fitting). A markdown table goes to stdout: mean ± sd over seeds of each
accuracy, the teacher's out-of-fold accuracy on the training rows, the distilled minus the plain network per seed,
and the share of test rows where the network (alone, distilled) predicts MiniRocket's class.
With --keep=FOLDER each run's metrics.json is kept as FOLDER/<set>/seed<k>_<plain|distilled>.json with its
command's flags; a run kept there with the same flags is read instead of rerun, so an interrupted bench resumes
and a table over more sets or seeds reuses the runs already made.
"""
import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile

from accuracy import dataset_name, markdown_table, mean_sd, run_pipeline


def kept_or_run(keep, name, seed, kind, directory, flags):
    """(metrics.json, shape text) of one run of the set in `directory` with `flags`: read from keep (a folder, or
    None) when the same run was kept there, else run now (and kept there)."""
    path = os.path.join(keep, name, f"seed{seed}_{kind}.json") if keep else None
    key = {"directory": os.path.abspath(directory), "seed": seed, "flags": flags}
    if path and os.path.exists(path):
        with open(path) as f:
            kept = json.load(f)
        if kept["run"] == key:
            return kept["metrics"], kept["shape"]
    with tempfile.TemporaryDirectory(prefix="bench_baseline_") as out:
        metrics, shape = run_pipeline(os.path.abspath(directory), seed, flags, os.path.join(out, kind))
    if path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump({"run": key, "shape": shape, "metrics": metrics}, f, indent=1)
    return metrics, shape


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", help="directories with train_set.csv and test_set.csv")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0 .. N-1 per data set (default 3)")
    parser.add_argument("--extra", default="", help="flags for both runs, e.g. \"--epochs=100\"")
    parser.add_argument("--distill_extra", default="", help="flags for the distilled run only")
    parser.add_argument("--keep", help="folder that keeps each run's metrics.json; runs kept there are reused")
    args = parser.parse_args()
    common = ["--num_samples_to_explain=0", "--baseline=minirocket", *shlex.split(args.extra)]
    rows, means = [], {"baseline": [], "network": [], "distilled": []}
    for directory in args.datasets:
        name, runs = dataset_name(directory), []
        for seed in range(args.seeds):
            plain, shape = kept_or_run(args.keep, name, seed, "plain", directory, common)
            distilled, _ = kept_or_run(args.keep, name, seed, "distilled", directory,
                                       [*common, "--distill=True", *shlex.split(args.distill_extra)])
            runs.append((plain, distilled))
            print(f"{name} seed {seed}: MiniRocket {plain['baseline']['test_accuracy']:.4f} "
                  f"({plain['timings_s']['baseline']:.1f} s), network {plain['test_accuracy']:.4f} "
                  f"(train {plain['timings_s']['train']:.1f} s), distilled {distilled['test_accuracy']:.4f} "
                  f"(train {distilled['timings_s']['train']:.1f} s), teacher out of fold "
                  f"{distilled['distillation']['teacher_out_of_fold_accuracy']:.3f}", file=sys.stderr, flush=True)
        baseline = [p["baseline"]["test_accuracy"] for p, _ in runs]
        network = [p["test_accuracy"] for p, _ in runs]
        student = [d["test_accuracy"] for _, d in runs]
        for key, values in (("baseline", baseline), ("network", network), ("distilled", student)):
            means[key].append(statistics.mean(values))
        rows.append([name, shape, mean_sd(baseline), mean_sd(network), mean_sd(student),
                     " / ".join(f"{d - n:+.3f}" for n, d in zip(network, student)),
                     f"{statistics.mean(d['distillation']['teacher_out_of_fold_accuracy'] for _, d in runs):.3f}",
                     " / ".join(f"{statistics.mean(run['baseline']['same_prediction'] for run in kind):.3f}"
                                for kind in zip(*runs)),
                     f"{statistics.mean(p['timings_s']['baseline'] for p, _ in runs):.1f}",
                     f"{statistics.mean(p['timings_s']['train'] for p, _ in runs):.0f}",
                     f"{statistics.mean(d['timings_s']['train'] for _, d in runs):.0f}",
                     f"{statistics.mean(p['timings_s']['total'] for p, _ in runs):.0f}"])
    rows.append([f"**mean of {len(rows)} sets**", "", *(f"{statistics.mean(means[k]):.3f}" for k in means),
                 f"{statistics.mean(means['distilled']) - statistics.mean(means['network']):+.3f}", "", "", "", "", "", ""])
    print(f"flags of both runs: {' '.join(common)}; distilled run adds --distill=True {args.distill_extra}\n")
    print(markdown_table(["data set", "shape (train rows×channels×length, classes)",
                          f"MiniRocket (mean ± sd, {args.seeds} seeds)", "network alone", "network distilled",
                          "distilled − alone, per seed", "teacher out-of-fold accuracy (training rows)",
                          "same class as MiniRocket (test rows), alone / distilled",
                          "MiniRocket s", "train s, alone", "train s, distilled", "whole run s, alone"], rows))


if __name__ == "__main__":
    main()
