"""Pass: map a float SNN graph to Loihi precision (integers that Lava's fixed_pt models compute exactly).

Integer semantics (the reference runtime's `loihi` precision and the Lava target implement exactly this):

- A weighted node (Affine, Conv2d, Scale) has integer weights W_q and exponent e ∈ [0, 7]; for spike counts s
  its output is a = (W_q · s) · 2^e + b_q. W_q fits Lava's 8-bit synapses: even values in [-256, 254] when
  signs mix, [0, 255] or [-255, 0] otherwise.
- Average pools become sum pools (integer); their 1/k² is folded into the weights that follow or, for a pool
  between weights and a neuron, into that neuron's scale.
- Weighted nodes that read the analog input (through any number of linear nodes, no neuron upstream) run on the
  host: their float output, scaled, is rounded to an integer current (`host` in metadata), as Loihi receives
  input currents.
- A neuron layer with threshold θ receives integer input at scale S (integer value = S × ANN value):
  θ_q = 2·round(θ_u·S/2) (even, so v_init = θ_q/2 and the group-neuron members' staggered starts stay
  integer), and its potential saturates at ±(2^23 − 1) like Loihi's 24-bit state.

Per layer, S is as large as the 8-bit weights allow (the largest |W| maps to the top of the range, so the
weights lose least), and e is the largest exponent that keeps θ_q ≤ 2^16 and the largest possible input
step below 2^22 (headroom for the 24-bit potential), so thresholds, biases and initial potentials are
resolved as finely as the state allows. The relative weight error of every layer is recorded.
"""

from __future__ import annotations

import nir
import numpy as np

import dataclasses

from toolchain.errors import SnncError
from toolchain.ir.metadata import NodeMeta, with_meta
from toolchain.ir.order import input_side_nodes, successors, topological_order
from toolchain.ir.verify import verify_nir

MAX_EXP = 7
THRESHOLD_LIMIT = 2.0**16
INPUT_LIMIT = 2.0**22
MAX_PRESYNAPTIC_SPIKES = 8  # the bound on spikes per step assumed for a presynaptic neuron (τ ≤ 8)
WEIGHTED = (nir.Affine, nir.Linear, nir.Conv2d, nir.Scale)
ROUTING = (nir.AvgPool2d, nir.SumPool2d, nir.Flatten)


def weight_limits(weights: np.ndarray) -> tuple[int, int, int]:
    """(low, high, step) of Lava's 8-bit synapses for these signs: mixed signs lose the lowest bit."""
    if (weights < 0).any() and (weights > 0).any():
        return -256, 254, 2
    return (-255, 0, 1) if (weights < 0).any() else (0, 255, 1)


def largest_code(weights: np.ndarray) -> int:
    """The largest |W_q| available symmetrically: 254 when signs mix, else 255."""
    low, high, _ = weight_limits(weights)
    return min(-low, high) if low < 0 < high else max(-low, high)


def quantize_weights(weights: np.ndarray, scale: float) -> np.ndarray:
    low, high, step = weight_limits(weights)
    return np.clip(np.round(weights * scale / step) * step, low, high)


def _weights(node) -> np.ndarray:
    return np.asarray(node.scale if isinstance(node, nir.Scale) else node.weight, np.float64)


def _pool_area(node) -> float:
    return float(np.prod(np.broadcast_to(np.asarray(node.kernel_size), 2)))


