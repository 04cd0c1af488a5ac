"""`if`: integrate-and-fire with reset by subtraction, the QCFS baseline (Bu et al., ICLR 2022).

    v[0] = λ/2
    v[t] = v[t-1] + x[t];   s[t] = [v[t] ≥ λ];   v[t] ← v[t] − s[t]·λ;   o[t] = s[t]·λ

Invariant Q1 (methods.md §1.3): if every x[t] lies in [0, λ] — or x is constant, for any value — then
mean_t o[t] = QCFS_{L=T, λ}(mean_t x[t]) exactly. Without the bound the equality fails (unevenness error).
"""

import numpy as np

from toolchain.neurons.model import NeuronModel, NeuronParameters

ORDER = 0


def parameters(threshold) -> NeuronParameters:
    threshold = np.asarray(threshold, np.float32)
    return NeuronParameters(unit_threshold=threshold, max_spikes=1, v_init=threshold / 2)


MODEL = NeuronModel(name="if", family="soft_reset", summary="integrate-and-fire, reset by subtraction, v[0] = λ/2",
                    parameters=parameters)
