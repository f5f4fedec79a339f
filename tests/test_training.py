"""The training recipe: best-epoch restore, early stopping, and the validation split."""
import numpy as np
import pytest
import torch

import train_explain
from hybrid_explain.model import HybridCNNLSTMAttention, blended
from data_loader import CustomDataset


def noisy_task(n=48, seed=0):
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    X = torch.randn(n, 2, 12, generator=generator) + 2.0 * y.view(-1, 1, 1) * (torch.arange(12) > 6)
    flip = torch.rand(n, generator=generator) < 0.2  # label noise so validation accuracy moves between epochs
    return CustomDataset(X, torch.where(flip, 1 - y, y))


def train(tmp_path, **overrides):
    config = train_explain.config_from_args([f"--{k}={v}" for k, v in overrides.items()])
    torch.manual_seed(0)
    model = HybridCNNLSTMAttention(2, 12, 2, cnn_channels=4, lstm_hidden_size=4, attention_heads=2)
    result = train_explain.train_model(model, noisy_task(seed=0), noisy_task(n=20, seed=1), config.training,
                                       str(tmp_path / "resume.pth"), log=lambda message: None)
    return model, result


def test_the_kept_weights_are_those_of_the_epoch_with_the_lowest_validation_loss(tmp_path):
    # 20 epochs: the validation loss is lowest near epoch 10 and higher after, so the last epoch is not the best
    model, (history, state, epoch, _, val_loss) = train(tmp_path, epochs=20, learning_rate=0.01,
                                                        early_stopping_patience=100)
    losses = [row["val_loss"] for row in history]
    assert epoch == 1 + losses.index(min(losses)) < len(history)
    model.load_state_dict(state)
    assert train_explain.evaluate(model, noisy_task(n=20, seed=1))[0] == pytest.approx(val_loss) == min(losses)


def test_early_stopping_ends_training_after_patience_epochs_without_improvement(tmp_path):
    _, (history, _, epoch, _, _) = train(tmp_path, epochs=60, early_stopping_patience=3)
    assert len(history) == epoch + 3 < 60


def test_no_validation_split_keeps_the_last_epoch(tmp_path):
    config = train_explain.config_from_args(["--epochs=4"])
    model = HybridCNNLSTMAttention(2, 12, 2, cnn_channels=4, lstm_hidden_size=4, attention_heads=2)
    empty = CustomDataset(torch.zeros(0, 2, 12), torch.zeros(0, dtype=torch.long))
    history, _, epoch, _, _ = train_explain.train_model(model, noisy_task(), empty, config.training, str(tmp_path / "r.pth"),
                                                        log=lambda message: None)
    assert epoch == len(history) == 4 and np.isnan(history[-1]["val_accuracy"])


def test_mixup_blends_each_sample_with_a_partner_from_its_batch_by_one_weight():
    torch.manual_seed(0)
    y = torch.arange(16)
    x = y.float().view(-1, 1, 1).expand(16, 2, 5)  # every value of sample i is i: the blend names its partner
    partner, weight = train_explain.mixup(y, alpha=0.4)
    assert 0 <= weight <= 1 and sorted(y[partner].tolist()) == y.tolist()
    expected = weight * y + (1 - weight) * y[partner]
    assert torch.allclose(blended(x, partner, weight), expected.float().view(-1, 1, 1).expand(16, 2, 5))


def test_mixup_weights_the_loss_between_both_labels_of_a_blended_batch():
    torch.manual_seed(0)
    data = noisy_task()
    model = HybridCNNLSTMAttention(2, 12, 2, cnn_channels=4, lstm_hidden_size=4, attention_heads=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # a frozen model: the epoch only measures
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)

    class Silent:
        def update(self, n):
            pass

    torch.manual_seed(1)
    loss = train_explain.train_epoch(model, data, optimizer, scheduler, torch.nn.CrossEntropyLoss(), 48,
                                     None, Silent(), mixup_alpha=0.4)
    torch.manual_seed(1)  # the same blend and dropout masks again
    model.train()
    partner, weight = train_explain.mixup(data.y, 0.4)
    logits = model(blended(data.X, partner, weight))
    expected = (weight * torch.nn.functional.cross_entropy(logits, data.y)
                + (1 - weight) * torch.nn.functional.cross_entropy(logits, data.y[partner]))
    assert loss == pytest.approx(expected.item(), rel=1e-5)
