"""Launched by torchrun in a test: the pipeline, except that rank 1 raises in its first training epoch."""
import os
import sys

import train_explain
from hybrid_explain import training


def failing_epoch(*args, **kwargs):
    raise RuntimeError(f"planted failure on rank {os.environ['RANK']}")


if os.environ.get("RANK") == "1":
    training.train_epoch = failing_epoch  # train_model (training.py) looks it up there
sys.exit(train_explain.main(sys.argv[1:]))
