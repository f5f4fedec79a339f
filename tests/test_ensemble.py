"""ENSEMBLE_SIZE: networks trained side by side whose mean logits are the model; every explanation explains that
mean, the checkpoint holds every member and loads with weights_only=True."""
import json

import pytest
import torch

from hybrid_explain.explainers import attributions
import train_explain
from conftest import run_args, write_series_csvs
from data_loader import CustomDataset
from hybrid_explain.explainers.lrp import lrp_attribute, lrp_conservation
from hybrid_explain.model import Ensemble, HybridCNNLSTMAttention, build_model
from hybrid_explain.checkpoint import load_model, parameter_count
from test_variable_length import LENGTHS, assert_padding_gives_the_logits_of_each_series_alone, batch, small_checkpoint

ARGUMENTS = {"input_channels": 2, "sequence_length": 24, "num_classes": 3, "cnn_channels": 8, "lstm_hidden_size": 8,
             "attention_heads": 2, "min_pooled_length": 4}


def ensemble(size=3, seed=0, **changes):
    torch.manual_seed(seed)
    return Ensemble(size, **{**ARGUMENTS, **changes}).eval()


def test_the_logits_are_the_mean_of_the_members_logits():
    model = ensemble()
    x = batch()
    torch.testing.assert_close(model(x), torch.stack([member(x) for member in model.members]).mean(0))
    assert model(x, members=True).shape == (3, len(x), 3)


def test_members_start_from_different_weights():
    model = ensemble()
    first, second = (member.conv1[0].weight for member in model.members[:2])
    assert not torch.equal(first, second)


@pytest.mark.parametrize("length", [1, 2, 7, 150, 2000])
def test_any_length_from_1_to_2000_gives_one_logit_per_class(length):
    model = ensemble(2, sequence_length=length)
    assert model(torch.randn(2, 2, length)).shape == (2, 3)
    hp = {**ARGUMENTS, "sequence_length": length, "lstm_layers": 1, "dropout": 0.1, "kernel_size": 7,
          "max_pooled_length": 128, "ensemble_size": 2}
    assert parameter_count(hp) == sum(p.numel() for p in model.parameters())


def test_padded_rows_give_the_logits_of_each_series_alone():
    assert_padding_gives_the_logits_of_each_series_alone(ensemble(), float("nan"))


def test_the_checkpoint_holds_every_member_and_reloads_with_weights_only_to_the_same_logits(tmp_path):
    model = ensemble()
    checkpoint = small_checkpoint(model)
    checkpoint["hyperparameters"]["ensemble_size"] = 3
    torch.save(checkpoint, tmp_path / "model.pth")
    loaded, _ = load_model(tmp_path / "model.pth")  # torch.load(..., weights_only=True) inside
    assert isinstance(loaded, Ensemble) and len(loaded.members) == 3
    torch.testing.assert_close(loaded(batch()), model(batch()), rtol=0, atol=0)


def test_a_checkpoint_without_ensemble_size_is_one_network():
    hp = small_checkpoint(ensemble(1).members[0])["hyperparameters"]
    assert "ensemble_size" not in hp and isinstance(build_model(hp), HybridCNNLSTMAttention)


def test_a_checkpoint_with_an_impossible_ensemble_size_is_refused(tmp_path):
    checkpoint = small_checkpoint(ensemble(1).members[0])
    checkpoint["hyperparameters"]["ensemble_size"] = 0
    torch.save(checkpoint, tmp_path / "model.pth")
    with pytest.raises(ValueError, match="ensemble_size"):
        load_model(tmp_path / "model.pth")


def trained(model, epochs=4, batch_size=8, seed=0, shuffle=True):
    """model after `epochs` of train_explain.train_epoch on the 4 rows of batch(seed), mixup off; shuffle=False:
    the rows in file order in every epoch, for every member."""
    from tqdm import tqdm

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    data = CustomDataset(batch(seed), torch.tensor([0, 1, 2, 1]))
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    for _ in range(epochs):
        train_explain.train_epoch(model, data, optimizer, Steps(), criterion, batch_size, generator,
                                  tqdm(disable=True))
    return model.eval()


class Steps:
    """A scheduler that keeps the learning rate."""

    def step(self):
        pass


def test_each_member_trains_as_it_would_alone():
    model = ensemble(2, dropout=0.0)
    alone = HybridCNNLSTMAttention(**ARGUMENTS, dropout=0.0)
    alone.load_state_dict(model.members[1].state_dict())
    trained(model, batch_size=2, shuffle=False), trained(alone, batch_size=2, shuffle=False)
    torch.testing.assert_close(model.members[1](batch()), alone(batch()), rtol=1e-5, atol=1e-6)


def test_members_draw_their_own_batches():
    model = ensemble(2, dropout=0.0)
    model.members[1].load_state_dict(model.members[0].state_dict())  # the same start: only the batches differ
    trained(model, epochs=2, batch_size=2)
    assert not torch.allclose(model.members[0](batch()), model.members[1](batch()))


