"""How tests/data's checkpoints were made: a small model with random weights, saved by the checkout it runs in,
and the logits it gives on fixed rows (tests/test_checkpoint.py loads each and compares).
    checkpoint_format1.pth   format 1, run in a checkout of d635901 (0.9.0): python make_checkpoint.py OUT
    checkpoint_format2.pth   format 2 (0.10.0), run in this checkout
    checkpoint_oldest.pth    the oldest fields the loader accepts (d635901's code, then version, weights_sha256,
                             selected_on and val_loss removed; no model argument added after 0.1)
"""
import sys
import numpy as np
import torch
sys.path.insert(0, ".")
out = sys.argv[1]
torch.manual_seed(0)
try:
    from hybrid_explain.checkpoint import checkpoint_dict
    from hybrid_explain.model import build_model
    new = True
except ImportError:
    from model import build_model, checkpoint_dict
    new = False
hp = {"input_channels": 2, "sequence_length": 16, "num_classes": 3, "cnn_channels": 4, "lstm_hidden_size": 4,
      "lstm_layers": 1, "attention_heads": 2, "dropout": 0.1, "kernel_size": 3, "min_pooled_length": 4,
      "max_pooled_length": 8, "ensemble_size": 1, "conv_front_end": "plain", "normalization": "per_series",
      "amplitude_features": True, "length_feature": False}
if not new:  # format 1 kept every constant of the script in hyperparameters
    hp.update({"epochs": 200, "batch_size": 8, "learning_rate": 3e-3, "output_dir": "outputs", "threads": 0,
               "seed": 0, "ig_steps": 64})
model = build_model(hp).eval()
with torch.no_grad():  # non-trivial weights in the row-fact head too (it starts at zero)
    for p in model.parameters():
        p.add_(0.1 * torch.randn_like(p))
columns = [f"{c}_t{t}" for c in ("a", "b") for t in range(16)]
ck = checkpoint_dict(model, hp, ["x", "y", "z"], ["a", "b"], columns, {"mean": [0.0, 0.0], "std": [1.0, 1.0]}, 3,
                     float("nan"), float("nan"))
torch.save(ck, out)
x = torch.from_numpy(np.random.default_rng(0).normal(size=(4, 2, 16)).astype(np.float32)) * torch.tensor([[[1.0], [50.0]]])
with torch.no_grad():
    np.savez(out.replace(".pth", "_logits.npz"), x=x.numpy(), logits=model(x).numpy())
print(out, sorted(ck))
