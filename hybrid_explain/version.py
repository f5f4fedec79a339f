"""The version of train_explain, in one place: pyproject.toml, --version, metrics.json and every checkpoint read it."""
__version__ = "0.10.0"