def test_gradcam_of_the_ensemble_is_the_mean_of_the_members_own_maps():
    model = ensemble()
    x = batch()
    target = model(x).argmax(1)
    with attributions.GradCAM(model, model.gradcam_layer) as cam:
        theirs = cam.attribute(x, target)
    own = []
    for member in model.members:
        with attributions.GradCAM(member, member.gradcam_layer) as cam:
            own.append(cam.attribute(x, target))
    torch.testing.assert_close(theirs, torch.stack(own).mean(0), rtol=1e-5, atol=1e-7)
    assert all(not layer._forward_hooks and not layer._backward_hooks for layer in model.gradcam_layer)


def test_attention_of_the_ensemble_is_every_members_heads_side_by_side_over_every_batch():
    model = ensemble()
    x = batch()
    with attributions.AttentionRecorder(model.attention) as recorder:
        weights = recorder.record(model, x, batch_size=3, lengths=LENGTHS)  # two batches
    own = []
    for member in model.members:
        with attributions.AttentionRecorder(member.attention) as recorder:
            own.append(recorder.record(member, x, lengths=LENGTHS))
    torch.testing.assert_close(weights, torch.cat(own, dim=1))  # (N, 3 networks x 2 heads, T, T)


def test_lrp_of_the_ensemble_is_the_mean_of_the_members_relevances_and_conserves_the_logit():
    model = trained(ensemble(), epochs=2)
    x = batch()
    target = model(x).argmax(1)
    own = torch.stack([lrp_attribute(member, x, target) for member in model.members]).mean(0)
    torch.testing.assert_close(lrp_attribute(model, x, target), own, rtol=1e-4, atol=1e-6)
    parts = lrp_conservation(model, x, target)
    assert float(parts["residual"].abs().max()) < 1e-3 * float(parts["logit"].abs().max())


@pytest.mark.slow
def test_a_seeded_ensemble_run_repeats_and_reports_its_networks(tmp_path):
    train, test = write_series_csvs(tmp_path)
    runs = []
    for name in ("a", "b"):
        assert train_explain.main(run_args(train, test, tmp_path / name, "--ensemble_size=2", "--epochs=2",
                                           "--global_explain_rows=0", "--attribution_methods=lrp_epsilon,gradcam",
                                           "--counterfactual_budget=20")) == 0
        runs.append(torch.load(tmp_path / name / train_explain.CHECKPOINT_NAME, weights_only=True))
    assert runs[0]["hyperparameters"]["ensemble_size"] == 2
    assert runs[0]["model_state_dict"].keys() == runs[1]["model_state_dict"].keys()
    assert all(torch.equal(runs[0]["model_state_dict"][k], runs[1]["model_state_dict"][k])
               for k in runs[0]["model_state_dict"])
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["networks"] == 2 and "2 networks" in metrics["gradcam"]["layer"]
    assert metrics["shap"]["additivity_rel_error_max"] < 1e-4


def test_members_batches_of_different_widths_are_padded_to_the_widest_with_each_rows_length_kept():
    short = (torch.ones(2, 1, 5), None, None, 1.0, None, None)  # both rows fill their 5 steps
    long = (torch.ones(2, 1, 8), None, None, 1.0, torch.tensor([8, 6]), None)
    x, lengths = train_explain.stacked([short, long])
    assert x.shape == (2, 2, 1, 8) and float(x[0, :, :, 5:].abs().sum()) == 0
    assert lengths.tolist() == [[5, 5], [8, 6]]


def test_an_ensemble_trains_on_rows_of_different_lengths():
    from tqdm import tqdm

    model = ensemble(2)
    data = CustomDataset(batch(), torch.tensor([0, 1, 2, 1]), LENGTHS)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = train_explain.train_epoch(model, data, optimizer, Steps(), torch.nn.CrossEntropyLoss(), 2,
                                     torch.Generator().manual_seed(0), tqdm(disable=True), mixup_alpha=0.4)
    assert loss == loss and loss > 0  # finite, not NaN from the padding


def test_an_interrupted_ensemble_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    config = train_explain.config_from_args(["--epochs=3", "--ensemble_size=2", "--batch_size=2", "--seed=0"]).training
    data = CustomDataset(batch(), torch.tensor([0, 1, 2, 1]), LENGTHS)
    none = CustomDataset(batch()[:0], torch.tensor([], dtype=torch.long))

    def stop_after_epoch_1(message):  # the state is saved after epoch 1, before its line is logged
        if message.startswith("epoch   1"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_explain.train_model(ensemble(2), data, none, config, tmp_path / "state.pt", log=stop_after_epoch_1)
    resumed = train_explain.train_model(ensemble(2), data, none, config, tmp_path / "state.pt", resume=True,
                                        log=lambda message: None)[1]
    straight = train_explain.train_model(ensemble(2), data, none, config, tmp_path / "other.pt", log=lambda m: None)[1]
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)
