"""Synthetic time-series classification sets with ground-truth explanation masks, written from the papers'
and repositories' descriptions of two published benchmarks:

- Ismail et al. 2020, "Benchmarking Deep Learning Interpretability in Time Series Predictions" (NeurIPS;
  github ayaabdelsalam91/TS-Interpretability-Benchmark, Scripts/createSimulationDataProcesses.py and
  run_benchmark.py): 50 features x 50 steps of N(0, 1); the class (two classes, target -1 or +1) is carried
  by a box of cells drawn from N(target, 1). The variants fix where the box is and how big:
  Middle, SmallMiddle, RareTime, RareFeature, Moving_Middle (random place per sample) and PositionalTime
  (a box of N(1, 1) whose place in time, step 1 or step 29, is the class).
- Queen et al. 2023, TimeX (NeurIPS; github mims-harvard/TimeX, txai/synth_data/seq_comb_better.py,
  seq_comb_mv.py, freq_shapes.py): SeqComb-UV (1 x 200) and SeqComb-MV (4 x 200): a NARMA(2) background
  with two planted subsequences, each increasing or decreasing (class 1: both decreasing, 2: both
  increasing, 3: one of each, 0: none, so class 0 has no mask and is left out of scoring, as in TimeX);
  FreqShapes (1 x 50): upward or downward 3-step spikes every 10 or 17 steps (4 classes), noise N(0, 0.25).

Every generator takes (n, seed) and returns (X (n, C, L) float32, y (n,) int64, mask (n, C, L) bool); the
same seed gives the same set. The class counts are balanced (n // classes each, the rest in the last class),
rows shuffled.
"""
import functools

import numpy as np


def _shuffled(rng, X, y, mask):
    order = rng.permutation(len(y))
    return X[order].astype(np.float32), y[order].astype(np.int64), mask[order]


