"""How far would an ensemble of default models go on the sets with published results?

    python bench/ensemble_ceiling.py                  # ../shared/data and ../shared/data/dev/*, 5 models each
    python bench/ensemble_ceiling.py DIR [DIR ...] --models=5

The pipeline explains one model, so the project does not ship an ensemble; this bench measures what
the accuracy target would cost if it did. For each data set it runs the whole default pipeline with
seeds 0 .. N-1 (as bench/accuracy.py does), reloads each run's checkpoint with load_model(), and
scores the test set with the single models and with ensembles of the first 3 and N models (softmax
probabilities averaged, InceptionTime's rule). Prints a markdown table beside the best published
accuracy per set, and the training seconds an ensemble costs.
"""
import argparse
import glob
import os
import statistics
import sys
import tempfile

import torch

from accuracy import REFERENCES, ROOT, SHARED, dataset_name, markdown_table, run_pipeline

sys.path.insert(0, ROOT)
from data_loader import normalize, read_train_test  # noqa: E402
from hybrid_explain.model import predict_logits  # noqa: E402
from hybrid_explain.checkpoint import load_model
from train_explain import LABEL_COLUMN  # noqa: E402


def test_probabilities(output_dir, test) -> torch.Tensor:
    """Softmax probabilities of the run's model on the test table, normalized as its checkpoint says."""
    model, checkpoint = load_model(os.path.join(output_dir, "saved_model_hybrid_explained.pth"))
    return predict_logits(model, torch.from_numpy(normalize(test.X, checkpoint["normalization"]))).softmax(1)


def accuracy(probabilities, y) -> float:
    return (probabilities.argmax(1) == y).float().mean().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*", help="directories with train_set.csv and test_set.csv")
    parser.add_argument("--models", type=int, default=5, help="models (seeds 0 .. N-1) per data set (default 5)")
    args = parser.parse_args()
    datasets = args.datasets or [SHARED] + sorted(glob.glob(os.path.join(SHARED, "dev", "*", "")))
    sizes = sorted({min(3, args.models), args.models})

    rows, columns = [], {"single": [], **{k: [] for k in sizes}, "best": []}
    for directory in datasets:
        directory, name = os.path.abspath(directory), dataset_name(directory)
        _, test = read_train_test(os.path.join(directory, "train_set.csv"), os.path.join(directory, "test_set.csv"),
                                  LABEL_COLUMN)
        y = torch.as_tensor(test.y)
        probabilities, train_seconds = [], []
        for seed in range(args.models):
            with tempfile.TemporaryDirectory(prefix="bench_ensemble_") as out:
                metrics, _ = run_pipeline(directory, seed, [], out)
                p = test_probabilities(out, test)
            probabilities.append(p)
            train_seconds.append(metrics["timings_s"]["train"])
            print(f"{name} seed {seed}: accuracy {accuracy(p, y):.4f}", file=sys.stderr, flush=True)
        singles = [accuracy(p, y) for p in probabilities]
        ensembles = {k: accuracy(torch.stack(probabilities[:k]).mean(0), y) for k in sizes}
        best = REFERENCES.get(name, (None, None, "-"))[1]
        columns["single"].append(statistics.mean(singles))
        for k in sizes:
            columns[k].append(ensembles[k])
        columns["best"].append(best)
        rows.append([name, f"{statistics.mean(singles):.3f} (" + "/".join(f"{a:.3f}" for a in singles) + ")",
                     *(f"{ensembles[k]:.3f}" for k in sizes), f"{sum(train_seconds):.0f}",
                     "-" if best is None else f"{best:.3f}"])
    known = [i for i, best in enumerate(columns["best"]) if best is not None]
    if known:
        mean = lambda values: f"{statistics.mean(values[i] for i in known):.3f}"  # noqa: E731
        rows.append([f"**mean of the {len(known)} sets with published results**", mean(columns["single"]),
                     *(mean(columns[k]) for k in sizes), "", mean(columns["best"])])

    header = ["data set", f"single model (mean; seeds 0-{args.models - 1})",
              *(f"ensemble of {k}" for k in sizes), f"train s of all {args.models}", "best published"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
