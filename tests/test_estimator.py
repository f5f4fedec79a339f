"""HybridClassifier: the scikit-learn contract, aeon's input forms, the script's checkpoint and training engine."""
import inspect
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone

from conftest import write_series_csvs
from hybrid_explain.interop.estimator import HybridClassifier
from hybrid_explain.checkpoint import load_model

TINY = dict(epochs=2, cnn_channels=8, lstm_hidden_size=8, attention_heads=2,
            baseline="")  # no MiniRocket: the slow tests at the end fit it


def series(n=24, channels=2, length=20, seed=0):
    """(X (n, channels, length), y): class k has a bump on channel k % channels at its own place."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array(["a", "b", "c"]), n // 3)
    X = rng.normal(0, 0.3, size=(len(y), channels, length))
    for i, k in enumerate(np.unique(y, return_inverse=True)[1]):
        X[i, k % channels, 4 * k + 2:4 * k + 6] += 3.0
    return X, y


@pytest.fixture(scope="module")
def fitted():
    X, y = series()
    return HybridClassifier(**TINY).fit(X, y), X, y


def test_the_defaults_are_the_scripts_constants_and_cover_every_model_and_training_constant():
    import train_explain

    defaults = {name: p.default for name, p in inspect.signature(HybridClassifier).parameters.items()}
    assert {name: getattr(train_explain, name.upper()) for name in defaults} == defaults
    source = inspect.getsource(train_explain).split("# model\n", 1)[1].split("# explanations\n", 1)[0]
    shaping = {line.split(" = ")[0].lower() for line in source.splitlines() if " = " in line}
    source = inspect.getsource(train_explain).split("# baseline and distillation\n", 1)[1].split("# resources\n")[0]
    teaching = {line.split(" = ")[0].lower() for line in source.splitlines() if " = " in line}
    assert shaping | teaching | {"seed", "device", "missing_values", "label_column"} == set(defaults)


def test_fit_predict_score_and_classes(fitted):
    clf, X, y = fitted
    assert list(clf.classes_) == ["a", "b", "c"] and clf.n_features_in_ == 2 * 20
    probabilities = clf.predict_proba(X)
    assert probabilities.shape == (len(X), 3) and np.allclose(probabilities.sum(1), 1)
    assert set(clf.predict(X)) <= set(clf.classes_)
    assert 0 <= clf.score(X, y) <= 1
    assert len(clf.history_) == TINY["epochs"]


def test_the_input_forms_aeon_uses(fitted):
    clf, X, y = fitted
    one_channel = HybridClassifier(**TINY).fit(X[:, 0], y)  # 2D: one channel
    assert one_channel.n_channels_ == 1 and one_channel.predict(X[:3, 0]).shape == (3,)
    rows = [x[:, :20 - i % 6] for i, x in enumerate(X)]  # unequal lengths: a list of (C, L_i)
    unequal = HybridClassifier(**TINY).fit(rows, y)
    assert unequal.n_timepoints_ == 20 and unequal.predict_proba(rows).shape == (len(rows), 3)
    # a row padded by the list form scores as the same row padded by hand: the steps after its end are unread
    assert np.allclose(unequal.predict_proba(rows[1:2]), unequal.predict_proba([rows[1], X[0]])[:1], atol=1e-6)
    frame = pd.DataFrame(X.reshape(len(X), -1), columns=[f"ch{c}_t{t}" for c in range(2) for t in range(20)])
    frame["label"] = y
    from_frame = HybridClassifier(**TINY).fit(frame)  # the CSV layout, labels in its label column
    assert from_frame.n_channels_ == 2 and np.array_equal(from_frame.predict(frame), from_frame.predict(X))


def test_wrong_input_is_a_one_line_value_error(fitted):
    clf, X, y = fitted
    with pytest.raises(ValueError, match="channels"):
        clf.predict(X[:, :1])
    with pytest.raises(ValueError, match="NaN or infinity"):
        clf.predict(np.where(np.arange(20) == 3, np.nan, X))
    with pytest.raises(ValueError, match="one class"):
        HybridClassifier(**TINY).fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="attention_heads"):
        HybridClassifier(lstm_hidden_size=8, attention_heads=3).fit(X, y)


def test_clone_pickle_and_save_load_give_identical_probabilities(fitted, tmp_path):
    clf, X, y = fitted
    assert clone(clf).get_params() == clf.get_params()
    expected = clf.predict_proba(X)
    assert np.array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X), expected)
    clf.save(tmp_path / "model.pth")
    loaded = HybridClassifier.load(tmp_path / "model.pth")
    assert np.array_equal(loaded.predict_proba(X), expected)
    assert loaded.get_params() == {**clf.get_params(), "device": "auto"} and list(loaded.classes_) == list(clf.classes_)
    net, checkpoint = load_model(tmp_path / "model.pth")  # the script's loader reads the estimator's file
    assert checkpoint["class_names"] == ["a", "b", "c"]


def test_the_same_seed_trains_the_same_weights(fitted):
    clf, X, y = fitted
    again = HybridClassifier(**TINY).fit(X, y)
    assert np.array_equal(again.predict_proba(X), clf.predict_proba(X))
    other = HybridClassifier(**TINY, seed=1).fit(X, y)
    assert not np.array_equal(other.predict_proba(X), clf.predict_proba(X))


def test_explain_gives_shap_values_that_add_up_and_integrated_gradients(fitted):
    clf, X, y = fitted
    explanation = clf.explain(X[:2], methods=("shap", "integrated_gradients"), shap_permutations=4)
    assert explanation["shap"].shape == (2, 2, 20, 3) and explanation["integrated_gradients"].shape == (2, 2, 20)
    gap = explanation["logits"] - explanation["shap_base_values"]
    assert np.allclose(explanation["shap"].sum(axis=(1, 2)), gap, atol=1e-4)
    assert list(explanation["target"]) == list(clf.predict(X[:2]))
    with pytest.raises(ValueError, match="unknown methods"):
        clf.explain(X[:1], methods=("shapley",))


def test_explain_rows_of_their_own_lengths():
    X, y = series()
    rows = [x[:, :20 - i % 6] for i, x in enumerate(X)]
    clf = HybridClassifier(**TINY).fit(rows, y)
    explanation = clf.explain(rows[3:6], methods=("shap", "saliency"), shap_permutations=4)
    assert list(explanation["lengths"]) == [17, 16, 15]
    for i, length in enumerate(explanation["lengths"]):
        assert not explanation["shap"][i, :, length:].any() and not explanation["saliency"][i, :, length:].any()
    gap = explanation["logits"] - explanation["shap_base_values"]
    assert np.allclose(explanation["shap"].sum(axis=(1, 2)), gap, atol=1e-4)


def test_cross_val_score_and_grid_search():
    from sklearn.model_selection import GridSearchCV, cross_val_score

    X, y = series(n=18, length=12)
    scores = cross_val_score(HybridClassifier(**{**TINY, "epochs": 1}), X, y, cv=3)
    assert scores.shape == (3,) and ((0 <= scores) & (scores <= 1)).all()
    search = GridSearchCV(HybridClassifier(**{**TINY, "epochs": 1}), {"dropout": [0.0, 0.2]}, cv=2).fit(X, y)
    assert search.best_params_["dropout"] in (0.0, 0.2) and search.predict(X).shape == (18,)


@pytest.mark.slow
def test_the_estimator_and_the_script_train_the_same_network(trained_run):
    """Same CSV, same constants and seed: the same weights, hence identical predictions."""
    out, train, test = trained_run
    _, script = load_model(out / "saved_model_hybrid_explained.pth")
    recorded = {**script["training"], **script["hyperparameters"]}  # the model's arguments and how it was trained
    settings = {name: recorded[name] for name in HybridClassifier._get_param_names() if name in recorded}
    clf = HybridClassifier(**settings).fit(pd.read_csv(train))  # MiniRocket fitted beside it changes nothing
    for name, weights in script["model_state_dict"].items():
        assert torch.equal(clf.checkpoint_["model_state_dict"][name], weights), name
    from_script = HybridClassifier.load(out / "saved_model_hybrid_explained.pth")  # the script's checkpoint
    test_frame = pd.read_csv(test)
    assert np.array_equal(from_script.predict(test_frame), clf.predict(test_frame))
    assert np.array_equal(from_script.predict_proba(test_frame), clf.predict_proba(test_frame))
    predictions = pd.read_csv(out / "predictions.csv")
    assert list(predictions["predicted"]) == list(clf.predict(test_frame))


def test_a_script_checkpoint_loads_without_a_run(tmp_path):
    """The script's format (train_explain's checkpoint_dict and fields) is what save() writes: a file whose
    hyperparameters hold every constant loads as an estimator with those settings."""
    X, y = series()
    clf = HybridClassifier(**TINY).fit(X, y)
    checkpoint = dict(clf.checkpoint_)
    checkpoint.pop("estimator")
    torch.save(checkpoint, tmp_path / "script.pth")
    loaded = HybridClassifier.load(tmp_path / "script.pth")
    assert loaded.cnn_channels == 8 and list(loaded.classes_) == ["a", "b", "c"]
    assert np.array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_without_aeon_the_aeon_classifier_is_a_one_line_error_naming_the_extra(monkeypatch):
    import importlib
    import sys

    monkeypatch.setitem(sys.modules, "aeon", None)
    monkeypatch.setitem(sys.modules, "aeon.classification", None)
    monkeypatch.delitem(sys.modules, "hybrid_explain.interop.aeon_classifier", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'train-explain\[aeon\]'") as error:
        importlib.import_module("hybrid_explain.interop.aeon_classifier")
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_the_readme_snippet_runs_as_written(tmp_path, monkeypatch):
    """README's estimator section on the default data, one epoch; its ONNX lines where the export extra is
    installed."""
    import importlib.util
    import re
    import shutil

    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## In scikit-learn, aeon and ONNX"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1).replace("epochs=50", "epochs=1")
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        code = code[:code.index("from api import export_onnx")]
    for name in ("train_set.csv", "test_set.csv"):
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["explanation"]["shap"].shape[0] == 2 and (tmp_path / "model.pth").is_file()


def test_numpy_parameters_from_a_grid_still_save_a_loadable_checkpoint(tmp_path):
    X, y = series(n=12, length=12)
    clf = HybridClassifier(**{**TINY, "epochs": np.int64(1), "dropout": np.float64(0.2)}).fit(X, y)
    clf.save(tmp_path / "model.pth")
    assert HybridClassifier.load(tmp_path / "model.pth").epochs == 1
    checkpoint = load_model(tmp_path / "model.pth")[1]  # weights_only=True: Python numbers, not numpy's
    assert type(checkpoint["estimator"]["params"]["epochs"]) is int
    assert type(checkpoint["hyperparameters"]["dropout"]) is float


# -----------------------------------------------------------------------------
# The baseline beside the network and distillation (BASELINE, DISTILL; the script's code, hybrid_explain/baseline.py)
def test_distill_without_a_baseline_and_an_unknown_baseline_are_value_errors_before_any_work():
    X, y = series(n=12, length=12)
    with pytest.raises(ValueError, match="distill is True, which learns from the baseline"):
        HybridClassifier(**{**TINY, "distill": True}).fit(X, y)
    with pytest.raises(ValueError, match="baseline is 'rocket9'"):
        HybridClassifier(**{**TINY, "baseline": "rocket9"}).fit(X, y)
    with pytest.raises(ValueError, match="distill_weight"):
        HybridClassifier(**{**TINY, "distill_weight": 1.5}).fit(X, y)


needs_aeon = pytest.mark.skipif(__import__("hybrid_explain.baseline").baseline.aeon_problem() is not None,
                                reason="aeon is not installed")


@pytest.fixture(scope="module")
def distilled():
    """A distilled estimator (MiniRocket fitted beside it) on one-channel rows of 14-20 steps."""
    X, y = series(n=24, channels=1)
    rows = [x[:, :20 - i % 7] for i, x in enumerate(X)]
    return HybridClassifier(**{**TINY, "baseline": "minirocket", "distill": True}).fit(rows, y), rows, y


@pytest.mark.slow  # aeon's MiniRocket: numba compiles its kernels once per installation (about a minute)
@needs_aeon
def test_the_baseline_is_fitted_on_the_same_rows_as_the_scripts_and_scored_beside_the_network(distilled):
    from hybrid_explain import baseline

    clf, rows, y = distilled
    values, lengths = clf._rows(rows)
    by_hand = baseline.fit_baseline(values, np.unique(y, return_inverse=True)[1], lengths, seed=0)
    expected = clf.classes_[baseline.baseline_predictions(by_hand, values, lengths)]
    assert np.array_equal(clf.baseline_predict(rows), expected)
    summary = clf.baseline_summary(rows, y)
    assert summary["test_accuracy"] == np.mean(expected == y) and clf.baseline_seconds_ > 0
    shares = summary["agreement"]
    assert shares["both_right"] + shares["only_network"] == pytest.approx(clf.score(rows, y))
    assert sum(shares.values()) == pytest.approx(1.0)


@pytest.mark.slow
@needs_aeon
def test_a_distilled_estimators_checkpoint_records_the_teacher_and_round_trips(distilled, tmp_path):
    from hybrid_explain import baseline

    clf, rows, y = distilled
    values, lengths = clf._rows(rows)
    labels = np.unique(y, return_inverse=True)[1]
    teacher = baseline.teacher_probabilities(clf.baseline_, values, labels, lengths, np.arange(len(y)), seed=0)
    record = clf.checkpoint_["distillation"]
    assert record["teacher_out_of_fold_accuracy"] == teacher["out_of_fold_accuracy"]
    assert record["weight"] == 0.5 and clf.checkpoint_["training"]["distill"] is True
    clf.save(tmp_path / "model.pth")
    loaded = HybridClassifier.load(tmp_path / "model.pth")
    assert load_model(tmp_path / "model.pth")[1]["distillation"] == record and loaded.distill is True
    with pytest.raises(ValueError, match="no baseline was fitted"):  # the checkpoint holds the network alone
        loaded.baseline_predict(rows)
