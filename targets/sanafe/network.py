"""A graph marked by targets.sanafe.arithmetic.quantize_sanafe as a SANA-FE network on a Loihi-like chip, run sample by sample.

Each IF node is a neuron group of `leaky_integrate_fire` somas (threshold, reset_mode soft, no leak, initial
potential and bias per neuron); each segment between spiking layers is one sparse connection of the products of
its weights (targets/sanafe/segments.py), so padded convolutions, pooling and sums of paths need no SANA-FE helper.
Input: the first layers' currents are computed on the host and set as the neurons' bias before each sample (Loihi
receives input currents; an analog image has no spikes to send). Readout: computed on the host from the last
layer's spikes, as the reference runtime computes it. Groups fill cores in order, 1,024 neurons a core.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib.resources import files

import nir
import numpy as np
import torch

from targets.result import RunResult
from targets.sanafe.segments import Segment, SegmentEvaluator, readout_segment, spiking_segments
from toolchain.errors import SnncError
from toolchain.ir.metadata import NodeMeta
from toolchain.progress import progress

ARCHITECTURE = "loihi_lean.yaml"
NEURONS_PER_CORE = 1024  # Davies et al. 2018: 1,024 compartments per core (max_neurons_supported in the file)
CORES = 128
# SANA-FE keeps every synapse as an object of about 0.85 KB; above this many the simulation outgrows the memory
# one run may take here (~1 GB per million synapses).
MAX_SYNAPSES = 8_000_000
ENERGY_PARTS = ("synapse", "dendrite", "soma", "network")


@dataclass
class SanafeRun:
    """SANA-FE's spikes (as a RunResult), and its energy (joules) and simulated time (seconds) per sample."""

    result: RunResult
    energy: list[dict[str, float]] = field(repr=False)
    latency: list[float] = field(repr=False)
    wall_seconds: float = 0.0
    cores: int = 0
    synapses: int = 0


def _synapse_unit(graph: nir.NIRGraph, segment: Segment) -> str:
    """The synapse unit by connection format: convolutional, dense (fully connected) or sparse (routing only)."""
    kinds = {type(graph.nodes[n]) for n in segment.between}
    return "conv_synapse" if nir.Conv2d in kinds else "dense_synapse" if kinds & {nir.Affine, nir.Linear} else "sparse_synapse"


