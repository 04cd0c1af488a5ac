"""`tpp`: two-phase probabilistic neurons (Bojković, Wu, Gu, ICML 2025) — a RECONSTRUCTION (methods.md §5.2).

The paper's method section could not be read; this follows every verified hint (accumulate, then fire with
Bernoulli draws; reproduces a random permutation of an IF spike train). Over a window of T steps:

    integrate:  v = θ/2 + Σ_t x[t]          (the initial potential θ/2 is our choice; the paper's is unknown)
    fire t=1..T: p = clip(v / ((T − t + 1)·θ), 0, 1);  s ~ Bernoulli(p);  v ← v − s·θ

Properties of this rule (tested): if v = k·θ for an integer 0 ≤ k ≤ T it fires exactly k spikes, on a uniformly
random set of k steps; in general the count is floor or ceil of clip(v/θ, 0, T). It is biased for fractional
v/θ, so if the paper proves an unbiased rate its rule differs here. The rule is `two_phase.bernoulli_rule`.
Draws are seeded (`--seed`): the same seed gives the same spikes on every target.
"""

from toolchain.neurons import if_neuron
from toolchain.neurons.model import NeuronModel
from toolchain.option import Option

ORDER = 3
SEED = Option("seed", int, 0, "seed of the random draws of tpp and if-permuted (default: 0)")

MODEL = NeuronModel(name="tpp", family="two_phase", summary="two-phase probabilistic: integrate T steps, then Bernoulli "
                    "firing (reconstruction)", parameters=if_neuron.parameters, fire_rule="bernoulli", options=(SEED,))
