"""`tpp`: two-phase probabilistic neurons (Bojković, Wu, Gu, ICML 2025) — a RECONSTRUCTION (methods.md §5.2).

The paper's method section could not be read; this follows every verified hint (accumulate, then fire with
Bernoulli draws; reproduces a random permutation of an IF spike train) and is unbiased. Over a window of T steps:

    integrate:  v = Σ_t x[t]                                   (v_init = 0: no input, no spike)
    count:      n = clip(floor(v/θ) + [u₀ < frac(v/θ)], 0, T)   (stochastic rounding: E[n] = clip(v/θ, 0, T))
    fire t=0..T−1:  s[t] = [u_{t+1} < (n − Σ_{t'<t} s[t']) / (T − t)]   (exactly n spikes, every n-subset equally likely)

So the spikes are a uniformly random permutation of an IF train whose count is v/θ rounded up or down at
random, in proportion. An earlier reading (v_init = θ/2, p_t = clip(v/((T − t)θ), 0, 1)) fired 0.73 spikes
on average for no input at T=4. The rule is `two_phase.bernoulli_window`. Draws are seeded (`--seed`): the same
seed gives the same spikes on every target.
"""

import dataclasses

import numpy as np

from toolchain.neurons import if_neuron
from toolchain.neurons.model import NeuronModel, NeuronParameters
from toolchain.option import Option

ORDER = 3
SEED = Option("seed", int, 0, "seed of the random draws of tpp and if-permuted (default: 0)")


def parameters(threshold) -> NeuronParameters:
    """IF's constants, starting from v = 0: an initial θ/2 would add half a spike to every expected count."""
    params = if_neuron.parameters(threshold)
    return dataclasses.replace(params, v_init=np.zeros_like(params.unit_threshold))


MODEL = NeuronModel(name="tpp", family="two_phase", summary="two-phase probabilistic: integrate T steps, then an "
                    "unbiased count of Bernoulli spikes (reconstruction)", parameters=parameters, fire_rule="bernoulli",
                    options=(SEED,))
