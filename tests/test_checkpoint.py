"""The checkpoint format: versioned, written in one place, and files of every format the loader accepts still
load and give the logits they gave when written (tests/data, made by tests/data/make_checkpoint.py)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from hybrid_explain.checkpoint import FORMAT_VERSION, CheckpointError, load_model

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name", ["checkpoint_oldest", "checkpoint_format1", "checkpoint_format2"])
def test_a_checkpoint_of_every_accepted_format_loads_and_gives_the_logits_it_gave(name):
    model, checkpoint = load_model(DATA / f"{name}.pth")
    expected = np.load(DATA / f"{name}_logits.npz")
    with torch.no_grad():
        logits = model(torch.from_numpy(expected["x"])).numpy()
    np.testing.assert_allclose(logits, expected["logits"], rtol=1e-5, atol=1e-6)
    assert checkpoint.get("format_version", 1) <= FORMAT_VERSION


def test_the_current_format_keeps_only_the_models_arguments_in_its_hyperparameters():
    _, checkpoint = load_model(DATA / "checkpoint_format2.pth")
    assert checkpoint["format_version"] == FORMAT_VERSION == 2
    assert not {"epochs", "output_dir", "threads", "ig_steps"} & set(checkpoint["hyperparameters"])


def test_a_checkpoint_of_a_newer_format_is_one_error_asking_for_an_upgrade(tmp_path):
    checkpoint = torch.load(DATA / "checkpoint_format2.pth", weights_only=True)
    checkpoint["format_version"] = FORMAT_VERSION + 1
    torch.save(checkpoint, tmp_path / "newer.pth")
    with pytest.raises(CheckpointError, match="newer train_explain") as error:
        load_model(tmp_path / "newer.pth")
    assert "\n" not in str(error.value)
