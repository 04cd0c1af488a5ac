"""Exact operation counts of a NIR graph: ANN MACs, synapses and synaptic operations per layer (docs/energy.md).

A *layer* is where synapses end: a spiking layer (one IF node, or a group neuron's member nodes together) or the
readout integrator. The synapses into a layer are the paths from a source neuron (a spiking neuron, or the analog
input) through linear nodes (Conv2d, Affine, Linear, AvgPool2d, SumPool2d, Scale, Flatten, and NIR's summing of
the edges into a node) to one of the layer's neurons; a weight of zero is no synapse.

Fan-out is computed once per graph: ones pushed backwards through the transposed linear nodes (the reference
kernels' vector-Jacobian product, with every nonzero weight set to 1 and average pools run as sum pools) give,
for every source neuron, its number of paths into the layer. Borders of padded convolutions, strides, pooling
and residual merges come out exactly. A spike through a pool and then a convolution reaches the convolution's
fan-out of that pool window; a residual shortcut is its own synapse beside the convolution, as NIR keeps it (and
snnc's Lava mapping runs it). Paths equal distinct targets unless two paths join the same pair of neurons
(overlapping pools before a convolution, or a shortcut into a layer the neuron also reaches through a
convolution); each path is then one synaptic event, as each is a synapse in the graph.

MACs of an ANN weighted node (Conv2d, Affine, Linear) are its output positions × its nonzero weights per position
(C_out·H_out·W_out·C_in/g·kh·kw for dense weights; the identity blocks snnc lowers Concat into cost one per
element), charged to the first layer it feeds. Weighted nodes that read only the analog input form the SNN's
input layer, which a chip computes at every step (`input_macs`, per step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import nir
import numpy as np
import torch

from toolchain.ir.kernels import LINEAR_NODES, WEIGHTED_NODES, apply_linear
from toolchain.ir.metadata import NodeMeta
from toolchain.ir.order import topological_order
from toolchain.ir.shapes import node_shapes

# Counts are integers; float32 holds them exactly below 2^24 and runs the convolutions several times faster than
# float64. `exact_counts` checks the bound.
COUNT_DTYPE = torch.float32
EXACT_BELOW = 2**24


@dataclass
class Layer:
    """Neurons where synapses end: one NIR node, or a group neuron's member nodes (each of `shape`)."""

    name: str
    nodes: list[str]
    shape: tuple[int, ...]
    readout: bool

    @property
    def units(self) -> int:
        """Neurons of one node: the ANN's units in this layer."""
        return math.prod(self.shape)

    @property
    def neurons(self) -> int:
        """Neurons the SNN updates at every step (all members of a group)."""
        return self.units * len(self.nodes)


@dataclass
class Structure:
    """A graph's layers (topological order), each source layer's fan-out into each layer, and the MACs."""

    layers: dict[str, Layer]
    fanout: dict[tuple[str, str], np.ndarray]  # (source layer, layer) -> paths from each neuron of one source node
    macs: dict[str, int]                       # ANN MACs per inference into each layer
    input_macs: dict[str, int]                 # MACs per step on the analog input into each layer

    def synapses(self, layer: str) -> int:
        """Synapses into `layer` that spikes drive (each member of a source group has its own)."""
        return sum(int(fan.sum()) * len(self.layers[source].nodes)
                   for (source, target), fan in self.fanout.items() if target == layer)


