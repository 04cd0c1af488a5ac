"""`if-permuted`: the random-permutation baseline of the TPP paper (Bojković et al., ICML 2025; methods.md §5.1).

The paper reports that randomly permuting in time the spike trains of a converted network's layers improves its
accuracy, and proposes TPP neurons to get that effect. The baseline: an `if` layer runs its window of T steps as
usual, then emits its spike train permuted in time, a random permutation per neuron, sample and layer:

    s = IF spikes over the window;   o[t] = s[π(t)]·λ,   π = argsort of the seeded draws two_phase.uniforms

The count per neuron is the IF's (so Q1's bound and rates are unchanged); only the timing is scrambled. Like
the two-phase neurons it needs the whole window before emitting: one window of latency per layer.
"""

import numpy as np

from toolchain.neurons import if_neuron, simulate as simulate_soft_reset
from toolchain.neurons.two_phase import uniforms

NAME = "if-permuted"
PERMUTED = True  # marks the schedule: IF over the window, then a permuted replay
parameters = if_neuron.parameters


def permutation(seed: int, layer: str, sample: int, steps: int, shape) -> np.ndarray:
    """π per neuron: (steps, *shape) indices into the window, from the shared seeded draws."""
    return np.argsort(uniforms(seed, layer, sample, steps, shape), axis=0, kind="stable")


def simulate(x: np.ndarray, params, order: np.ndarray) -> np.ndarray:
    """The specification: IF spikes over the window x (T, ...), replayed in the order `order` (T, ...)."""
    return np.take_along_axis(simulate_soft_reset(x, params), order, axis=0)
