"""The reference runtime as a target: every test sample, at the precision the user chose."""

from __future__ import annotations

from targets.interface import Target
from targets.reference.runtime import DEVICES, ReferenceRuntime, resolve_device
from toolchain.ir.metadata import PRECISIONS
from toolchain.option import Option


class ReferenceTarget(Target):
    name = "reference"
    spikes = "graded"
    description = "the fast reference runtime (every test sample)"
    options = (Option("precision", str, "float", "reference runtime arithmetic: float, or loihi (8-bit weights, integer "
                      "state; exact chip semantics)", choices=PRECISIONS),
               Option("device", str, "auto", "where the reference runtime computes: cpu, cuda (a GPU through torch), or auto "
                      "(cuda when torch sees one, else cpu); same spikes on either", choices=DEVICES))

    def precision(self, settings: dict) -> str:
        return settings.get("precision", "float")

    def validate(self, settings: dict) -> None:
        resolve_device(settings.get("device", "auto"))

    def run(self, graph, x, timesteps, settings, threads, batch_size=None, counted_steps=()):
        return ReferenceRuntime(graph, threads=threads, device=settings.get("device", "auto")).run(
            x, timesteps, batch_size=batch_size, label=f"SNN (reference) T={timesteps}", per_neuron_steps=counted_steps)