class StructuralKernels:
    """The graph's linear nodes with every nonzero weight set to 1, run forwards or transposed on counts."""

    def __init__(self, graph: nir.NIRGraph):
        self.graph = graph
        self.order, self.preds = topological_order(graph)
        self.kernels = {name: _structural(node) for name, node in graph.nodes.items() if isinstance(node, LINEAR_NODES)}
        self.shapes = node_shapes(graph)
        self._transposes = {}  # (node, batch size) -> the node's vector-Jacobian product, reused for every call

    def forward(self, name: str, x: torch.Tensor) -> torch.Tensor:
        node, params = self.kernels[name]
        return apply_linear(node, params, x)

    def transpose(self, name: str, counts: torch.Tensor) -> torch.Tensor:
        """(B, *output shape) counts at a linear node's output → (B, *input shape) counts at its input."""
        key = (name, counts.shape[0])
        if key not in self._transposes:
            x = torch.zeros((counts.shape[0], *self.shapes[self.preds[name][0]]), dtype=COUNT_DTYPE)
            self._transposes[key] = torch.func.vjp(lambda value: self.forward(name, value), x)[1]
        (back,) = self._transposes[key](counts)
        return back

    def paths_back(self, seeds: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        """Push (B, *shape) counts at the inputs of the seeded neuron nodes back through the linear nodes: the
        paths from every output element of each source node (IF or Input) reached, and the linear nodes passed."""
        reach: dict[str, torch.Tensor] = {}

        def add(name: str, counts: torch.Tensor) -> None:
            reach[name] = reach[name] + counts if name in reach else counts

        for node, counts in seeds.items():
            for source in self.preds[node]:
                add(source, counts)
        passed = []
        for name in reversed(self.order):  # a node's consumers all come later, so its counts are complete here
            if name in reach and name in self.kernels:
                back = self.transpose(name, reach.pop(name))
                passed.append(name)
                for source in self.preds[name]:
                    add(source, back)
        return reach, passed


def _structural(node: nir.NIRNode) -> tuple[nir.NIRNode, dict]:
    """The node and reference-kernel parameters that count connections: weights 1 where nonzero, no bias."""
    pattern = lambda a: torch.from_numpy(np.asarray(a) != 0).to(COUNT_DTYPE)
    if isinstance(node, WEIGHTED_NODES):
        return node, {"weight": pattern(node.weight), "bias": None}
    if isinstance(node, nir.Scale):
        return node, {"scale": pattern(node.scale)}
    if isinstance(node, nir.AvgPool2d):
        return nir.SumPool2d(kernel_size=node.kernel_size, stride=node.stride, padding=node.padding), {}
    return node, {}


def layers_of(graph: nir.NIRGraph, order: list[str], shapes: dict[str, tuple[int, ...]]) -> dict[str, Layer]:
    """Spiking layers (a group's members under the group's name, as the runtime reports them) and readouts."""
    layers: dict[str, Layer] = {}
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, nir.IF):
            layer = NodeMeta.of(node).group or name
            layers.setdefault(layer, Layer(layer, [], shapes[name], readout=False)).nodes.append(name)
        elif isinstance(node, nir.I):
            layers[name] = Layer(name, [name], shapes[name], readout=True)
    return layers


def structure_of(graph: nir.NIRGraph) -> Structure:
    kernels = StructuralKernels(graph)
    layers = layers_of(graph, kernels.order, kernels.shapes)
    layer_of = {node: layer.name for layer in layers.values() for node in layer.nodes}
    analog = analog_nodes(graph, kernels)
    fanout, macs, input_macs, charged = {}, {}, {}, set()
    for layer in layers.values():
        seeds = {node: torch.ones((1, *layer.shape), dtype=COUNT_DTYPE) for node in layer.nodes}
        reach, passed = kernels.paths_back(seeds)
        for source, paths in reach.items():
            if source not in layer_of:  # the analog input: charged as MACs below
                continue
            counts = exact_counts(paths[0])
            key = (layer_of[source], layer.name)
            # Members of a group have the same edges (expand_group_neurons), hence the same fan-out.
            assert key not in fanout or np.array_equal(fanout[key], counts), f"members of {key[0]} differ in fan-out"
            fanout[key] = counts
        weighted = [n for n in passed if isinstance(graph.nodes[n], WEIGHTED_NODES) and n not in charged]
        charged.update(weighted)
        macs[layer.name] = sum(_macs(graph.nodes[n], kernels.shapes[n]) for n in weighted)
        input_macs[layer.name] = sum(_macs(graph.nodes[n], kernels.shapes[n]) for n in weighted if n in analog)
    return Structure(layers=layers, fanout=fanout, macs=macs, input_macs=input_macs)


def exact_counts(counts: torch.Tensor) -> np.ndarray:
    """Path counts as integers; an AssertionError if they reached where float32 stops counting exactly."""
    values = np.rint(counts.numpy()).astype(np.int64)
    assert values.max(initial=0) < EXACT_BELOW, "path counts beyond float32's exact integers"
    return values


def analog_nodes(graph: nir.NIRGraph, kernels: StructuralKernels) -> set[str]:
    """Nodes computed from the analog input alone (before any neuron)."""
    analog = set()
    for name in kernels.order:
        node = graph.nodes[name]
        if isinstance(node, nir.Input) or (name in kernels.kernels and all(p in analog for p in kernels.preds[name])):
            analog.add(name)
    return analog


def _macs(node: nir.NIRNode, output_shape: tuple[int, ...]) -> int:
    """Output positions × nonzero weights per position."""
    nonzero = int(np.count_nonzero(node.weight))
    return nonzero * math.prod(output_shape[1:]) if isinstance(node, nir.Conv2d) else nonzero


def synaptic_operations(structure: Structure, events_per_neuron: dict[str, np.ndarray], steps: int) -> dict[str, np.ndarray]:
    """Per layer, Σ over source neurons of events × fan-out at each of `steps` counted steps: `events_per_neuron`
    maps a spiking layer to (steps, *neuron shape) totals (a group's members summed: they share their fan-out)."""
    totals = {name: np.zeros(steps, np.int64) for name in structure.layers}
    for (source, layer), fan in structure.fanout.items():
        events = np.rint(events_per_neuron[source]).astype(np.int64).reshape(steps, -1)
        totals[layer] += events @ fan.reshape(-1)
    return totals
