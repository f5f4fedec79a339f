"""The ONNX export (the optional extra `export`): logits of onnxruntime within 1e-4 of PyTorch's, dynamic batch
and length axes, the normalization inside the graph and in its metadata, an ensemble as one graph, the one-line errors."""
import json
import sys

import numpy as np
import pytest
import torch

from hybrid_explain.interop.estimator import HybridClassifier
from hybrid_explain.interop.onnx_export import TOLERANCE, ExportError, export_onnx, main

TINY = {"epochs": 1, "cnn_channels": 8, "lstm_hidden_size": 8, "attention_heads": 2}


def saved(tmp_path, **settings):
    rng = np.random.default_rng(0)
    X = rng.normal(5.0, 2.0, size=(18, 2, 40))  # far from normalized: the graph must normalize
    y = np.repeat(["a", "b", "c"], 6)
    clf = HybridClassifier(**{**TINY, **settings}).fit(X, y)
    clf.save(tmp_path / "model.pth")
    return clf, X


@pytest.mark.parametrize("ensemble_size, front_end", [(1, "plain"), (2, "plain"), (1, "inception")])
def test_onnxruntime_gives_the_logits_of_pytorch(tmp_path, ensemble_size, front_end):
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    clf, X = saved(tmp_path, ensemble_size=ensemble_size, conv_front_end=front_end)
    result = export_onnx(tmp_path / "model.pth")
    assert result["path"] == str(tmp_path / "model.onnx") and result["max_abs_logit_difference"] <= TOLERANCE
    session = onnxruntime.InferenceSession(result["path"], providers=["CPUExecutionProvider"])
    raw = np.random.default_rng(1).normal(5.0, 2.0, size=(7, 2, 40)).astype(np.float32)
    for batch in (raw, raw[:1]):  # the batch axis is dynamic
        logits, probabilities = session.run(None, {"series": batch})
        expected = torch.log_softmax(torch.as_tensor(logits), 1).exp().numpy()
        assert np.abs(probabilities - expected).max() < 1e-5
        assert np.abs(probabilities - clf.predict_proba(batch)).max() < 1e-4
    metadata = {p.key: p.value for p in onnx.load(result["path"]).metadata_props}
    assert json.loads(metadata["class_names"]) == ["a", "b", "c"]
    assert json.loads(metadata["normalization"]) == clf.checkpoint_["normalization"]
    if ensemble_size > 1:  # one graph: members' weights inside one file, no second model
        assert len(onnx.load(result["path"]).graph.input) == 1
    # the length axis is dynamic: shorter rows give PyTorch's masked path's probabilities (the list form pads)
    for length in (33, int(metadata["min_length"])):
        logits, probabilities = session.run(None, {"series": raw[:, :, :length]})
        assert np.abs(probabilities - clf.predict_proba([row[:, :length] for row in raw])).max() < 1e-4


def test_the_command_line_writes_beside_the_checkpoint_or_says_what_is_wrong(tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    saved(tmp_path)
    assert main([str(tmp_path / "model.pth"), str(tmp_path / "other.onnx")]) == 0
    assert (tmp_path / "other.onnx").is_file() and "within" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.pth")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_without_onnx_the_error_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ExportError, match=r"pip install 'train-explain\[export\]'") as error:
        export_onnx(tmp_path / "model.pth")
    assert "\n" not in str(error.value)
