"""Scoring throughput of the exported model: onnxruntime against PyTorch on the CPU, measured in one run.

    python bench/onnx_speed.py                          # the default network, 2 channels x 140 steps
    python bench/onnx_speed.py --channels=6 --length=500 --threads=1

Builds the default network (the constants' defaults: CNN_CHANNELS=32, LSTM_HIDDEN_SIZE=64, one LSTM layer,
4 heads, NORMALIZATION=per_series with the amplitude inputs; weights as initialised, since speed does not depend
on their values) as a checkpoint, exports it with
api.export_onnx (which also checks its logits against PyTorch's), then scores the same raw rows at each batch size
with both: PyTorch as api.predict does (normalize, then model.predict_logits under inference_mode) and an
onnxruntime session (normalization inside the graph), each with the same number of threads. The two alternate
repetition by repetition and the median of the repetitions is kept, so that a busy shared machine slows both alike;
read the ratio rather than the rows/s. Prints the file size, the largest logit difference, and per batch size the
rows/s of each and the ratio onnxruntime / PyTorch, as JSON too (--json).
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def checkpoint_of_default_model(channels: int, length: int, classes: int, path: Path) -> None:
    import torch

    from hybrid_explain.model import build_model

    from hybrid_explain.checkpoint import checkpoint_dict

    hyperparameters = {"input_channels": channels, "sequence_length": length, "num_classes": classes,
                       "cnn_channels": 32, "lstm_hidden_size": 64, "lstm_layers": 1, "attention_heads": 4,
                       "dropout": 0.1, "kernel_size": 7, "min_pooled_length": 16, "max_pooled_length": 128,
                       "normalization": "per_series", "amplitude_features": True, "length_feature": False}
    torch.manual_seed(0)
    model = build_model(hyperparameters).eval()
    channel_names = [f"ch{c}" for c in range(channels)]
    columns = [f"{name}_t{t}" for name in channel_names for t in range(length)]
    normalization = {"mean": [1.0] * channels, "std": [2.0] * channels}
    torch.save(checkpoint_dict(model, hyperparameters, [f"class_{k}" for k in range(classes)], channel_names,
                               columns, normalization, 0, float("nan"), float("nan")), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--length", type=int, default=140)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads (default 1)")
    parser.add_argument("--batches", default="1,64,512", help="batch sizes, comma separated")
    parser.add_argument("--rows", type=int, default=2048, help="rows scored per repetition (at least one batch)")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import onnxruntime
    import torch

    from api import export_onnx
    from data_loader import normalize
    from hybrid_explain.model import predict_logits
    from hybrid_explain.checkpoint import load_model

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pth"
        checkpoint_of_default_model(args.channels, args.length, args.classes, path)
        exported = export_onnx(path)
        model, checkpoint = load_model(path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = args.threads
        session = onnxruntime.InferenceSession(exported["path"], options, providers=["CPUExecutionProvider"])
        shape = (args.rows, args.channels, args.length)
        rows = np.random.default_rng(0).normal(1.0, 2.0, size=shape).astype(np.float32)

        def pytorch(data, batch):
            for start in range(0, len(data), batch):
                predict_logits(model, normalize(data[start:start + batch], checkpoint["normalization"]), batch)

        def ort(data, batch):
            for start in range(0, len(data), batch):
                session.run(["logits"], {"series": data[start:start + batch]})

        results = {"file_bytes": exported["bytes"], "max_abs_logit_difference": exported["max_abs_logit_difference"],
                   "threads": args.threads, "shape": [args.channels, args.length], "batches": {}}
        for batch in [int(b) for b in args.batches.split(",")]:
            count = max(batch, min(len(rows), 256 if batch == 1 else len(rows)))  # batch 1: fewer rows, same rate
            seconds = {"pytorch": [], "onnxruntime": []}
            for scorer in (pytorch, ort):  # one untimed pass each: allocations, thread pools
                scorer(rows[:batch], batch)
            for _ in range(args.repetitions):
                for name, scorer in (("pytorch", pytorch), ("onnxruntime", ort)):
                    start = time.perf_counter()
                    scorer(rows[:count], batch)
                    seconds[name].append(time.perf_counter() - start)
            rate = {name: count / float(np.median(s)) for name, s in seconds.items()}
            results["batches"][batch] = {"pytorch_rows_per_s": rate["pytorch"],
                                         "onnxruntime_rows_per_s": rate["onnxruntime"],
                                         "ratio_onnxruntime_over_pytorch": rate["onnxruntime"] / rate["pytorch"]}
    print(f"model.onnx: {results['file_bytes'] / 1e6:.2f} MB, logits within {results['max_abs_logit_difference']:.1g} "
          f"of PyTorch; {args.channels} channels x {args.length} steps, {args.threads} thread(s)")
    print(f"{'batch':>6} {'PyTorch rows/s':>15} {'onnxruntime rows/s':>19} {'ratio':>6}")
    for batch, row in results["batches"].items():
        print(f"{batch:>6} {row['pytorch_rows_per_s']:>15,.0f} {row['onnxruntime_rows_per_s']:>19,.0f} "
              f"{row['ratio_onnxruntime_over_pytorch']:>6.2f}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
