"""What every target's run gives back: predictions per time step, the readout's sums and spikes per layer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RunResult:
    """Predictions after every prefix t = 1..T (shape (T, N)), the readout's final sums (N, classes), and spikes
    per spiking layer: in total, and per time step summed over samples (shape (T,))."""

    predictions: np.ndarray
    readout: np.ndarray = field(repr=False)
    spikes: dict[str, int]
    spikes_per_step: dict[str, np.ndarray] = field(repr=False)
    neurons: dict[str, int]
    samples: int
    timesteps: int
    # Filled when run() is given per_neuron_steps (for exact synaptic-operation counts): per spiking layer,
    # arrays (len(counted_steps), *neuron shape) summed over samples and over steps 1..t for each counted t,
    # of the spikes and of the steps in which the neuron fired at all (one message on a graded-spike chip).
    counted_steps: tuple[int, ...] = ()
    spikes_per_neuron: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    messages_per_neuron: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    # What else a target reports for its run (a simulator's energy and latency, the Lava tag): report entry fields.
    details: dict = field(default_factory=dict)

    def accuracy(self, labels: np.ndarray) -> np.ndarray:
        """Fraction correct after each prefix t = 1..T."""
        return (self.predictions == labels[None, :]).mean(axis=1)

