"""The SANA-FE target: snnc's binary-spike networks on SANA-FE's model of Loihi, with its energy and latency.

SANA-FE (PyPI `sanafe`, GPL-3.0; Boyle et al., IEEE TCAD 2025) is an optional extra, imported only when this
target runs: `pip install sanafe==2.2.9` or `make sanafe`. The network runs in SANA-FE's arithmetic, which the
reference runtime reproduces for the check (targets/sanafe/arithmetic.py).
"""

from __future__ import annotations

import importlib.util

import nir
import numpy as np

from targets.reference import ReferenceRuntime
from targets.result import RunResult
from toolchain.errors import SnncError

SANAFE_VERSION = "2.2.9"
INSTALL_HINT = f"the sanafe target needs SANA-FE: pip install sanafe=={SANAFE_VERSION} (or make sanafe)"


def available() -> bool:
    return importlib.util.find_spec("sanafe") is not None


def require() -> None:
    if not available():
        raise SnncError(INSTALL_HINT)


def sanafe_graph(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The graph in SANA-FE's arithmetic (group neurons must be expanded first)."""
    from targets.sanafe.arithmetic import quantize_sanafe

    return quantize_sanafe(graph)


def run_sanafe(graph: nir.NIRGraph, x: np.ndarray, timesteps: int, threads: int = 1) -> tuple[RunResult, dict]:
    """Run samples x on SANA-FE; returns the spikes (RunResult) and the energy and latency per inference:
    {"energy_j": {total, synapse, dendrite, soma, network}, "latency_s", "latency_per_step_s", "wall_s_per_sample",
    "cores", "synapses"} (means over the samples)."""
    require()
    from targets.sanafe.network import ENERGY_PARTS, SanafeNetwork

    run = SanafeNetwork(sanafe_graph(graph), threads).run(x, timesteps)
    energy = {k: float(np.mean([e[k] for e in run.energy])) for k in ("total", *ENERGY_PARTS)}
    latency = float(np.mean(run.latency))
    costs = {"energy_j": energy, "latency_s": latency, "latency_per_step_s": latency / timesteps,
             "wall_s_per_sample": run.wall_seconds / max(len(x), 1), "cores": run.cores, "synapses": run.synapses}
    return run.result, costs


def reference_run(graph: nir.NIRGraph, x: np.ndarray, timesteps: int, per_neuron_steps: tuple[int, ...] = ()) -> RunResult:
    """The reference runtime in SANA-FE's arithmetic on the same samples (the check's other side)."""
    return ReferenceRuntime(sanafe_graph(graph)).run(x, timesteps, label="reference (SANA-FE's samples)",
                                                     per_neuron_steps=per_neuron_steps)


from targets.sanafe.target import SanafeTarget  # noqa: E402 - the target uses the functions above

ORDER = 3
TARGET = SanafeTarget()

__all__ = ["INSTALL_HINT", "SANAFE_VERSION", "TARGET", "available", "reference_run", "require", "run_sanafe", "sanafe_graph"]
