"""`parallel`: the parallel spiking neuron (Hao et al., ICML 2025; methods.md §6, from the official code).

All T inputs of a layer at once: with S = Σ_t x[t] and θ = λ,

    n = clamp(floor((S + θ/2)/θ), 0, T) spikes, at the first n steps of the window (the code's order; the paper
    puts them at the end — same counts, only the per-step order differs).

It is the two-phase skeleton with the deterministic rule over the whole window and v_init = θ/2.

Invariants (methods.md §6.4, property-tested):
  P1  for any input sequence, mean output = QCFS_{L=T, λ=θ}(mean input) (no unevenness error);
  P2  the spikes form one contiguous block at the start of the window;
  P3  a whole network of parallel neurons reproduces the QCFS(L=T) ANN exactly (identical predictions).
With distribution-aware calibration (T ≠ L) the layer's input carries a per-channel shift ψ (folded into the
preceding bias) and its spikes a per-channel amplitude θ + φ (P4: mean output = DA-QCFS of mean input).
"""

import numpy as np

from toolchain.neurons import if_neuron
from toolchain.neurons.model import NeuronModel
from toolchain.option import Option

ORDER = 2
CALIBRATIONS = ("search", "paper")


def spike_count(total_input, threshold, timesteps: int):
    """n = clamp(floor((S + θ/2)/θ), 0, T): the closed form the official code evaluates."""
    return np.clip(np.floor((total_input + threshold / 2) / threshold), 0, timesteps)


MODEL = NeuronModel(
    name="parallel", family="two_phase", summary="all T steps at once: n = clamp(floor((ΣX + θ/2)/θ), 0, T) spikes",
    parameters=if_neuron.parameters, distribution_aware=True,
    options=(Option("parallel_calibration", str, "search", "for T ≠ L or a ReLU model: search (threshold search, "
                    "default) or paper (ψ and φ only)", choices=CALIBRATIONS),),
)
