"""The run's settings (hybrid_explain/config.py): typed groups built once from the constants block, every check in
one place, and what the checkpoint and the resume state keep of them."""
import dataclasses

import numpy as np
import pytest
import torch

import train_explain
from data_loader import CustomDataset
from hybrid_explain.config import Config, ConfigError, ModelConfig, TrainingConfig
from hybrid_explain.model import build_model
from hybrid_explain.training import changed_inputs, model_hyperparameters, training_inputs


def test_every_constant_is_a_setting_of_some_group_and_every_setting_a_constant():
    fields = {f.name.upper() for group in dataclasses.fields(Config) for f in dataclasses.fields(group.type)}
    assert fields == set(train_explain.CONSTANT_NAMES)


def test_the_groups_give_back_the_constants_they_were_built_from():
    constants = train_explain.constants_from_args(["--epochs=7", "--ig_steps=8"])
    assert Config.from_constants(constants).constants() == constants


def test_settings_cannot_change_after_they_are_made():
    config = train_explain.config_from_args([])
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.training.epochs = 1


@pytest.mark.parametrize("flag, words", [
    ("--seed=-1", "SEED is -1, expected an integer"),
    ("--dropout=1.0", "DROPOUT is 1.0"),
    ("--kernel_size=4", "KERNEL_SIZE is 4; use an odd width"),
    ("--attention_heads=5", "ATTENTION_HEADS is 5, which does not divide"),
    ("--conv_front_end=resnet", "CONV_FRONT_END is 'resnet'; use one of 'plain', 'inception'"),
    ("--shap_method=kernel", "SHAP_METHOD is 'kernel'"),
])
def test_a_bad_setting_is_one_error_naming_its_constant(flag, words):
    with pytest.raises(ConfigError, match=words) as error:
        train_explain.config_from_args([flag])
    assert "\n" not in str(error.value)


def test_the_inception_rule_reads_the_front_end_and_the_channels_together():
    with pytest.raises(ConfigError, match="multiple of 4"):
        train_explain.config_from_args(["--conv_front_end=inception", "--cnn_channels=30"])
    assert train_explain.config_from_args(["--conv_front_end=inception", "--cnn_channels=32"])


def test_the_checkpoint_keeps_the_models_arguments_and_the_data_facts_not_run_settings():
    class Table:  # the fields model_hyperparameters reads
        X = np.zeros((4, 2, 30), dtype=np.float32)
        lengths = np.full(4, 30)
        class_names = ["a", "b", "c"]

    hyperparameters = model_hyperparameters(train_explain.config_from_args([]).model, Table)
    assert set(hyperparameters) == ({f.name for f in dataclasses.fields(ModelConfig)}
                                    | {"input_channels", "sequence_length", "num_classes"})
    assert build_model(hyperparameters).arguments == {k: v for k, v in hyperparameters.items()}


def tiny_training_inputs(**changes):
    config = train_explain.config_from_args(["--cnn_channels=4", "--lstm_hidden_size=4"])
    model = build_model(model_hyperparameters(dataclasses.replace(config.model, **changes.pop("model", {})),
                                              type("Table", (), {"X": np.zeros((6, 1, 12)), "lengths": np.full(6, 12),
                                                                 "class_names": ["a", "b"]})))
    rows = CustomDataset(torch.zeros(6, 1, 12) + changes.pop("shift", 0.0), np.arange(6) % 2)
    return training_inputs(dataclasses.replace(config.training, **changes.pop("training", {})), model, rows)


def test_resuming_accepts_any_change_that_cannot_change_the_training():
    # explanation and output settings are not among what the resume state records
    assert changed_inputs(tiny_training_inputs(), tiny_training_inputs()) == []


@pytest.mark.parametrize("changes, named", [
    ({"training": {"learning_rate": 1e-4}}, ["LEARNING_RATE"]),
    ({"model": {"dropout": 0.5}}, ["DROPOUT"]),
    ({"shift": 1.0}, ["the training rows"]),
])
def test_resuming_refuses_a_change_to_the_training_settings_the_model_or_the_rows(changes, named):
    assert changed_inputs(tiny_training_inputs(), tiny_training_inputs(**changes)) == named


def test_the_estimator_checks_its_parameters_with_the_same_records():
    from hybrid_explain.interop.estimator import HybridClassifier

    with pytest.raises(ValueError, match="^kernel_size is 4; use an odd width"):
        HybridClassifier(kernel_size=4)._settings()
    model, training = HybridClassifier(epochs=3)._settings()
    assert isinstance(model, ModelConfig) and isinstance(training, TrainingConfig) and training.epochs == 3
