"""Neuron models, each defined once: its parameters from a layer's threshold λ, and its per-step update in numpy.

Every model here is a soft-reset integrate-and-fire neuron that may emit several spikes in one step:

    v[0] = v_init
    v[t] = v[t-1] + x[t]
    n[t] = clamp(floor(v[t] / θ_u), 0, m)     spikes at step t (0 or 1 when m = 1)
    v[t] ← v[t] − n[t]·θ_u                    reset by subtraction
    o[t] = n[t]·θ_u                           what the next layer receives

with unit threshold θ_u, at most m spikes per step, and the initial potential v_init; a model only chooses
these three from λ. `step` below is the executable specification every target is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toolchain.errors import SnncError


@dataclass(frozen=True)
class NeuronParameters:
    """The per-neuron constants of a soft-reset IF layer (arrays broadcast to the layer's shape)."""

    unit_threshold: np.ndarray
    max_spikes: int
    v_init: np.ndarray


def step(v: np.ndarray, x: np.ndarray, params: NeuronParameters) -> tuple[np.ndarray, np.ndarray]:
    """One time step of the specification: returns (new potential, spike count n[t]). Dtype follows v."""
    v = v + x
    n = np.clip(np.floor(v / params.unit_threshold), 0, params.max_spikes).astype(v.dtype)
    return v - n * params.unit_threshold, n


def simulate(x: np.ndarray, params: NeuronParameters) -> np.ndarray:
    """Spike counts n[t] for inputs x of shape (T, ...), starting from v_init (the spec, step by step)."""
    v = np.broadcast_to(params.v_init, x.shape[1:]).astype(x.dtype)
    counts = np.empty_like(x)
    for t in range(len(x)):
        v, counts[t] = step(v, x[t], params)
    return counts


def qcfs(x: np.ndarray, threshold, levels: int) -> np.ndarray:
    """The QCFS activation (λ/L)·clip(floor(x·L/λ + 1/2), 0, L), the ANN side of the equivalences."""
    return threshold / levels * np.clip(np.floor(x * levels / threshold + 0.5), 0, levels)


def _models() -> dict:
    from toolchain.neurons import bsnn, gn, if_neuron, if_permuted, parallel, tpp

    return {module.NAME: module for module in (if_neuron, gn, parallel, tpp, if_permuted, bsnn)}


def get_model(name: str):
    """The neuron model module registered under `name`: NAME, parameters(threshold, **options), and for
    two-phase models SCHEDULE (their fire rule and cycle; see two_phase.py)."""
    models = _models()
    if name not in models:
        raise SnncError(f"unknown neuron model '{name}': choose one of {', '.join(models)}")
    return models[name]


def model_names() -> list[str]:
    return list(_models())
