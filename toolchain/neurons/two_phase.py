"""The two-phase skeleton shared by `parallel`, `tpp` and `bsnn` (methods.md §7.1): a neuron first integrates a
whole window of inputs with firing disabled, then fires for a window of the same length with no input.

    integrate:  v = v_init + Σ_{t in window} x[t]
    fire:       c steps with the model's rule; every spike subtracts θ from v

The rule is the only difference between the models, so each is one function here and can be corrected in
one place. Windows are the whole T steps (`parallel`, `tpp`) or cycles of c steps (`bsnn`), the potential left
after firing carrying into the next cycle. Such a neuron cannot emit before its window is complete: on a
streaming target each layer adds a window of latency (depth × window in total).

`u` are uniform random numbers in [0, 1), one per neuron and step, from `uniforms`: a counter-based generator,
so that every target uses the same draws for the same (seed, layer, sample) and may compute them in any order.
"""

from __future__ import annotations

import zlib

import numpy as np


def deterministic_window(v, threshold, cycle: int, u=None):
    """IF firing without input for c steps: n = clamp(floor(v/θ), 0, c) spikes at the first n steps.
    numpy arrays or torch tensors; returns (spikes (c, ...), the potential left)."""
    xp = np if isinstance(v, (np.ndarray, np.generic)) else _torch()
    n = xp.clip(xp.floor(v / threshold), 0, cycle)
    steps = xp.arange(cycle).reshape((cycle,) + (1,) * v.ndim)
    return (steps < n).to(v.dtype) if xp is not np else (steps < n).astype(v.dtype), v - n * threshold


def _torch():
    import torch  # only when given tensors: the specification itself is numpy

    return torch


def bernoulli_window(v, threshold, cycle: int, u):
    """TPP reconstruction (methods.md §5.2): at fire step t, p = clip(v / ((c − t + 1)·θ), 0, 1), spike iff u[t] < p."""
    spikes = np.zeros((cycle, *np.shape(v)), v.dtype)
    for t in range(cycle):
        p = np.clip(v / ((cycle - t) * threshold), 0, 1)
        spikes[t] = u[t] < p
        v = v - spikes[t] * threshold
    return spikes, v


RULES = {"deterministic": deterministic_window, "bernoulli": bernoulli_window}


GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment, 2^64 / φ


def mix(z):
    """SplitMix64's finaliser: a bijection of uint64 whose outputs for consecutive inputs pass BigCrush.
    Plain arithmetic, so that the runtime's compiled kernel uses this very function; uint64 arithmetic wraps around,
    as intended (callers silence NumPy's overflow warning for scalars)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stream_key(seed: int, layer: str, sample: int) -> np.uint64:
    """The key of one layer's random numbers for one sample."""
    with np.errstate(over="ignore"):
        key = mix(np.uint64(seed % 2**64) * GOLDEN + np.uint64(zlib.crc32(layer.encode())))
        return mix(key + np.uint64(sample) * GOLDEN)


def uniforms(seed: int, layer: str, sample: int, steps: int, shape) -> np.ndarray:
    """The random numbers of one layer for one sample: (steps, *shape), float64 in [0, 1).

    Counter-based, so that any target can compute any one number on its own, in any order and in parallel:
    u[t, i] = top 53 bits of mix(key + (t·size + i + 1)·GOLDEN) / 2^53, i the neuron's index in C order (the
    SplitMix64 sequence of the stream's key).
    """
    size = int(np.prod(shape, dtype=np.int64))
    counters = np.arange(1, steps * size + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        bits = mix(stream_key(seed, layer, sample) + counters * GOLDEN)
    return ((bits >> np.uint64(11)).astype(np.float64) * 2.0**-53).reshape(steps, *shape)


def simulate(x: np.ndarray, threshold, v_init, rule: str, cycle: int, u: np.ndarray | None = None) -> np.ndarray:
    """Spikes (T, ...) for inputs x (T, ...): per cycle of `cycle` steps, integrate it, then fire for `cycle` steps.

    The output for cycle j is written in cycle j's slots; on a streaming target it appears one cycle later.
    Arithmetic follows x's dtype.
    """
    steps = len(x)
    if steps % cycle:
        raise ValueError(f"{steps} steps are not a whole number of {cycle}-step cycles")
    threshold = np.asarray(threshold, x.dtype)
    v = np.broadcast_to(np.asarray(v_init, x.dtype), x.shape[1:]).copy()
    out = np.zeros_like(x)
    for start in range(0, steps, cycle):
        v = v + x[start: start + cycle].sum(0)
        out[start: start + cycle], v = RULES[rule](v, threshold, cycle, None if u is None else u[start: start + cycle])
    return out
