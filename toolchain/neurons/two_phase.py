"""The two-phase skeleton shared by `parallel`, `tpp` and `bsnn` (methods.md §7.1): a neuron first integrates a
whole window of inputs with firing disabled, then fires for a window of the same length with no input.

    integrate:  v = v_init + Σ_{t in window} x[t]
    fire:       c steps with the model's rule; every spike subtracts θ from v

The rule is the only difference between the models, so each is one function here and can be corrected in
one place. Windows are the whole T steps (`parallel`, `tpp`) or cycles of c steps (`bsnn`), the potential left
after firing carrying into the next cycle. Such a neuron cannot emit before its window is complete: on a
streaming target each layer adds a window of latency (depth × window in total).

`u` are uniform random numbers in [0, 1), one per neuron and step, drawn from `uniforms` so that every target
uses the same draws for the same (seed, layer, sample).
"""

from __future__ import annotations

import zlib

import numpy as np


def deterministic_window(v, threshold, cycle: int, u=None):
    """IF firing without input for c steps: n = clamp(floor(v/θ), 0, c) spikes at the first n steps."""
    n = np.clip(np.floor(v / threshold), 0, cycle)
    spikes = (np.arange(cycle).reshape((cycle,) + (1,) * np.ndim(v)) < n).astype(v.dtype)
    return spikes, v - n * threshold


def bernoulli_window(v, threshold, cycle: int, u):
    """TPP reconstruction (methods.md §5.2): at fire step t, p = clip(v / ((c − t + 1)·θ), 0, 1), spike iff u[t] < p."""
    spikes = np.zeros((cycle, *np.shape(v)), v.dtype)
    for t in range(cycle):
        p = np.clip(v / ((cycle - t) * threshold), 0, 1)
        spikes[t] = u[t] < p
        v = v - spikes[t] * threshold
    return spikes, v


RULES = {"deterministic": deterministic_window, "bernoulli": bernoulli_window}


def draws(seed: int, layer: str, sample: int) -> np.random.Generator:
    """The stream of random numbers of one layer for one sample. Drawing it step by step, `random(shape)` per
    step, gives the same numbers as `uniforms` at once (each float64 takes one 64-bit output, in order)."""
    return np.random.default_rng([seed, zlib.crc32(layer.encode()), sample])


def uniforms(seed: int, layer: str, sample: int, steps: int, shape) -> np.ndarray:
    """The random numbers of one layer for one sample: (steps, *shape), float64 in [0, 1)."""
    return draws(seed, layer, sample).random((steps, *shape))


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
