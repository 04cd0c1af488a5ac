"""The soft-reset family (`if`, `gn`): integrate-and-fire that may emit several spikes in one step.

    v[0] = v_init
    v[t] = v[t-1] + x[t]
    n[t] = clamp(floor(v[t] / θ_u), 0, m)     spikes at step t (0 or 1 when m = 1)
    v[t] ← v[t] − n[t]·θ_u                    reset by subtraction
    o[t] = n[t]·θ_u                           what the next layer receives

with unit threshold θ_u, at most m spikes per step, and the initial potential v_init; a model only chooses
these three from λ. `fire` is the rule, written once: the specification (`step`, `simulate`) and every
target's kernel call it, on numpy arrays or torch tensors, in place.
"""

from __future__ import annotations

import numpy as np

from toolchain.neurons.model import NeuronParameters


def fire(v, threshold, most: int, out):
    """n = clamp(floor(v/θ), 0, m) into `out`, then v ← v − n·θ, both in place; numpy arrays or torch tensors.

    For m = 1, [v ≥ θ] equals clamp(floor(v/θ), 0, 1) for θ > 0 and costs one pass instead of three; integer
    potentials (Loihi precision) divide exactly with floor division."""
    xp = np if isinstance(v, np.ndarray) else _torch()
    if most == 1:
        xp.greater_equal(v, threshold, out=out)
    else:
        if xp is np and v.dtype.kind in "iu":
            np.floor_divide(v, threshold, out=out)
        else:
            xp.divide(v, threshold, out=out)
            xp.floor(out, out=out)
        xp.clip(out, 0, most, out=out)
    if xp is np:
        v -= out * threshold
    else:  # v −= n·θ without a temporary
        v.addcmul_(out, threshold, value=-1)
    return out


def _torch():
    import torch  # only when given tensors: the specification itself is numpy

    return torch


def step(v: np.ndarray, x: np.ndarray, params: NeuronParameters) -> tuple[np.ndarray, np.ndarray]:
    """One time step of the specification: returns (new potential, spike count n[t]). Dtype follows v."""
    v = v + x
    n = np.empty_like(v)
    fire(v, params.unit_threshold, params.max_spikes, n)
    return v, n


def simulate(x: np.ndarray, params: NeuronParameters) -> np.ndarray:
    """Spike counts n[t] for inputs x of shape (T, ...), starting from v_init (the spec, step by step)."""
    v = np.broadcast_to(params.v_init, x.shape[1:]).astype(x.dtype)
    counts = np.empty_like(x)
    for t in range(len(x)):
        v, counts[t] = step(v, x[t], params)
    return counts
