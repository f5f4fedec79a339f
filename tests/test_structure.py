"""The shape of the tree: library modules never import the script, one window formula everywhere, and the
three bugs the old shape caused (a library error that escaped the one-line rule, attention weights of one
batch only, SHAP players and figure windows cut by different formulas)."""
import ast
import subprocess
import sys

import numpy as np
import pytest
import torch

from hybrid_explain.explainers import regions
from hybrid_explain.explainers import shapley
from hybrid_explain.explainers.attributions import AttentionRecorder
from conftest import ROOT, run_args, write_series_csvs
from hybrid_explain.model import HybridCNNLSTMAttention, predict_logits

LIBRARY_MODULES = sorted([p for p in ROOT.glob("*.py") if p.name != "train_explain.py"]
                         + list(ROOT.glob("hybrid_explain/**/*.py")))


def imported_modules(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("path", LIBRARY_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_library_module_imports_the_script(path):
    assert "train_explain" not in set(imported_modules(path))


def test_the_script_still_re_exports_load_model_for_users():
    from hybrid_explain import checkpoint
    import train_explain

    assert train_explain.load_model is checkpoint.load_model


@pytest.mark.slow
def test_a_bad_segment_from_the_command_line_is_one_error_line_and_exit_status_2(tmp_path):
    train, test = write_series_csvs(tmp_path, length=60)
    result = subprocess.run([sys.executable, str(ROOT / "train_explain.py"),
                             *run_args(train, test, tmp_path / "out", "--epochs=1",
                                       "--attribution_segments=QRS:45-20")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "QRS:45-20" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_the_attention_recorder_keeps_every_batch_in_order():
    torch.manual_seed(0)
    model = HybridCNNLSTMAttention(2, 8, 3, cnn_channels=4, lstm_hidden_size=4, attention_heads=2).eval()
    x = torch.randn(600, 2, 8)
    with AttentionRecorder(model.attention) as recorder:
        weights = recorder.record(model, x)  # more rows than one forward batch (512)
        last_rows = recorder.record(model, x[-88:])
    assert weights.shape[0] == 600
    torch.testing.assert_close(weights[-88:], last_rows)


@pytest.mark.parametrize("length, windows", [(24, 10), (100, 10), (7, 3), (1500, 400), (5, 10)])
def test_shap_players_and_every_window_of_the_figures_are_the_same_steps(length, windows):
    groups = shapley.player_groups(1, length, windows)[0]
    spans = regions.window_spans(length, windows)
    assert len(spans) == groups.max() + 1 == min(length, windows)
    for player, (start, end) in enumerate(spans):
        assert np.flatnonzero(groups == player).tolist() == list(range(start, end))


def test_window_sums_of_per_step_shap_values_are_the_players_values():
    values = np.random.default_rng(0).normal(size=(2, 1, 24, 3))
    groups = shapley.player_groups(1, 24, 10)[0]
    per_player = np.stack([values[:, :, groups == p].sum(axis=2) for p in range(10)], axis=2)
    np.testing.assert_allclose(regions.span_sums(values, regions.window_spans(24, 10)), per_player)


def test_predict_logits_accepts_a_float64_array():
    torch.manual_seed(0)
    model = HybridCNNLSTMAttention(2, 8, 3, cnn_channels=4, lstm_hidden_size=4, attention_heads=2).eval()
    x = np.random.default_rng(0).normal(size=(5, 2, 8))
    torch.testing.assert_close(predict_logits(model, x), predict_logits(model, torch.tensor(x, dtype=torch.float32)))
