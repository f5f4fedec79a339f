"""train_explain's library: the model, its checkpoint and training engine, the explainers, the pipeline's stages,
the figures and the estimators. The script, train_explain.py, runs it; users reach it through
`from train_explain import load_model, predict` and the estimators below.

    from hybrid_explain import HybridClassifier            # scikit-learn's estimator contract
    from hybrid_explain import HybridAeonClassifier        # aeon's BaseClassifier (the aeon extra)
"""
from hybrid_explain.version import __version__  # noqa: F401

# The estimators import torch and scikit-learn: loaded when first named, so that importing a light module of the
# package (config, the script's --help) stays fast (PEP 562).
LAZY = {"HybridClassifier": "hybrid_explain.interop.estimator",
        "HybridAeonClassifier": "hybrid_explain.interop.aeon_classifier"}


def __getattr__(name):
    if name in LAZY:
        import importlib

        return getattr(importlib.import_module(LAZY[name]), name)
    raise AttributeError(f"module 'hybrid_explain' has no attribute {name!r}")
