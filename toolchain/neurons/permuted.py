"""The permuted family (`if-permuted`): a soft-reset IF layer runs its window of T steps, then emits its spike
train permuted in time, a random permutation per neuron, sample and layer:

    s = IF spikes over the window;   o[t] = s[π(t)]·λ,   π = argsort of the seeded draws two_phase.uniforms

The count per neuron is the IF's; only the timing is scrambled. It needs the whole window before emitting: one
window of latency per layer.
"""

from __future__ import annotations

import numpy as np

from toolchain.neurons.soft_reset import simulate as simulate_soft_reset
from toolchain.neurons.two_phase import uniforms


def permutation(seed: int, layer: str, sample: int, steps: int, shape) -> np.ndarray:
    """π per neuron: (steps, *shape) indices into the window, from the shared seeded draws."""
    return np.argsort(uniforms(seed, layer, sample, steps, shape), axis=0, kind="stable")


def simulate(x: np.ndarray, params, order: np.ndarray) -> np.ndarray:
    """The specification: IF spikes over the window x (T, ...), replayed in the order `order` (T, ...)."""
    return np.take_along_axis(simulate_soft_reset(x, params), order, axis=0)
