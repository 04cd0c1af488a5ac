"""The two-phase skeleton shared by `parallel`, `tpp` and `bsnn` (methods.md §7.1): a neuron first integrates a
whole window of inputs with firing disabled, then fires for a window of the same length with no input.

    integrate:  v = v_init + Σ_{t in window} x[t]
    fire:       c steps with the model's rule; every spike subtracts θ from v

The rule is the only difference between the models, so each is one function here and can be corrected in
one place. Windows are the whole T steps (`parallel`, `tpp`) or cycles of c steps (`bsnn`), the potential left
after firing carrying into the next cycle. Such a neuron cannot emit before its window is complete: on a
streaming target each layer adds a window of latency (depth × window in total).

`u` are uniform random numbers in [0, 1) from `uniforms`: a counter-based generator, so that every target uses
the same draws for the same (seed, layer, sample) and may compute them in any order. The Bernoulli rule takes
c + 1 per neuron and cycle (`bernoulli_draws`): one to round its count, one per step to place the spikes.
"""

from __future__ import annotations

import zlib

import numpy as np


def deterministic_window(v, threshold, cycle: int, u=None):
    """IF firing without input for c steps: n = clamp(floor(v/θ), 0, c) spikes at the first n steps.
    numpy arrays or torch tensors; returns (spikes (c, ...), the potential left)."""
    xp = np if isinstance(v, (np.ndarray, np.generic)) else _torch()
    n = xp.clip(xp.floor(v / threshold), 0, cycle)
    steps = (xp.arange(cycle) if xp is np else xp.arange(cycle, device=v.device)).reshape((cycle,) + (1,) * v.ndim)
    return (steps < n).to(v.dtype) if xp is not np else (steps < n).astype(v.dtype), v - n * threshold


def _torch():
    import torch  # only when given tensors: the specification itself is numpy

    return torch


def bernoulli_window(v, threshold, cycle: int, u):
    """TPP reconstruction (methods.md §5.2), unbiased: E[n] = clip(v/θ, 0, c), spikes on a uniformly random subset.

    u: (c + 1, ...) draws of the cycle (`cycle_rows`). u[0] rounds v/θ stochastically, so that the count is
    unbiased: n = clip(floor(v/θ) + [u[0] < frac(v/θ)], 0, c). u[1 + t] places the spikes by sequential
    sampling without replacement: at fire step t (0-based) spike iff u[1 + t] < (n − spikes so far)/(c − t),
    which fires exactly n times, every n-subset of the c steps equally likely. The potential left is v − n·θ.
    The ratio v/θ follows v's dtype, like the deterministic rule; the probabilities are float64 quotients of
    small integers, so every target computes the same bits."""
    ratio = v / threshold
    whole = np.floor(ratio)
    count = np.clip(whole + (u[0] < ratio - whole), 0, cycle)
    remaining = count.astype(np.float64)
    spikes = np.zeros((cycle, *np.shape(v)), v.dtype)
    for t in range(cycle):
        fired = u[1 + t] < remaining / (cycle - t)
        spikes[t] = fired
        remaining = remaining - fired
    return spikes, v - count * threshold


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


def bernoulli_draws(seed: int, layer: str, sample: int, steps: int, cycle: int, shape) -> np.ndarray:
    """The Bernoulli rule's random numbers for one window of `steps` in cycles of `cycle` steps: c + 1 rows of
    `uniforms` per cycle, the cycle's rounding draw first (`cycle_rows` gives a cycle's rows)."""
    return uniforms(seed, layer, sample, steps // cycle * (cycle + 1), shape)


def cycle_rows(start: int, cycle: int) -> slice:
    """The rows of `bernoulli_draws` that the cycle beginning at step `start` of the window uses."""
    first = start // cycle * (cycle + 1)
    return slice(first, first + cycle + 1)


def simulate(x: np.ndarray, threshold, v_init, rule: str, cycle: int, u: np.ndarray | None = None) -> np.ndarray:
    """Spikes (T, ...) for inputs x (T, ...): per cycle of `cycle` steps, integrate it, then fire for `cycle` steps.
    u: the rule's draws for the window (`bernoulli_draws`), or None for the deterministic rule.

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
        out[start: start + cycle], v = RULES[rule](v, threshold, cycle, None if u is None else u[cycle_rows(start, cycle)])
    return out
