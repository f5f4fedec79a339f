"""The model's representation of a row: what its classifier reads, the context vector (time-averaged conv features
beside the time-averaged attention output) and the row facts (amplitude, length) where the network has them. For an
ensemble, every member's, side by side. Read by forward pre-hooks on each network's classifier layers, so that it is
the representation of exactly the forward pass that gives the logits."""
import contextlib

import torch

from hybrid_explain.model import predict_logits


def networks(model) -> list:
    return list(model.members) if hasattr(model, "members") else [model]


@contextlib.contextmanager
def captured_inputs(model):
    """Yields a list that each forward pass appends to: the classifier inputs of every network, in one (N, D) tensor
    per pass. The hooks are removed on leaving."""
    layers = [layer for net in networks(model) for layer in (net.head, net.fact_head) if layer is not None]
    pending, passes, handles = {}, [], []

    def keep(layer, args):
        pending[id(layer)] = args[0].detach()
        if len(pending) == len(layers):
            passes.append(torch.cat([pending.pop(id(each)) for each in layers], dim=1))

    try:
        handles = [layer.register_forward_pre_hook(keep) for layer in layers]
        yield passes
    finally:
        for handle in handles:
            handle.remove()


def logits_and_features(model, x, lengths=None, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits (N, K), representation (N, D)) of rows x (N, C, L) normalized as fed to the model."""
    with captured_inputs(model) as passes:
        logits = predict_logits(model, x, batch_size, lengths)
    if not passes:
        raise RuntimeError("the model's classifier layers saw no input: no representation was captured")
    return logits, torch.cat(passes).float()
