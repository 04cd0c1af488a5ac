"""A NIR graph seen as SANA-FE sees a network: neuron layers joined by synapses.

Everything between two spiking layers (convolutions, pooling, flattening, sums of several paths) is linear, so it
is one synapse matrix from the source layer's neurons to the target layer's plus a constant current, which SANA-FE
holds as the target neurons' bias. A segment is that stretch of the graph: the layer that it feeds (an IF node,
or the readout), the spiking layers or the Input that it reads, and the linear nodes between.
"""

from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np
import torch

from toolchain.errors import SnncError
from toolchain.ir.kernels import apply_linear, linear_parameters
from toolchain.ir.order import topological_order

ONE_HOT_CHUNK = 256  # source neurons evaluated at once when a segment's synapse matrix is built


@dataclass
class Segment:
    target: str
    sources: list[str]  # IF nodes or the Input node
    between: list[str]  # the linear nodes, in graph order

    def reads_input(self, graph: nir.NIRGraph) -> bool:
        return any(isinstance(graph.nodes[s], nir.Input) for s in self.sources)


def segment_into(graph: nir.NIRGraph, target: str, preds: dict[str, list[str]], order: list[str]) -> Segment:
    """The segment feeding `target`: walk back through linear nodes to the spiking layers or the Input."""
    sources, between, stack = [], set(), list(preds[target])
    while stack:
        name = stack.pop()
        node = graph.nodes[name]
        if isinstance(node, (nir.IF, nir.Input)):
            if name not in sources:
                sources.append(name)
        elif isinstance(node, nir.I):
            raise SnncError(f"NIR node '{name}' (an integrator) feeds '{target}'; SANA-FE runs an integrator only as the readout")
        elif name not in between:
            between.add(name)
            stack.extend(preds[name])
    return Segment(target, sorted(sources, key=order.index), [n for n in order if n in between])


def spiking_segments(graph: nir.NIRGraph) -> list[Segment]:
    """One segment per IF node, in graph order."""
    order, preds = topological_order(graph)
    return [segment_into(graph, n, preds, order) for n in order if isinstance(graph.nodes[n], nir.IF)]


def readout_segment(graph: nir.NIRGraph) -> tuple[Segment, bool]:
    """The segment computed on the host from the last spikes, and whether it integrates (an `I` readout)."""
    order, preds = topological_order(graph)
    output = next(n for n in order if isinstance(graph.nodes[n], nir.Output))
    (last,) = preds[output]
    integrates = isinstance(graph.nodes[last], nir.I)
    return segment_into(graph, last if integrates else output, preds, order), integrates


class SegmentEvaluator:
    """Evaluates a segment's linear nodes in float64 on given source values (batch first, each source's shape)."""

    def __init__(self, graph: nir.NIRGraph):
        self.graph = graph
        self.params = {name: linear_parameters(node, torch.float64) for name, node in graph.nodes.items()}
        self.preds = topological_order(graph)[1]

    def __call__(self, segment: Segment, values: dict[str, torch.Tensor]) -> torch.Tensor:
        computed = dict(values)
        for name in segment.between + [segment.target]:
            incoming = [computed[p] for p in self.preds[name] if p in computed]
            total = incoming[0] if len(incoming) == 1 else torch.stack(incoming).sum(0)
            if name == segment.target:
                return total
            computed[name] = apply_linear(self.graph.nodes[name], self.params[name], total)
        raise AssertionError("unreachable: the target ends every segment")

    def shape(self, name: str) -> tuple[int, ...]:
        node = self.graph.nodes[name]
        key = "input" if isinstance(node, nir.Input) else None
        if key:
            return tuple(int(d) for d in np.asarray(node.input_type["input"]).reshape(-1))
        return tuple(np.shape(node.v_threshold))

    def zero_sources(self, segment: Segment) -> dict[str, torch.Tensor]:
        return {s: torch.zeros((1, *self.shape(s)), dtype=torch.float64) for s in segment.sources}

    def constant_current(self, segment: Segment) -> np.ndarray:
        """What the target receives when no source spikes: the sum of the biases carried through the segment."""
        return self(segment, self.zero_sources(segment))[0].numpy()

    def synapses(self, segment: Segment, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(source index, target index, weight) of every nonzero synapse from `source` (both flattened in C order):
        the segment evaluated on one-hot spikes. Its weighted nodes must carry no bias (quantize_sanafe moves the
        biases to the neurons), so that each weight is a product of the layers' weights, not a difference."""
        zeros = self.zero_sources(segment)
        if torch.any(self(segment, zeros) != 0):
            raise AssertionError(f"segment into '{segment.target}' still carries a bias; move it to the neurons first")
        count = int(np.prod(self.shape(source)))
        rows, cols, weights = [], [], []
        for start in range(0, count, ONE_HOT_CHUNK):
            chunk = min(ONE_HOT_CHUNK, count - start)
            one_hot = torch.zeros((chunk, count), dtype=torch.float64)
            one_hot[torch.arange(chunk), torch.arange(start, start + chunk)] = 1.0
            values = {s: z.expand(chunk, *z.shape[1:]) for s, z in zeros.items()}
            values[source] = one_hot.reshape(chunk, *self.shape(source))
            out = self(segment, values).reshape(chunk, -1).numpy()
            r, c = np.nonzero(out)
            rows.append(r + start)
            cols.append(c)
            weights.append(out[r, c])
        return np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
