"""Speed of the project against the seed reference script, measured in one run on the same CSVs and epochs.

    python bench/speed.py                    # default data, 50 epochs, plus a synthetic 5,000 x 6 x 500 set
    python bench/speed.py --large_rows=0     # default data only

Prints per phase the seconds of the seed reference (../shared/reference/seed_train_explain.py) and of
the project, and the ratio project/reference, as the table of docs/measurements/speed.md; training throughput; peak
memory (RSS) of each process; the time of `--help`; the training loop's overhead over its bare
forward+backward+step work; and the training throughput on the default data with one core taken by
another process (a busy loop) against the same settings without it, with the project's one torch thread
and with torch's default (one per core), its threads waiting passively (as the script sets) or spinning.
Everything is measured in this one run, so on a shared machine read the ratios rather than the seconds.
The project runs with its default constants, except that early stopping is switched off so that both
train for exactly the same number of epochs.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "reference" / "seed_train_explain.py"
PHASES = ["import", "load", "train", "evaluate", "shap", "global", "gradcam", "attention", "attributions",
          "counterfactuals", "figures", "report", "total"]
PHASE_NAMES = {"shap": "SHAP", "global": "global importance", "gradcam": "Grad-CAM",
               "attributions": "other attributions", "figures": "figures (waiting for the drawing processes)"}


def run_measured(command, env=None):
    """(seconds, peak RSS in MiB, stdout) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        sys.exit(f"{' '.join(map(str, command))} exited {process.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024, stdout


def reference_phases(train_csv, test_csv, epochs, folder):
    env = {**os.environ, "SEED_TRAIN": str(train_csv), "SEED_TEST": str(test_csv), "SEED_EPOCHS": str(epochs),
           "SEED_OUT": str(folder)}
    wall, rss, stdout = run_measured([sys.executable, str(REFERENCE)], env)
    line = next(line for line in stdout.splitlines() if line.startswith("SEED imports="))
    seconds = {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)s", line)}
    phases = {"import": seconds["imports"], "train": seconds["train"], "shap": seconds["shap"],
              "gradcam": seconds["gradcam"], "attention": seconds["attn"], "total": wall}
    accuracy = re.search(r"final_test_acc=([\d.]+)", stdout).group(1)
    return phases, rss, float(accuracy)


def project_phases(train_csv, test_csv, epochs, folder, extra=(), env=None):
    import_seconds = float(subprocess.run(
        [sys.executable, "-c", "import time; t = time.perf_counter(); import train_explain, torch, shap, sklearn.metrics, "
         "matplotlib.pyplot; print(time.perf_counter() - t)"], capture_output=True, text=True, cwd=ROOT).stdout)
    wall, rss, _ = run_measured([sys.executable, "train_explain.py", f"--train_csv_path={train_csv}",
                                 f"--test_csv_path={test_csv}", f"--output_dir={folder}", f"--epochs={epochs}",
                                 f"--early_stopping_patience={epochs}", *extra], env)
    metrics = json.loads((Path(folder) / "metrics.json").read_text())
    return {"import": import_seconds, **metrics["timings_s"], "total": wall}, rss, metrics


def help_seconds():
    return min(run_measured([sys.executable, "train_explain.py", "--help"])[0] for _ in range(3))


def training_loop_overhead(train_csv, epochs=20):
    """Seconds of train_explain.train_epoch against a bare loop doing the same forward+backward+step work."""
    sys.path.insert(0, str(ROOT))
    import torch

    import train_explain
    from data_loader import CustomDataset, fit_normalization, normalize, read_train_test
    from hybrid_explain.model import build_model

    torch.set_num_threads(1)  # as the project trains (threads.py)
    train, _ = read_train_test(train_csv, train_csv)
    data = CustomDataset(normalize(train.X, fit_normalization(train.X)), train.y)
    config = train_explain.config_from_args([])
    hp = train_explain.model_hyperparameters(config.model, train)

    def setup():
        torch.manual_seed(0)
        model = build_model(hp)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return model, optimizer, scheduler, torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    class Silent:
        def update(self, n):
            pass

    def pipeline_loop(model, optimizer, scheduler, criterion, generator):
        train_explain.train_epoch(model, data, optimizer, scheduler, criterion, config.training.batch_size, generator, Silent())

    def bare_loop(model, optimizer, scheduler, criterion, generator):
        model.train()
        for idx in train_explain.batch_indices(len(data), config.training.batch_size, generator):
            x, y = data[idx]
            loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def seconds(loop):
        state = setup()
        generator = torch.Generator().manual_seed(0)
        loop(*state, generator)  # warm-up: the first pass allocates and picks kernels
        start = time.perf_counter()
        for _ in range(epochs):
            loop(*state, generator)
        return time.perf_counter() - start

    # Best of three each, so a burst of other load on the machine does not decide the ratio.
    loop = min(seconds(pipeline_loop) for _ in range(3))
    bare = min(seconds(bare_loop) for _ in range(3))
    return loop, bare


def synthetic_csvs(folder, rows, channels=6, length=500, classes=4, seed=0):
    """A large data set of the project's format: class k has a bump on channel k % channels."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    paths = []
    for part, n in (("train", rows), ("test", max(rows // 5, classes))):
        y = rng.integers(0, classes, n)
        X = rng.normal(0, 1, (n, channels, length)).astype(np.float32)
        X[np.arange(n), y % channels, 200:230] += 2.0
        frame = pd.DataFrame(X.reshape(n, -1), columns=[f"ch{c}_t{t}" for c in range(channels) for t in range(length)])
        frame.insert(0, "label", [f"class{k}" for k in y])
        path = Path(folder) / f"{part}.csv"
        frame.to_csv(path, index=False, float_format="%.4f")
        paths.append(path)
    return paths


def compare(name, train_csv, test_csv, epochs, folder):
    """Both scripts on one data set: (phases of the reference, of the project), after printing the other figures."""
    reference, reference_rss, reference_acc = reference_phases(train_csv, test_csv, epochs, Path(folder) / "seed")
    project, project_rss, metrics = project_phases(train_csv, test_csv, epochs, Path(folder) / "project")
    rows = len(open(train_csv).read().splitlines()) - 1
    print(f"\n{name}: {rows} training rows, {epochs} epochs, {os.cpu_count()} CPU cores")
    print(f"training throughput: reference {rows * epochs / reference['train']:.0f} samples/s, project "
          f"{rows * epochs / project['train']:.0f} samples/s (its train phase also scores the training rows "
          "in eval mode after every epoch)")
    print(f"peak RSS: reference {reference_rss:.0f} MiB, project {project_rss:.0f} MiB")
    print(f"test accuracy: reference {reference_acc:.3f} (last epoch), project {metrics['test_accuracy']:.3f}; "
          f"SHAP additivity error: project {metrics['shap']['additivity_rel_error_median']:.2g} "
          f"({metrics['shap']['method']}), reference DeepExplainer fails shap's check")
    return reference, project


def seconds_cell(value):
    return "–" if value is None else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def ratio_cell(reference, project, phase):
    if reference is None or project is None or not reference:
        return ""
    text = f"{project / reference:.2f}×"
    return f"**{text}**" if phase in ("train", "shap", "total") else text


def phase_table(results):
    """The table of docs/measurements/speed.md: per phase seed s, project s and their ratio, for each data set side by side."""
    header = ["phase"] + [f"{name}: {column}" if k == 0 else column for name, _ in results
                          for k, column in enumerate(["seed s", "project s", "ratio"])]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    for phase in PHASES:
        cells = [f"**{phase}**" if phase == "total" else PHASE_NAMES.get(phase, phase)]
        for _, (reference, project) in results:
            r, p = reference.get(phase), project.get(phase)
            cells += [seconds_cell(r), seconds_cell(p), ratio_cell(r, p, phase)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def busy_loop():
    """A process that keeps one core busy until it is killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def busy_core_throughput(folder, epochs=50):
    """Training throughput (samples/s) on the default data, quiet and with one core taken by a busy loop, for the
    project's automatic threads (one) and torch's default (one per core), whose OpenMP threads wait sleeping
    (OMP_WAIT_POLICY=PASSIVE, which the script sets) or spinning (ACTIVE, set in the child's environment: OpenMP
    reads it when torch loads it)."""
    quick = ["--attribution_methods=", "--num_samples_to_explain=1"]
    cores = os.cpu_count()
    settings = [("1 torch thread (automatic)", [], {}),
                (f"{cores} torch threads (torch's default), OMP_WAIT_POLICY=PASSIVE (the script's)",
                 [f"--threads={cores}"], {}),
                (f"{cores} torch threads, OMP_WAIT_POLICY=ACTIVE (waiting threads spin)", [f"--threads={cores}"],
                 {"OMP_WAIT_POLICY": "ACTIVE"})]
    rows = len(open(ROOT / "train_set.csv").read().splitlines()) - 1
    result = {}
    for busy in (False, True):
        loop = busy_loop() if busy else None
        try:
            for label, flags, env in settings:
                phases, _, _ = project_phases(ROOT / "train_set.csv", ROOT / "test_set.csv", epochs,
                                              Path(folder) / "busy", [*quick, *flags], {**os.environ, **env})
                result[label, busy] = rows * epochs / phases["train"]
        finally:
            if loop:
                loop.kill()
                loop.wait()
    lines = [f"| training, default data, {epochs} epochs | quiet samples/s | one core busy samples/s | busy / quiet |",
             "| --- | ---: | ---: | ---: |"]
    for label, _, _ in settings:
        quiet, busy = result[label, False], result[label, True]
        lines.append(f"| {label} | {quiet:.0f} | {busy:.0f} | {busy / quiet:.2f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--large_rows", type=int, default=5000, help="rows of the synthetic set; 0 skips it")
    parser.add_argument("--large_epochs", type=int, default=2)
    parser.add_argument("--busy_epochs", type=int, default=50, help="epochs of the busy-core runs; 0 skips them")
    args = parser.parse_args()
    print(f"`python train_explain.py --help`: {help_seconds():.2f} s (best of 3)")
    loop, bare = training_loop_overhead(ROOT / "train_set.csv")
    print(f"training loop: {loop:.2f} s for 20 epochs against {bare:.2f} s of bare forward+backward+step "
          f"({100 * (loop / bare - 1):+.0f} %)")
    with tempfile.TemporaryDirectory() as folder:
        results = [("default data", compare("default data (BasicMotions)", ROOT / "train_set.csv",
                                            ROOT / "test_set.csv", args.epochs, folder))]
        if args.large_rows:
            train_csv, test_csv = synthetic_csvs(folder, args.large_rows)
            data_mib = args.large_rows * 6 * 500 * 4 / 2**20
            print(f"\nsynthetic set: {args.large_rows} x 6 x 500 float32 = {data_mib:.0f} MiB of training data")
            results.append((f"{args.large_rows:,} × 6 × 500", compare("synthetic large set", train_csv, test_csv,
                                                                      args.large_epochs, Path(folder) / "large")))
        print("\n" + phase_table(results))
        if args.busy_epochs:
            print("\n" + busy_core_throughput(folder, args.busy_epochs))


if __name__ == "__main__":
    main()