def _balanced_labels(n, classes):
    counts = [n // classes] * (classes - 1) + [n - (n // classes) * (classes - 1)]
    return np.repeat(np.arange(classes), counts)


# -----------------------------------------------------------------------------
# Ismail et al. 2020: a Gaussian box on a Gaussian background
FEATURES, STEPS = 50, 50
# name -> (box steps, box features, first step, first feature); None: a random place per sample
BOXES = {
    "Middle": (30, 30, 10, 10),
    "SmallMiddle": (14, 14, 18, 18),
    "RareTime": (6, 40, 22, 5),
    "RareFeature": (40, 6, 5, 22),
    "Moving_Middle": (30, 30, None, None),
}
POSITIONAL_BOX, POSITIONAL_STEPS = (20, 20), (1, 29)  # PositionalTime: box size, its first step per class


def box_set(name, n, seed):
    """One of Ismail et al.'s box sets (BOXES): class 0 has a box of N(-1, 1), class 1 of N(+1, 1)."""
    box_steps, box_features, first_step, first_feature = BOXES[name]
    rng = np.random.default_rng(seed)
    y = _balanced_labels(n, 2)
    X = rng.normal(0.0, 1.0, (n, FEATURES, STEPS))
    mask = np.zeros(X.shape, bool)
    for i in range(n):
        t = rng.integers(STEPS - box_steps) if first_step is None else first_step
        f = rng.integers(FEATURES - box_features) if first_feature is None else first_feature
        X[i, f:f + box_features, t:t + box_steps] = rng.normal(2.0 * y[i] - 1.0, 1.0, (box_features, box_steps))
        mask[i, f:f + box_features, t:t + box_steps] = True
    return _shuffled(rng, X, y, mask)


def positional_time_set(n, seed):
    """PositionalTime: a box of N(1, 1) at a random feature; its first step (1 or 29) is the class."""
    box_steps, box_features = POSITIONAL_BOX
    rng = np.random.default_rng(seed)
    y = _balanced_labels(n, 2)
    X = rng.normal(0.0, 1.0, (n, FEATURES, STEPS))
    mask = np.zeros(X.shape, bool)
    for i in range(n):
        t, f = POSITIONAL_STEPS[y[i]], rng.integers(FEATURES - box_features)
        X[i, f:f + box_features, t:t + box_steps] = rng.normal(1.0, 1.0, (box_features, box_steps))
        mask[i, f:f + box_features, t:t + box_steps] = True
    return _shuffled(rng, X, y, mask)


# -----------------------------------------------------------------------------
# TimeX (Queen et al. 2023): planted motifs
def narma2(rng, length, burn_in=50):
    """A NARMA series of order 2 as timesynth's `signals.NARMA` (the background of the SeqComb sets):
    y[t+1] = 0.3 y[t] + 0.05 y[t] (y[t] + y[t-1]) + 1.5 u[t-1] u[t] + 0.1, u ~ U(0, 0.5), plus N(0, 0.01)."""
    total = length + burn_in
    u = rng.uniform(0, 0.5, total)
    y = np.zeros(total)
    for t in range(1, total - 1):
        y[t + 1] = 0.3 * y[t] + 0.05 * y[t] * (y[t] + y[t - 1]) + 1.5 * u[t - 1] * u[t] + 0.1
    return y[burn_in:] + rng.normal(0, 0.01, length)


def seq_comb_set(n, seed, channels, motif_steps, frequency):
    """SeqComb: NARMA(2) channels; classes 1-3 get two subsequences of `motif_steps` = (low, high) steps on two
    channels (the same one when there is one channel), the second after the first: a line from -5|min| to
    5|max| of the sample (increasing) or back (decreasing), plus sin(amp * x) with amp ~ Poisson(frequency)."""
    rng = np.random.default_rng(seed)
    length = 200
    y = _balanced_labels(n, 4)
    X = np.stack([np.stack([narma2(rng, length) for _ in range(channels)]) for _ in range(n)])
    mask = np.zeros(X.shape, bool)
    # per class: is each of the two subsequences increasing?
    increasing = {1: (False, False), 2: (True, True), 3: (True, False)}
    for i in range(n):
        if y[i] == 0:
            continue
        sensors = rng.choice(channels, 2, replace=False) if channels > 1 else [0, 0]
        low, high = -5 * abs(X[i].min()), 5 * abs(X[i].max())
        first_end = None
        for sensor, rising in zip(sensors, increasing[y[i]]):
            steps = rng.integers(*motif_steps)
            start = rng.integers(0, length // 2) if first_end is None else rng.integers(first_end, length - steps)
            first_end = start + steps if first_end is None else first_end
            amp = rng.poisson(frequency)
            x = np.arange(-(steps // 2), steps // 2 + steps % 2)
            y0, y1 = (low, high) if rising else (high, low)
            X[i, sensor, start:start + steps] = (y1 - y0) / steps * x + np.sin(amp * x)
            mask[i, sensor, start:start + steps] = True
    return _shuffled(rng, X, y, mask)


def seq_comb_uv(n, seed):
    return seq_comb_set(n, seed, channels=1, motif_steps=(10, 20), frequency=10)


def seq_comb_mv(n, seed):
    return seq_comb_set(n, seed, channels=4, motif_steps=(15, 30), frequency=5)


FREQ_SHAPES = {0: (-1, 10), 1: (1, 10), 2: (-1, 17), 3: (1, 17)}  # class -> (spike direction, period)


def freq_shapes(n, seed, length=50, noise=0.25):
    """FreqShapes: 3-step spikes (+-(2 - 0.25 x^2), x = -1, 0, 1) every `period` steps from a random start."""
    rng = np.random.default_rng(seed)
    y = _balanced_labels(n, 4)
    X = np.zeros((n, 1, length))
    mask = np.zeros(X.shape, bool)
    for i in range(n):
        direction, period = FREQ_SHAPES[y[i]]
        for centre in range(rng.integers(length - period), length, period):
            if centre - 1 >= 0 and centre + 2 <= length:
                X[i, 0, centre - 1:centre + 2] = direction * (2 - 0.25 * np.arange(-1, 2) ** 2)
                mask[i, 0, centre - 1:centre + 2] = True
    X += rng.normal(0, noise, X.shape)
    return _shuffled(rng, X, y, mask)


# name -> generator(n, seed); the TimeX sets' class 0 of SeqComb has no mask
SETS = {**{name: functools.partial(box_set, name) for name in BOXES},
        "PositionalTime": positional_time_set,
        "SeqComb-UV": seq_comb_uv, "SeqComb-MV": seq_comb_mv, "FreqShapes": freq_shapes}
