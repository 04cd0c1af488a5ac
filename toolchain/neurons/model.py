"""What declares a neuron model: its name, family, options and parameters (one `NeuronModel` per model file)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from toolchain.option import Option

# A family is one numpy specification and one kernel per target; its models differ only in their parameters and
# options. The schedule is what the NIR metadata records for the family (empty: step by step).
FAMILIES = {"soft_reset": "", "two_phase": "two_phase", "permuted": "permuted"}


@dataclass(frozen=True)
class NeuronParameters:
    """The per-neuron constants of a soft-reset layer (arrays broadcast to the layer's shape)."""

    unit_threshold: np.ndarray
    max_spikes: int
    v_init: np.ndarray


@dataclass(frozen=True)
class NeuronModel:
    """A neuron model, declared once.

    `parameters(threshold, **options)` gives the layer's constants from its ANN threshold λ, taking the options
    named in `parameter_options`. Two-phase models fire with `fire_rule` over cycles of `cycle` steps (0: the whole
    window; an option `cycle` overrides). `graded`: up to several spikes per step, with a binary form for chips
    without graded spikes (`expand_group_neurons`). `distribution_aware`: layers whose QCFS levels differ from T,
    and plain-ReLU models (training-free, thresholds at each channel's maximum), are calibrated per T
    (`calibrate_distribution`)."""

    name: str
    family: str
    summary: str
    parameters: Callable[..., NeuronParameters]
    options: tuple[Option, ...] = ()
    parameter_options: tuple[str, ...] = ()
    fire_rule: str = "deterministic"
    cycle: int = 0
    graded: bool = False
    distribution_aware: bool = False

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"neuron model {self.name}: unknown family {self.family!r}")

    @property
    def schedule(self) -> str:
        return FAMILIES[self.family]

    def defaults(self) -> dict:
        return {o.name: o.default for o in self.options}
