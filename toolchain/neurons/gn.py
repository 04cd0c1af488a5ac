"""`gn`: group neurons (Lv, Fang, Yuan, Tian, ICASSP 2024; methods.md §3, from the official code).

A group of τ members shares one membrane; member k fires when v ≥ k·λ/τ, so

    θ' = λ/τ;   v[0] = θ'/2
    v[t] = v[t-1] + x[t];   n[t] = clamp(floor(v[t]/θ'), 0, τ);   v[t] ← v[t] − n[t]·θ';   o[t] = n[t]·θ'

Invariants (methods.md §3.4, property-tested):
  G1  τ = 1 is the `if` neuron, step for step, for any input.
  G2  o[t] ∈ {0, λ/τ, …, λ}: at most τ spikes per step.
  G3  if every x[t] ∈ [0, λ] (or x is constant, any value), mean_t o[t] = QCFS_{L=τ·T, λ}(mean_t x[t]) exactly:
      τ members for T steps resolve as finely as one IF neuron for τ·T steps.
"""

import numpy as np

from toolchain.errors import SnncError
from toolchain.neurons.model import NeuronModel, NeuronParameters
from toolchain.option import Option

ORDER = 1
DEFAULT_TAU = 4
FORMS = ("compact", "expanded")


def parameters(threshold, tau: int = DEFAULT_TAU) -> NeuronParameters:
    if not isinstance(tau, (int, np.integer)) or tau < 1:
        raise SnncError(f"--tau must be a positive integer (got {tau})")
    unit = np.asarray(threshold, np.float32) / np.float32(tau)
    return NeuronParameters(unit_threshold=unit, max_spikes=int(tau), v_init=unit / 2)


def member_initial_potentials(threshold, tau: int) -> list[np.ndarray]:
    """v_k[0] = (2k+1)·λ/(2τ), k = 0..τ−1: the staggered starts of the binary members (methods.md §3.6)."""
    threshold = np.asarray(threshold, np.float32)
    return [threshold * np.float32((2 * k + 1) / (2 * tau)) for k in range(tau)]


MODEL = NeuronModel(
    name="gn", family="soft_reset", summary="group neurons: τ members share a membrane, up to τ spikes per step",
    parameters=parameters, parameter_options=("tau",), graded=True,
    options=(Option("tau", int, DEFAULT_TAU, f"members per group neuron (default: {DEFAULT_TAU})", minimum=1),
             Option("gn_form", str, None, "group neurons as graded compact neurons or as tau binary IF members "
                    "(default: compact, expanded when a target needs binary spikes)", choices=FORMS)),
)
