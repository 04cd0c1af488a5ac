"""Pass: weighted nodes that follow each other between neuron layers become one synapse layer.

A chip has one synapse layer between two neuron layers, but exported networks often hold several linear maps in a
row: a concatenation's placements before the next convolution (SqueezeNet, DenseNet), a MobileNetV2 bottleneck (a
1×1 convolution with no activation) before the next block's expansion, an activation's scale that no weights
before could take. Each weighted → weighted edge W1 → W2 becomes one node W2∘W1 reading what W1 read, where the
composition is exact:

- a Scale before or after a Scale (elementwise), an Affine, or a Conv2d (one factor per channel);
- Affine after Affine: (W2·W1)·x + W2·b1;
- a pointwise Conv2d (1×1, stride 1, no padding) before a Conv2d: W2[:, :, i, j]·W1 at every tap, W2's geometry;
  W1's bias only where W2 has no padding (a padded W2 reads zeros, not b1, at the border);
- a pointwise Conv2d after a Conv2d: W2·W1[:, :, i, j], W1's geometry, bias W2·b1.

W2 keeps its own bias and its other inputs; when W1 was its only input, the composition takes W2's place and name.
A pool whose every input is a bias-free pointwise map (placements and channel scales) moves above those maps (a
pool of a concatenation is the concatenation of the pools; a max pool only of placements and positive scales), so
the pool reads the neurons and the maps compose with the weights after it. Nodes the host computes (no neuron
upstream) are left alone. What cannot compose stays, and the Loihi quantization refuses it in one line.
"""

from __future__ import annotations

import dataclasses

import nir
import numpy as np

from toolchain.ir.metadata import NodeMeta
from toolchain.ir.order import input_side_nodes
from toolchain.ir.shapes import node_shapes
from toolchain.ir.verify import verify_nir
from toolchain.passes.lower_to_nir import unique_name, with_input_factor
from toolchain.passes.quantize_loihi import WEIGHTED

POOLS = (nir.AvgPool2d, nir.SumPool2d)


def ungrouped(conv: nir.Conv2d) -> nir.Conv2d:
    """A grouped convolution as the dense one whose weights between groups are zero (exact)."""
    outputs, per_group = conv.weight.shape[:2]
    out_per_group = outputs // conv.groups
    weight = np.zeros((outputs, per_group * conv.groups, *conv.weight.shape[2:]), np.float32)
    for group in range(conv.groups):
        rows = slice(group * out_per_group, (group + 1) * out_per_group)
        weight[rows, group * per_group:(group + 1) * per_group] = conv.weight[rows]
    return dataclasses.replace(conv, weight=weight, groups=1)


def _pointwise(node) -> bool:
    return (isinstance(node, nir.Conv2d) and node.weight.shape[2:] == (1, 1)
            and np.all(np.asarray(node.stride) == 1) and np.all(np.asarray(node.padding) == 0))


def channel_factor(factors) -> np.ndarray | None:
    """Scale factors as one per channel (axis 0; a vector is its own), or None when they vary within a channel."""
    flat = np.asarray(factors, np.float32).reshape(np.shape(factors)[0], -1)
    return flat[:, 0] if np.all(flat == flat[:, :1]) else None


def _bias(node) -> np.ndarray:
    return np.asarray(getattr(node, "bias", 0.0), np.float32)


def _conv(template: nir.Conv2d, input_shape, weight: np.ndarray, bias: np.ndarray) -> nir.Conv2d:
    return nir.Conv2d(input_shape=np.asarray(input_shape), weight=np.ascontiguousarray(weight, np.float32),
                      stride=template.stride, padding=template.padding, dilation=template.dilation, groups=1,
                      bias=np.ascontiguousarray(bias, np.float32))


def _scaled_output(first, factor: np.ndarray):
    """`first` (Affine or Conv2d) with its output multiplied by `factor` per channel."""
    if isinstance(first, nir.Affine):
        return nir.Affine(weight=first.weight * factor[:, None], bias=_bias(first) * factor)
    return dataclasses.replace(first, weight=first.weight * factor[:, None, None, None], bias=_bias(first) * factor)


def compose(first, second):
    """second∘first as one node, its bias the part of second's output that first's bias makes (second's own bias
    not included); None where no exact single node exists."""
    if isinstance(first, nir.Linear) or isinstance(second, nir.Linear):
        return None  # the lowering writes every dense layer as an Affine
    if isinstance(first, nir.Scale):
        if isinstance(second, nir.Scale):
            return nir.Scale(scale=np.asarray(first.scale * second.scale, np.float32))
        factor = channel_factor(first.scale)
        return None if factor is None else dataclasses.replace(with_input_factor(second, factor), bias=np.zeros_like(second.bias))
    if isinstance(second, nir.Scale):
        factor = channel_factor(second.scale)
        return None if factor is None else _scaled_output(first, factor)
    if isinstance(first, nir.Affine) and isinstance(second, nir.Affine):
        return nir.Affine(weight=second.weight @ first.weight, bias=second.weight @ _bias(first))
    if not (isinstance(first, nir.Conv2d) and isinstance(second, nir.Conv2d)):
        return None
    if _pointwise(first):
        inner, outer, bias = ungrouped(first).weight[:, :, 0, 0], ungrouped(second).weight, _bias(first)
        if np.any(bias) and np.any(np.asarray(second.padding)):
            return None
        return _conv(second, first.input_shape, np.einsum("oikl,ij->ojkl", outer, inner), np.einsum("oikl,i->o", outer, bias))
    if _pointwise(second):
        outer, inner = ungrouped(second).weight[:, :, 0, 0], ungrouped(first)
        return _conv(first, first.input_shape, np.einsum("oi,ijkl->ojkl", outer, inner.weight), outer @ _bias(first))
    return None