class SanafeNetwork:
    def __init__(self, graph: nir.NIRGraph, threads: int = 1):
        import sanafe  # an optional extra: imported only when the target runs

        if str(graph.metadata.get("snnc", {}).get("precision")) != "sanafe":
            raise SnncError("the SANA-FE target runs graphs marked by targets.sanafe.arithmetic.quantize_sanafe")
        self.graph, self.threads = graph, threads
        self.evaluator = SegmentEvaluator(graph)
        self.segments = spiking_segments(graph)
        self.readout, self.integrates = readout_segment(graph)
        self.sizes = {s.target: int(np.prod(self.evaluator.shape(s.target))) for s in self.segments}
        cores_needed = sum(-(-n // NEURONS_PER_CORE) for n in self.sizes.values())
        if cores_needed > CORES:
            raise SnncError(f"the network needs {cores_needed} cores of {NEURONS_PER_CORE} neurons, SANA-FE's Loihi has {CORES}: "
                            "it does not fit one chip")
        connections, self.synapses = [], 0
        for segment in self.segments:
            for source in segment.sources:
                if not segment.reads_input(graph):
                    connections.append((source, segment, self.evaluator.synapses(segment, source)))
                    self.synapses += len(connections[-1][2][0])
                if self.synapses > MAX_SYNAPSES:
                    raise SnncError(f"the network has more than {MAX_SYNAPSES:,} synapses (by layer '{segment.target}'); SANA-FE "
                                    "holds each as an object of ~0.85 KB, too many for this machine's memory")
        self.arch = sanafe.load_arch(str(files("targets.sanafe").joinpath(ARCHITECTURE)))
        network = sanafe.Network()
        groups = {}
        for segment in self.segments:
            node = graph.nodes[segment.target]
            groups[segment.target] = network.create_neuron_group(
                segment.target, self.sizes[segment.target],
                model_attributes={"reset_mode": "soft", "leak_decay": 1.0},
                soma_hw_name="soma", default_synapse_hw_name=_synapse_unit(graph, segment), log_spikes=True)
            threshold = np.broadcast_to(np.asarray(node.v_threshold, np.float32), node.v_threshold.shape).reshape(-1)
            bias = np.asarray(NodeMeta.of(node).bias, np.float32).reshape(-1)
            for i, neuron in enumerate(groups[segment.target].neurons):
                neuron.set_attributes(model_attributes={"threshold": float(threshold[i]), "bias": float(bias[i])})
        for source, segment, (rows, cols, weights) in connections:
            groups[source].connect_neurons_sparse(groups[segment.target], {"weight": weights.astype(np.float32).tolist()},
                                                  list(zip(rows.tolist(), cols.tolist())))
        cores = [core for tile in self.arch.tiles for core in tile.cores]
        used = 0
        for segment in self.segments:
            for i, neuron in enumerate(groups[segment.target].neurons):
                neuron.map_to_core(cores[used + i // NEURONS_PER_CORE])
            used += -(-self.sizes[segment.target] // NEURONS_PER_CORE)
        self.cores = used
        self.chip = sanafe.SpikingChip(self.arch)
        self.chip.load(network)
        self.initial = {s.target: np.broadcast_to(np.asarray(NodeMeta.of(graph.nodes[s.target]).v_init, np.float32),
                                                  np.shape(graph.nodes[s.target].v_threshold)).reshape(-1) for s in self.segments}

    def _prepare(self, sample: np.ndarray) -> None:
        """Reset the chip, give every neuron its initial potential again (reset clears it) and the first layers
        their host currents for this sample."""
        self.chip.reset()
        mapped = self.chip.mapped_neuron_groups
        x = torch.from_numpy(np.asarray(sample, np.float64)[None])
        for segment in self.segments:
            attributes = {"potential": self.initial[segment.target]}
            if segment.reads_input(self.graph):
                current = self.evaluator(segment, {segment.sources[0]: x})[0].reshape(-1).numpy().astype(np.float32)
                attributes["bias"] = current
            neurons = mapped[segment.target]
            for i in range(self.sizes[segment.target]):
                neurons[i].set_attributes(model_attributes={k: float(v[i]) for k, v in attributes.items()})

    def run(self, x: np.ndarray, timesteps: int) -> SanafeRun:
        layer_of = {s.target: NodeMeta.of(self.graph.nodes[s.target]).group or s.target for s in self.segments}
        per_step = {layer: np.zeros(timesteps) for layer in layer_of.values()}
        readout_sources = self.readout.sources
        readouts, energy, latency = [], [], []
        start = time.perf_counter()
        for sample in progress(x, "SANA-FE", total=len(x)):
            self._prepare(sample)
            outcome = self.chip.sim(timesteps, spike_trace=True, perf_trace=False, processing_threads=self.threads)
            trains = {s: np.zeros((timesteps, n)) for s, n in self.sizes.items()}
            for t, fired in enumerate(outcome["spike_trace"]):
                for address in fired:
                    trains[address.group_name][t, address.neuron_offset] = 1.0
            for name, train in trains.items():
                per_step[layer_of[name]] += train.sum(1)
            values = {s: torch.from_numpy(trains[s]).reshape(timesteps, *self.evaluator.shape(s)) for s in readout_sources}
            readouts.append(self.evaluator(self.readout, values).reshape(timesteps, -1).numpy())
            energy.append({"total": outcome["energy"]["total"], **{k: outcome["energy"][k] for k in ENERGY_PARTS}})
            latency.append(outcome["sim_time"])
        readout = np.stack(readouts, axis=1)  # (T, N, classes); the reference's readout sums over steps either way
        if self.integrates:
            readout = readout * np.asarray(self.graph.nodes[self.readout.target].r, np.float64)
        readout = readout.cumsum(0)
        neurons = {layer: 0 for layer in per_step}
        for name, n in self.sizes.items():
            neurons[layer_of[name]] += n
        result = RunResult(predictions=readout.argmax(-1), readout=readout[-1], spikes={k: int(v.sum()) for k, v in per_step.items()},
                           spikes_per_step=per_step, neurons=neurons, samples=len(x), timesteps=timesteps)
        return SanafeRun(result, energy, latency, time.perf_counter() - start, self.cores, self.synapses)