class _Quantizer:
    def __init__(self, graph: nir.NIRGraph):
        self.graph = graph
        self.order, self.preds = topological_order(graph)
        self.succs = successors(graph)
        self.input_side = input_side_nodes(graph)
        self.errors: dict[str, float] = {}

    def upstream_gain(self, name: str) -> float:
        """Π 1/k² of the average pools between a weighted node and the spikes (or input) it reads."""
        gain, current = 1.0, name
        while True:
            sources = self.preds[current]
            if len(sources) != 1:
                return gain
            source = self.graph.nodes[sources[0]]
            if not isinstance(source, ROUTING):
                return gain
            if isinstance(source, nir.AvgPool2d):
                gain /= _pool_area(source)
            current = sources[0]

    def reads_input(self, name: str) -> bool:
        """Whether the node computes on the analog input alone (no neuron upstream), so on the host. Models that
        normalise their input inside the network have several such nodes in a row."""
        return name in self.input_side

    def paths_into(self, consumer: str) -> list[tuple[str, float]]:
        """The weighted nodes feeding a consumer, each with the gain (Π k² of sum pools) on its way there."""
        paths = []
        for source in self.preds[consumer]:
            gain, current = 1.0, source
            while isinstance(self.graph.nodes[current], ROUTING):
                if isinstance(self.graph.nodes[current], nir.AvgPool2d):
                    gain *= _pool_area(self.graph.nodes[current])
                if len(self.preds[current]) != 1:
                    raise SnncError(f"node '{current}' merges several inputs before a pool; not supported at Loihi precision")
                current = self.preds[current][0]
            node = self.graph.nodes[current]
            if not isinstance(node, WEIGHTED):
                raise SnncError(
                    f"'{consumer}' receives '{current}' ({type(node).__name__}) without synaptic weights in between; "
                    "at Loihi precision every neuron input must come through a weighted layer"
                )
            if len(self.succs[current]) != 1:
                raise SnncError(f"weighted node '{current}' feeds {len(self.succs[current])} layers; at Loihi precision each feeds one")
            self._refuse_weighted_before(current)
            paths.append((current, gain))
        return paths

    def _refuse_weighted_before(self, name: str) -> None:
        """Between neuron layers one weighted node quantizes at the next layer's scale; two in a row (a map after an
        activation that no weights could absorb) would need a scale for the values between them."""
        for source in self.preds[name]:
            while isinstance(self.graph.nodes[source], ROUTING) and len(self.preds[source]) == 1:
                source = self.preds[source][0]
            if isinstance(self.graph.nodes[source], WEIGHTED) and not self.reads_input(source):
                raise SnncError(f"weighted nodes '{source}' and '{name}' follow each other between neuron layers (a map "
                                "after an activation, e.g. a BatchNormalization after a ReLU, that shifts what a padded "
                                "convolution reads); at Loihi precision there must be one (--target reference runs it)")

    def quantize_consumer(self, consumer: str, nodes: dict) -> float:
        """Quantize the weighted nodes feeding `consumer`; return the consumer's input scale S."""
        node = self.graph.nodes[consumer]
        spiking = isinstance(node, nir.IF)
        # The largest threshold a neuron compares with: λ = m·θ_u (what expanded group members use).
        theta = float(np.max(node.v_threshold)) * NodeMeta.of(node).max_spikes_per_step if spiking else 0.0
        paths = self.paths_into(consumer)
        chip = [(w, g) for w, g in paths if not self.reads_input(w)]
        if chip:
            base = min(largest_code(_weights(self.graph.nodes[w])) * g / max(np.abs(self.effective_weights(w)).max(), 1e-12)
                       for w, g in chip)
        else:
            base = THRESHOLD_LIMIT / 4 / max(theta, 1e-12) if spiking else 1.0
        exponent = 0
        if spiking and chip:
            exponent = next((e for e in range(MAX_EXP, -1, -1)
                             if theta * base * 2**e <= THRESHOLD_LIMIT
                             and sum(self.input_bound(w, g, base * 2**e, e) for w, g in chip) <= INPUT_LIMIT), 0)
        scale = base * 2**exponent
        for w, g in paths:
            nodes[w] = self.quantize_weighted(w, scale / g, exponent if not self.reads_input(w) else 0)
        return scale

    def effective_weights(self, name: str) -> np.ndarray:
        """A weighted node's weights with the average pools before it folded in."""
        return _weights(self.graph.nodes[name]) * self.upstream_gain(name)

    def input_bound(self, name: str, gain: float, scale: float, exponent: int) -> float:
        """Largest |input| one step can bring through this weighted node, every presynaptic neuron at its most."""
        w = np.abs(quantize_weights(self.effective_weights(name), scale / gain / 2**exponent))
        per_output = w.reshape(w.shape[0], -1).sum(1) if w.ndim > 1 else w
        return float(per_output.max()) * 2**exponent * gain * MAX_PRESYNAPTIC_SPIKES

    def quantize_weighted(self, name: str, scale: float, exponent: int):
        """A copy of a weighted node with integer weights W_q = round(W·g·scale/2^e) (host nodes: float, scaled)."""
        node = self.graph.nodes[name]
        weights = self.effective_weights(name)
        host = self.reads_input(name)
        synaptic = scale / 2**exponent
        quantized = weights * scale if host else quantize_weights(weights, synaptic)
        if not host:
            self.errors[name] = float(np.linalg.norm(quantized / synaptic - weights) / max(np.linalg.norm(weights), 1e-12))
        bias = np.asarray(getattr(node, "bias", np.zeros(1)), np.float64) * scale
        bias = bias if host else np.round(bias)
        meta = dataclasses.replace(NodeMeta.of(node), weight_exp=int(exponent), scale=float(synaptic), host=bool(host)).as_metadata()
        if isinstance(node, nir.Conv2d):
            return nir.Conv2d(input_shape=node.input_shape, weight=quantized, stride=node.stride, padding=node.padding,
                              dilation=node.dilation, groups=node.groups, bias=bias, metadata=meta)
        if isinstance(node, nir.Scale):
            return nir.Scale(scale=quantized, metadata=meta)
        bias = np.broadcast_to(bias, (quantized.shape[0],)) if isinstance(node, nir.Affine) else np.zeros(quantized.shape[0])
        return nir.Affine(weight=quantized, bias=np.ascontiguousarray(bias), metadata=meta)

    def run(self) -> nir.NIRGraph:
        nodes = dict(self.graph.nodes)
        for name in self.order:
            node = self.graph.nodes[name]
            if isinstance(node, nir.AvgPool2d):
                nodes[name] = nir.SumPool2d(kernel_size=node.kernel_size, stride=node.stride, padding=node.padding, metadata=node.metadata)
            elif isinstance(node, nir.IF):
                scale = self.quantize_consumer(name, nodes)
                meta = NodeMeta.of(node)
                unit = 2 * np.round(np.asarray(node.v_threshold, np.float64) * scale / 2)
                if (unit <= 0).any():
                    raise SnncError(f"layer '{name}': its threshold rounds to 0 at Loihi precision; check the layer's weights")
                v_init = unit * (np.asarray(meta.v_init, np.float64) / np.asarray(node.v_threshold, np.float64))
                quantized = dataclasses.replace(meta, v_init=np.round(v_init), scale=float(scale))
                nodes[name] = nir.IF(r=node.r, v_threshold=unit, v_reset=node.v_reset, metadata=quantized.as_metadata())
            elif isinstance(node, nir.I):
                self.quantize_consumer(name, nodes)
        metadata = with_meta(self.graph, precision="loihi", weight_error=dict(self.errors))
        return verify_nir(nir.NIRGraph(nodes=nodes, edges=list(self.graph.edges), metadata=metadata, type_check=False))


def quantize_loihi(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The float SNN graph → the same network with Loihi-precision integer parameters (see module doc)."""
    if any(isinstance(n, nir.IF) and NodeMeta.of(n).group for n in graph.nodes.values()):
        raise SnncError("quantize group neurons before expanding them (quantize_loihi, then expand_group_neurons)")
    return _Quantizer(graph).run()