def _channels_written(node) -> np.ndarray:
    """Which output channels a pointwise map can make non-zero."""
    if isinstance(node, nir.Scale):
        return np.ones(np.shape(node.scale)[0], bool)
    return np.any(node.weight[:, :, 0, 0] != 0, axis=1)


class _Composer:
    def __init__(self, graph: nir.NIRGraph):
        self.nodes = dict(graph.nodes)
        self.edges = [tuple(e) for e in graph.edges]
        self.host = input_side_nodes(graph)
        self.metadata = graph.metadata

    def graph(self) -> nir.NIRGraph:
        return nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=self.metadata, type_check=False)

    def preds(self, name: str) -> list[str]:
        return [a for a, b in self.edges if b == name]

    def succs(self, name: str) -> list[str]:
        return [b for a, b in self.edges if a == name]

    def on_chip(self, name: str) -> bool:
        return isinstance(self.nodes[name], WEIGHTED) and name not in self.host

    def next_chain(self):
        for first, second in self.edges:
            if self.on_chip(first) and isinstance(self.nodes[second], WEIGHTED):
                composed = compose(self.nodes[first], self.nodes[second])
                if composed is not None:
                    return first, second, composed
        return None

    def merge(self, first: str, second: str, composed) -> None:
        """Replace the edge first → second by composed, reading first's inputs."""
        sources = self.preds(first)
        self.edges.remove((first, second))
        composed.metadata = dict(self.nodes[second].metadata)
        if not self.preds(second):  # first was second's only input: the composition takes its place
            if not isinstance(composed, nir.Scale):  # a Scale∘Scale: neither has a bias
                composed.bias = np.asarray(composed.bias + _bias(self.nodes[second]), np.float32)
            self.nodes[second] = composed
            self.edges += [(s, second) for s in sources]
        else:
            name = unique_name(f"{second}_of_{first}", self.nodes)
            self.nodes[name] = composed
            self.edges += [(s, name) for s in sources] + [(name, t) for t in self.succs(second)]
        self.drop_if_unread(first)

    def drop_if_unread(self, name: str) -> None:
        if not self.succs(name):
            self.edges = [e for e in self.edges if e[1] != name]
            del self.nodes[name]

    def movable_pool(self) -> str | None:
        """A pool read by weights whose inputs are all bias-free pointwise maps of one input each that commute with it."""
        for name, node in self.nodes.items():
            if not isinstance(node, POOLS) or not any(isinstance(self.nodes[s], WEIGHTED) for s in self.succs(name)):
                continue
            maps = self.preds(name)
            if maps and all(self.on_chip(m) and len(self.preds(m)) == 1 and _commutes(node, self.nodes[m]) for m in maps):
                written = [_channels_written(self.nodes[m]) for m in maps]
                if NodeMeta.of(node).pool != "max" or np.all(np.sum(written, axis=0) <= 1):  # max of a sum: one term each
                    return name
        return None

    def move_pool(self, pool: str, pooled_shape: tuple[int, ...]) -> None:
        """pool(Σ M_k x_k) → Σ M_k pool(x_k): one pool per map (the first keeps the name), each map after its pool."""
        node = self.nodes.pop(pool)
        readers, maps = self.succs(pool), self.preds(pool)
        self.edges = [e for e in self.edges if pool not in e]
        for k, source in enumerate(maps):
            (below,) = self.preds(source)
            copy = pool if k == 0 else unique_name(f"{pool}_{k}", self.nodes)
            self.nodes[copy] = dataclasses.replace(node, metadata=dict(node.metadata))
            moved = _after_pool(self.nodes[source], pooled_shape)
            self.drop_if_unread(source)
            moved_name = unique_name(source, self.nodes)
            self.nodes[moved_name] = moved
            self.edges += [(below, copy), (copy, moved_name)] + [(moved_name, r) for r in readers]


def _commutes(pool, node) -> bool:
    if NodeMeta.of(pool).pool == "max":  # max(w·x) = w·max(x) for w ≥ 0, one input channel per output channel
        if isinstance(node, nir.Scale):
            factor = channel_factor(node.scale)
            return factor is not None and bool(np.all(factor > 0))
        weight = node.weight[:, :, 0, 0] if _pointwise(node) and node.groups == 1 else None
        return weight is not None and not np.any(_bias(node)) and bool(np.all(weight >= 0) and np.all((weight > 0).sum(axis=1) <= 1))
    if isinstance(node, nir.Scale):
        return channel_factor(node.scale) is not None
    return _pointwise(node) and not np.any(_bias(node))


def _after_pool(node, pooled_shape: tuple[int, ...]):
    """A pointwise map applied to a pool's output instead of its input."""
    if isinstance(node, nir.Scale):
        factor = channel_factor(node.scale)
        return dataclasses.replace(node, scale=np.ascontiguousarray(np.broadcast_to(factor[:, None, None], pooled_shape), np.float32))
    return dataclasses.replace(node, input_shape=np.asarray(pooled_shape[1:]))


def compose_linear_chains(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The graph with every exactly composable weighted → weighted edge on the chip replaced by one node."""
    composer = _Composer(graph)
    while True:
        pool = composer.movable_pool()
        if pool is not None:
            composer.move_pool(pool, node_shapes(composer.graph())[pool])
            continue
        chain = composer.next_chain()
        if chain is None:
            break
        composer.merge(*chain)
    return verify_nir(composer.graph())
