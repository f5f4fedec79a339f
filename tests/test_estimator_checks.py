"""HybridClassifier through scikit-learn's own estimator checks (every check of check_estimator, a tiny network
and 3 epochs). None is skipped: each applies to this network and passes (the seeded training makes fit
idempotent; arrays with NaN, complex values, sparse matrices, a single class or sample are refused with the
messages the checks look for). The checks' data are tables of 2-20 features drawn as blobs, not series: the
checked estimator reads them as the script reads a table, with per-channel statistics (normalization=
"per_channel"); the default per-series z-score of a 2-step "series" keeps only its mean and spread, and 3 epochs
then fall short of check_classifiers_train's accuracy bar (0.83)."""
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from hybrid_explain.interop.estimator import HybridClassifier

CHECKED = HybridClassifier(epochs=3, cnn_channels=4, lstm_hidden_size=4, attention_heads=2,
                           normalization="per_channel")


@pytest.mark.slow
@parametrize_with_checks([CHECKED])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
