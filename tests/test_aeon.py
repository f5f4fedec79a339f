"""HybridClassifier in aeon (the optional extra `aeon`): aeon's estimator checks for classifiers, and a benchmark
loop beside one of aeon's classifiers. Skipped where aeon is not installed."""
import numpy as np
import pytest

aeon = pytest.importorskip("aeon")
from aeon.testing.estimator_checking import parametrize_with_checks  # noqa: E402

from hybrid_explain.interop.aeon_classifier import HybridAeonClassifier  # noqa: E402
from hybrid_explain.interop.estimator import HybridClassifier  # noqa: E402

TINY = {"epochs": 2, "cnn_channels": 4, "lstm_hidden_size": 4, "attention_heads": 2, "baseline": ""}
# Each of aeon's checks fits the network once or more on its 5-10 cases: one epoch in one batch keeps that cheap
# (an instance gets the same checks as the class, _get_test_params' own included).
CHECKED = HybridAeonClassifier(**{**TINY, "epochs": 1, "batch_size": 32, "warmup_epochs": 0})


@pytest.mark.slow
@parametrize_with_checks([CHECKED])
def test_aeon_estimator_checks(check):
    check()


def test_beside_an_aeon_classifier_in_one_loop():
    from aeon.classification import DummyClassifier
    from aeon.testing.data_generation import make_example_3d_numpy, make_example_3d_numpy_list

    X, y = make_example_3d_numpy(n_cases=12, n_channels=2, n_timepoints=16, random_state=0)
    rows, y_rows = make_example_3d_numpy_list(n_cases=12, n_channels=2, min_n_timepoints=10, max_n_timepoints=16,
                                              random_state=0)
    for classifier in (DummyClassifier(), HybridAeonClassifier(**TINY), HybridClassifier(**TINY)):
        assert 0 <= classifier.fit(X, y).score(X, y) <= 1
        assert classifier.predict_proba(X).shape == (12, len(np.unique(y)))
    unequal = HybridAeonClassifier(**TINY).fit(rows, y_rows)
    assert unequal.predict(rows).shape == (12,)
    assert unequal.explain(rows[:2], methods=("integrated_gradients",))["integrated_gradients"].shape == (2, 2, 16)


def test_the_parameters_are_the_estimators():
    assert HybridAeonClassifier(**TINY).get_params() == HybridClassifier(**TINY).get_params()
    with pytest.raises(TypeError, match="unexpected"):
        HybridAeonClassifier(epoch=3)
