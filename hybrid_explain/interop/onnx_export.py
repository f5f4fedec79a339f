"""A checkpoint as an ONNX file, for services without PyTorch (needs onnx and onnxruntime: pip install
'train-explain[export]').

    python onnx_export.py outputs/saved_model_hybrid_explained.pth            # -> outputs/model.onnx
    python onnx_export.py outputs/saved_model_hybrid_explained.pth other.onnx
    from api import export_onnx; export_onnx("outputs/saved_model_hybrid_explained.pth")

The graph takes raw series, input "series" (batch, channels, length) float32, not normalized: the checkpoint's
normalization is inside the graph (and stated in the metadata). It returns "logits" and "probabilities"
(batch, classes), columns in the metadata's class_names order. Batch and length axes are dynamic: a series
shorter than the training length is scored at its own length, with the same logits as PyTorch's masked path,
and the rows of one call share a length (score rows of different lengths in groups of one length). The
shortest series is the metadata's min_length (the pooling factors' product); pad a shorter one with the training
mean up to it, as the PyTorch model does. An ensemble is one graph, the mean of its members' logits. After
writing, the file is checked with onnxruntime against PyTorch (logits within 1e-4).
"""
import json
import math
import os
import sys
import warnings

import numpy as np

TOLERANCE = 1e-4  # largest |ONNX logit - PyTorch logit| accepted by the check after export
OPSET = 17


class ExportError(ValueError):
    """The export cannot be done or its check failed; the message is one line."""


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ExportError(f"ONNX export needs {module}: pip install 'train-explain[export]' "
                          "(or pip install 'onnx>=1.16,<2' 'onnxruntime>=1.18,<2')") from None


def traceable_attention(attention):
    """nn.MultiheadAttention's eval-mode self-attention (batch_first, no mask, per-head weights), with the same
    parameters, written so that the tracer keeps the length symbolic: torch's own forward reshapes with the traced
    length as a constant, so its ONNX graph reads only series of the length it was traced at."""
    import math

    import torch

    class Attention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = attention

        def forward(self, query, key, value, **ignored):
            inner, heads = self.inner, self.inner.num_heads
            batch, width = query.shape[0], query.shape[2]
            q, k, v = torch.nn.functional.linear(query, inner.in_proj_weight, inner.in_proj_bias).chunk(3, dim=-1)
            q, k, v = (part.reshape(batch, -1, heads, width // heads).transpose(1, 2) for part in (q, k, v))
            weights = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(width // heads), dim=-1)  # (N, H, T, T)
            attended = (weights @ v).transpose(1, 2).reshape(batch, -1, width)
            return inner.out_proj(attended), weights

    return Attention()


def normalized_model(model, normalization):
    """torch module: raw series (N, C, L) -> (logits, probabilities), the normalization applied inside; a copy of
    the model whose attention modules are traceable_attention's."""
    import copy

    import torch

    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.MultiheadAttention):
                setattr(parent, name, traceable_attention(child))

    class Normalized(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model
            self.register_buffer("mean", torch.tensor(normalization["mean"], dtype=torch.float32)[None, :, None])
            self.register_buffer("std", torch.tensor(normalization["std"], dtype=torch.float32)[None, :, None])

        def forward(self, series):
            logits = self.net((series - self.mean) / self.std)
            return logits, logits.softmax(dim=1)

    return Normalized().eval()


def export_onnx(checkpoint_path, out_path=None, check_rows: int = 64) -> dict:
    """Write the checkpoint's model as ONNX (default: model.onnx beside the checkpoint) and check it with
    onnxruntime on check_rows rows (the checkpoint's SHAP background, de-normalized, else random rows).
    Returns {"path", "bytes", "max_abs_logit_difference", "rows_checked"}."""
    import torch

    from hybrid_explain.checkpoint import load_model

    onnx = _require("onnx")
    _require("onnxruntime")
    model, checkpoint = load_model(checkpoint_path)
    out_path = out_path or os.path.join(os.path.dirname(os.fspath(checkpoint_path)), "model.onnx")
    normalization = checkpoint["normalization"]
    wrapped = normalized_model(model, normalization)
    rows = raw_rows(checkpoint, check_rows)
    with warnings.catch_warnings():  # the TorchScript exporter's notes on deprecation and traced shapes
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (torch.from_numpy(rows[:2]),), out_path, dynamo=False, opset_version=OPSET,
                          input_names=["series"], output_names=["logits", "probabilities"],
                          dynamic_axes={"series": {0: "batch", 2: "length"}, "logits": {0: "batch"},
                                        "probabilities": {0: "batch"}})
    graph = onnx.load(out_path)
    metadata = {"class_names": checkpoint["class_names"], "channel_names": checkpoint["channel_names"],
                "feature_columns": checkpoint["feature_columns"],
                "sequence_length": checkpoint["hyperparameters"]["sequence_length"],
                "min_length": min_length(model, checkpoint["hyperparameters"]["sequence_length"]),
                "normalization": normalization,
                "input": "raw series (batch, channels, length) float32, min_length <= length <= "
                         "sequence_length, one length per call; normalized inside the graph as (x - mean) / std "
                         "per channel",
                "version": checkpoint.get("version", "")}
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save(graph, out_path)
    difference = check(out_path, wrapped, rows)
    if difference > TOLERANCE:
        raise ExportError(f"{out_path}: onnxruntime's logits differ from PyTorch's by up to {difference:.2g}, more "
                          f"than {TOLERANCE:g}; this torch/onnxruntime pair does not export the model faithfully")
    return {"path": out_path, "bytes": os.path.getsize(out_path), "max_abs_logit_difference": difference,
            "rows_checked": len(rows)}


def min_length(model, sequence_length: int) -> int:
    """The shortest series the graph reads: the conv blocks' pooling factors' product (at most the training
    length)."""
    return min(sequence_length, math.prod(model.pool_factors))


def raw_rows(checkpoint, count: int) -> np.ndarray:
    """(count, C, L) float32 raw rows: the checkpoint's background rows de-normalized (full-length ones), else
    normal noise around the training mean."""
    mean = np.asarray(checkpoint["normalization"]["mean"], dtype=np.float32)[:, None]
    std = np.asarray(checkpoint["normalization"]["std"], dtype=np.float32)[:, None]
    hp = checkpoint["hyperparameters"]
    rows = np.random.default_rng(0).normal(size=(count, hp["input_channels"], hp["sequence_length"]))
    background = checkpoint.get("background")
    if background is not None:
        lengths = checkpoint.get("background_lengths")
        full = background.numpy() if lengths is None else background.numpy()[lengths.numpy() >= hp["sequence_length"]]
        rows = np.concatenate([full, rows])[:count]
    return (rows * std + mean).astype(np.float32)


def check(path, wrapped, rows: np.ndarray) -> float:
    """Largest |logit difference| between onnxruntime on path and the PyTorch module on rows."""
    import onnxruntime
    import torch

    session = onnxruntime.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    logits = session.run(["logits"], {"series": rows})[0]
    with torch.inference_mode():
        expected = wrapped(torch.from_numpy(rows))[0].numpy()
    return float(np.abs(logits - expected).max())


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or len(argv) > 2:
        print(__doc__.split("\n\n")[1])
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    from hybrid_explain.checkpoint import CheckpointError

    try:
        result = export_onnx(*argv)
    except (ExportError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {result['path']} ({result['bytes'] / 1e6:.2f} MB); onnxruntime's logits within "
          f"{result['max_abs_logit_difference']:.1g} of PyTorch's on {result['rows_checked']} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
