"""What a target is: one package under targets/ whose `TARGET` implements `Target`.

A target says what spikes it runs (binary, or graded counts per step), at which precision it runs a network, which
options it takes, how it runs a compiled NIR graph on samples, and how its run is checked against the reference
runtime at the same precision. The pipeline loops over the requested targets and knows nothing else of them.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np

from targets.result import RunResult
from toolchain.option import Option


class Target:
    """Subclasses set the class attributes and override `run` (and `check`, `export` where they apply)."""

    name: str = ""
    spikes: str = "graded"            # "graded": up to m spikes per step; "binary": group neurons run as members
    options: tuple[Option, ...] = ()
    description: str = ""

    def precision(self, settings: dict) -> str | None:
        """The precision of the network it runs ("float" or "loihi"); None for a target that runs nothing."""
        return "float"

    def samples(self, settings: dict, available: int) -> int:
        """How many of the test samples it runs (a chip simulator runs a few; the reference all)."""
        return available

    def run(self, graph: nir.NIRGraph, x: np.ndarray, timesteps: int, settings: dict, threads: int,
            batch_size: int | None = None, counted_steps: tuple[int, ...] = ()) -> RunResult:
        """Run samples x for `timesteps` steps; per-neuron totals at `counted_steps` where the target can count them."""
        raise NotImplementedError(f"target {self.name} runs nothing")

    def exact(self, settings: dict) -> bool | None:
        """Whether its run must equal the reference's spike for spike (True), agree within the float tolerance
        (False), or is not checked (None)."""
        return None

    def require(self) -> None:
        """SnncError (one line: how to get it) when what the target needs is not installed; checked before compiling."""

    def validate(self, settings: dict) -> None:
        """SnncError (one line) when this machine cannot honour the target's settings (e.g. a device it lacks);
        checked with the options, before compiling."""

    def reference_graph(self, graph: nir.NIRGraph) -> nir.NIRGraph:
        """The network the reference runtime runs for the check: the same one, or the same in the target's arithmetic."""
        return graph

    simulates_energy: bool = False  # its run reports a simulated energy, which the report sets beside snnc's estimate

    def compare_energy(self, entry: dict, estimate: dict, timesteps: int) -> dict:
        """Report fields comparing its simulated energy (in `entry`) with snnc's estimate for the same spikes."""
        return {}

    def export(self, folder: Path, graph: nir.NIRGraph, settings: dict) -> dict | None:
        """Files it writes beside model.nir and the report section describing them (None: none)."""
        return None
