"""HybridClassifier as an aeon classifier (needs aeon: pip install 'train-explain[aeon]'), for aeon's benchmarks and
estimator checks, which take aeon's BaseClassifier only:

    from hybrid_explain.interop.aeon_classifier import HybridAeonClassifier
    clf = HybridAeonClassifier(epochs=50).fit(X_train, y_train)   # numpy3D, or a list of unequal-length series

aeon checks and converts the input (BaseClassifier.fit/predict), then hands it to a HybridClassifier with the same
parameters (estimator_): one network, one training engine, one checkpoint (save/load/explain go through it).
"""
import inspect

try:
    from aeon.classification import BaseClassifier
except ImportError:  # a one-line error naming the extra, only for users of this module
    raise ImportError("HybridAeonClassifier needs aeon: pip install 'train-explain[aeon]' "
                      "(or pip install 'aeon>=1.0,<2')") from None

from hybrid_explain.interop.estimator import HybridClassifier


class HybridAeonClassifier(BaseClassifier):
    """aeon's BaseClassifier around HybridClassifier: the same constructor arguments (the script's constants that
    shape the model and its training), multivariate and unequal-length series."""

    _tags = {
        "X_inner_type": ["np-list", "numpy3D"],
        "capability:multivariate": True,
        "capability:unequal_length": True,
        "algorithm_type": "deeplearning",
        "python_dependencies": "torch",
    }

    def __init__(self, **params):
        unknown = set(params) - set(HybridClassifier._get_param_names())
        if unknown:
            raise TypeError(f"HybridAeonClassifier got unexpected keyword arguments {sorted(unknown)}")
        defaults = {name: p.default for name, p in inspect.signature(HybridClassifier).parameters.items()}
        for name, value in {**defaults, **params}.items():
            setattr(self, name, value)
        super().__init__()

    # get_params/set_params/clone read the constructor's signature: HybridClassifier's own
    __init__.__signature__ = inspect.signature(HybridClassifier.__init__)

    def _fit(self, X, y):
        params = {name: getattr(self, name) for name in HybridClassifier._get_param_names()}
        self.estimator_ = HybridClassifier(**params).fit(X, y)
        return self

    def _predict(self, X):
        return self.estimator_.predict(X)

    def _predict_proba(self, X):
        return self.estimator_.predict_proba(X)

    def explain(self, X, **settings):
        """HybridClassifier.explain of the fitted estimator."""
        self._check_is_fitted()
        return self.estimator_.explain(X, **settings)

    def save(self, path):
        """The script's checkpoint, as HybridClassifier.save writes it."""
        self._check_is_fitted()
        self.estimator_.save(path)

    @classmethod
    def _get_test_params(cls, parameter_set="default"):
        """A network small and short enough for aeon's checks, without the MiniRocket baseline beside it (each check
        would fit it too)."""
        return {"epochs": 2, "cnn_channels": 4, "lstm_hidden_size": 4, "attention_heads": 2, "baseline": ""}
