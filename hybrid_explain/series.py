"""Rows of their own lengths: the one home of masking.

A file's rows may end at different steps (`data_loader`: a row's series ends after its last non-empty step); a
batch then is x (N, C, L), padded to the longest row, and lengths (N,), row i being x[i, :, :lengths[i]]. Every
question about which steps are real is answered here, so that the model, the explainers, the metrics and the
figures ask `Rows` (or these functions, for tensors inside the network) instead of branching on missing lengths:

    rows = Rows.of(x, lengths)          # lengths None: every row is L steps long
    model(rows.x, rows.model_lengths)   # None when every row is full length: the network's unmasked fast path
    rows.mask                           # (N, L) bool, True at a row's own steps
    rows.zeroed(maps)                   # (N, ..., L) values with the padding set to exactly 0
    rows[index], rows.repeat(k)         # a subset, every row k times (perturbed copies)

A batch in which every row fills the width is `ragged == False`; the network then takes its unmasked path, which
gives the same numbers as a model that never heard of lengths (tests/test_variable_length.py pins that)."""
from dataclasses import dataclass
import math

import numpy as np
import torch


def step_mask(counts, width: int):
    """(N, width) bool, True at the steps before each row's count (N,): a torch tensor on counts' device for a
    tensor, a numpy array for anything else."""
    if torch.is_tensor(counts):
        return torch.arange(width, device=counts.device)[None, :] < counts[:, None]
    return np.arange(width)[None, :] < np.asarray(counts)[:, None]


def zeroed_after(values: torch.Tensor, count: torch.Tensor, time_dim: int = 2) -> torch.Tensor:
    """values (N, C, T), or (N, T, C) with time_dim 1, with the steps from count (N,) on set to 0 (torch.where, so
    that a NaN there reaches neither the output nor a gradient)."""
    keep = step_mask(count.to(values.device), values.shape[time_dim])
    keep = keep[:, None, :] if time_dim == 2 else keep[:, :, None]
    return torch.where(keep, values, torch.zeros((), dtype=values.dtype, device=values.device))


def own_lengths(lengths, rows) -> np.ndarray:
    """(N,) int64 length of each of rows (N, C, L): lengths as an array, or L for every row where it is None."""
    if lengths is None:
        return np.full(len(rows), rows.shape[2], dtype=np.int64)
    return np.asarray(lengths.cpu() if torch.is_tensor(lengths) else lengths, dtype=np.int64)


def model_lengths(lengths, width: int, device=None):
    """lengths (N,) as a long tensor on device, or None when there are none or every row fills the width: the
    model's fast path, the same numbers as a model without lengths."""
    if lengths is None:
        return None
    lengths = torch.as_tensor(np.asarray(lengths) if not torch.is_tensor(lengths) else lengths, dtype=torch.long)
    if bool((lengths >= width).all()):
        return None
    return lengths.to(device)


def trimmed(x: torch.Tensor, lengths, minimum: int = 1):
    """(x cut to its longest row but at least `minimum` steps, its lengths or None): a batch padded only to its own
    longest series."""
    if lengths is None:
        return x, None
    longest = min(x.shape[2], max(int(lengths.max()), minimum))
    return x[..., :longest], model_lengths(lengths, longest, x.device)


def model_at_lengths(model):
    """f(rows, lengths) for shapley: the model on rows cut to their longest series."""
    minimum = math.prod(model.pool_factors)
    return lambda rows, lengths: model(*trimmed(rows, lengths, minimum))


@dataclass(frozen=True)
class Rows:
    """A batch of series and each row's length: x (N, C, L) on any device, lengths (N,) long on x's device."""
    x: torch.Tensor
    lengths: torch.Tensor

    @classmethod
    def of(cls, x: torch.Tensor, lengths=None) -> "Rows":
        """x with lengths (N,) (tensor, array or list), or every row full length where lengths is None."""
        return cls(x, torch.as_tensor(own_lengths(lengths, x), device=x.device))

    def __len__(self) -> int:
        return len(self.x)

    @property
    def width(self) -> int:
        return self.x.shape[2]

    @property
    def ragged(self) -> bool:
        """Some row ends before the width: the model reads the batch masked."""
        return bool((self.lengths < self.width).any())

    @property
    def model_lengths(self):
        """The lengths argument of model(x, lengths): None when every row is full length (the fast path)."""
        return self.lengths if self.ragged else None

    @property
    def own(self) -> np.ndarray:
        """(N,) int64 lengths as a numpy array."""
        return self.lengths.cpu().numpy()

    @property
    def mask(self) -> torch.Tensor:
        """(N, L) bool: True at each row's own steps."""
        return step_mask(self.lengths, self.width)

    def zeroed(self, values: torch.Tensor) -> torch.Tensor:
        """values (N, ..., L) aligned with the rows, exactly 0 after each row's end."""
        keep = self.mask.to(values.device).view(len(self), *[1] * (values.dim() - 2), self.width)
        return torch.where(keep, values, torch.zeros((), dtype=values.dtype, device=values.device))

    def __getitem__(self, index) -> "Rows":
        """The rows at index (a slice, or integer positions as a tensor, array or list)."""
        if not isinstance(index, slice):
            index = torch.as_tensor(np.asarray(index.cpu() if torch.is_tensor(index) else index, dtype=np.int64),
                                    device=self.x.device)
        return Rows(self.x[index], self.lengths[index])

    def repeat(self, times: int) -> "Rows":
        """Every row `times` times in a row (row 0 times times, then row 1, ...): perturbed copies' lengths."""
        return Rows(self.x.repeat_interleave(times, dim=0), self.lengths.repeat_interleave(times))

    def with_values(self, x: torch.Tensor) -> "Rows":
        """New values (N, C, L) for the same rows: a perturbed batch of the same lengths."""
        return Rows(x, self.lengths.to(x.device))
