"""Pass: the calibrated ANN graph becomes a NIR graph of spiking neurons.

Every Activation becomes a NIR `IF` node with snnc's metadata (`toolchain.ir.metadata.NodeMeta`) whose
parameters come from the chosen neuron model (`toolchain.neurons`); linear ops are copied; the output gets a non-spiking
integrator (`nir.I`, role `readout`) whose running sum gives the prediction at every time step.

Spikes carry an amplitude (θ_u: the spike's value in the ANN's units). The lowering tracks, for every ANN
tensor, which NIR nodes sum to it and with what per-channel factor, and folds those factors into the next
Affine/Conv2d weights. Where no weights follow (a neuron, the readout, a residual merge of different
amplitudes) an explicit `nir.Scale` is inserted. Add needs no node (NIR sums the edges into a node); Concat
becomes one placement node (1×1 Conv2d or Affine) per input.

Node names (`layer_names`) are the model's own layer names where the exporter kept them: the module path
(`layer1.0.conv1`, `features.1`), with the kind added where one module holds several layers (`block.relu`) and
`_1`, `_2` where one module runs several times; a module that wraps all the others is left out (`net.conv1` →
`conv1`). Layers without a module path, and the layers of a top-level `nn.Sequential` (whose paths start with an
index: positions, not names), are numbered per kind (`conv1`, `if1`). Nodes the lowering adds are named after
their layer (`if1_scale`, `concat1_in0`); each node keeps the name of the ONNX node it came from in its metadata
(`onnx_node`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import nir
import numpy as np

import toolchain
from toolchain.graph import Activation, Add, AnnGraph, Concat, MaxPool
from toolchain.ir.metadata import GraphMeta, NodeMeta
from toolchain.ir.verify import verify_nir
from toolchain.neurons import get_model


RESERVED = ("input", "output", "readout")


def unique_name(base: str, *taken) -> str:
    """`base`, or `base_1`, `base_2`, ... : the first that none of the collections in `taken` holds."""
    candidate, k = base, 1
    while any(candidate in t for t in taken):
        candidate, k = f"{base}_{k}", k + 1
    return candidate


def _kind(op, neuron: str) -> str:
    """The word a layer's name uses for its op: the neuron model for an activation, else the NIR op."""
    if isinstance(op, Activation):
        return neuron
    if isinstance(op, Concat):
        return "concat"
    if isinstance(op, (nir.Affine, nir.Linear, nir.Conv2d)):
        return "conv" if isinstance(op, nir.Conv2d) else "fc"
    return {nir.Flatten: "flatten", nir.Scale: "scale", MaxPool: "maxpool"}.get(type(op), "pool")


def layer_names(graph: AnnGraph, neuron: str = "if") -> dict[str, str]:
    """The NIR name of every ANN node that the lowering turns into NIR nodes (all but Add), unique and valid for
    NIR/HDF5 (the module docstring has the rules)."""
    layers = [n for n in graph.nodes.values() if not isinstance(n.op, Add)]
    # a path that starts with an index is a position in a top-level nn.Sequential, not a name
    scoped = [n for n in layers if n.scope and not n.scope.split(".")[0].isdigit()]
    paths = {n.name: n.scope for n in scoped}
    heads, rest = {path.split(".")[0] for path in paths.values()}, [path.partition(".")[2] for path in paths.values()]
    if len(heads) == 1 and any(rest) and not any(r.split(".")[0].isdigit() for r in rest):
        # One module wraps all the others: the names are the wrapped model's (its own functional ops unscoped).
        paths = {name: path.partition(".")[2] for name, path in paths.items()}
        scoped = [n for n in scoped if paths[n.name]]
    by_scope: dict[str, list] = {}
    for node in scoped:
        by_scope.setdefault(paths[node.name], []).append(node)
    bases = {}
    for scope, nodes in by_scope.items():
        # A module that holds other layers' modules (a block) runs its own ops functionally: name them by kind.
        onnx_nodes = {n.onnx_node for n in nodes}
        block = any(paths[n.name].startswith(scope + ".") and n.onnx_node not in onnx_nodes for n in scoped)
        words = [n.op.kind if isinstance(n.op, Activation) else _kind(n.op, neuron) for n in nodes]
        for node, word in zip(nodes, words):
            bases[node.name] = f"{scope}.{word}" if block or len(set(words)) > 1 else scope
    names, taken = {}, set(RESERVED)

    def claim(base: str) -> str:
        name = unique_name(base, taken)
        taken.add(name)
        return name

    counts = Counter(bases.values())
    for node in scoped:  # a name one layer has alone first, so that no `_1` of another takes it
        if counts[bases[node.name]] == 1:
            names[node.name] = claim(bases[node.name])
    for node in scoped:
        if node.name not in names:
            names[node.name] = claim(bases[node.name])
    counters: dict[str, int] = {}
    for node in layers:
        if node.name in names:
            continue
        kind = _kind(node.op, neuron)
        while True:
            counters[kind] = counters.get(kind, 0) + 1
            if f"{kind}{counters[kind]}" not in taken:
                break
        names[node.name] = claim(f"{kind}{counters[kind]}")
    return {node.name: names[node.name] for node in layers}


@dataclass
class _Term:
    """One NIR node's output that contributes to an ANN tensor, times a per-channel factor (None = 1)."""

    node: str
    factor: np.ndarray | None


class _Lowering:
    def __init__(self, graph: AnnGraph, neuron: str, neuron_options: dict):
        self.graph = graph
        self.model = get_model(neuron)
        self.neuron_options = {**self.model.defaults(), **neuron_options}
        self.nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array(graph.input_shape)})}
        self.edges: list[tuple[str, str]] = []
        self.terms: dict[str, list[_Term]] = {graph.input_name: [_Term("input", None)]}
        self.names = layer_names(graph, self.model.name)
        self.layers = set(self.names.values())

    def derived(self, base: str) -> str:
        """A name for a node the lowering adds, after its layer (unique among the nodes so far and the layers)."""
        return unique_name(base, self.nodes, RESERVED, self.layers)

    def materialise(self, terms: list[_Term], shape) -> list[str]:
        """NIR nodes whose plain sum is the tensor: a Scale node for every term with a factor."""
        names = []
        for term in terms:
            if term.factor is None:
                names.append(term.node)
                continue
            name = self.derived(f"{term.node}_scale")
            full = np.broadcast_to(term.factor.reshape((-1,) + (1,) * (len(shape) - 1)), shape)
            meta = NodeMeta(role="amplitude", onnx_node=NodeMeta.of(self.nodes[term.node]).onnx_node)
            self.nodes[name] = nir.Scale(scale=np.ascontiguousarray(full, np.float32), metadata=meta.as_metadata())
            self.edges.append((term.node, name))
            names.append(name)
        return names

    def shared_factor(self, terms: list[_Term]):
        """The one factor all terms share, or False when they differ."""
        factors = [t.factor for t in terms]
        if all(f is None for f in factors):
            return None
        if any(f is None for f in factors) or any(not np.array_equal(f, factors[0]) for f in factors):
            return False
        return factors[0]

    def connect(self, name: str, terms: list[_Term], shape) -> None:
        for source in self.materialise(terms, shape):
            self.edges.append((source, name))

    def lower_node(self, ann) -> None:
        op, terms = ann.op, [t for i in ann.inputs for t in self.terms[i]]
        in_shape = self.graph.shape_of(ann.inputs[0])
        meta = NodeMeta(onnx_node=ann.onnx_node)
        if isinstance(op, Add):
            self.terms[ann.name] = terms
            return
        if isinstance(op, Concat):
            self.lower_concat(ann, meta)
            return
        if isinstance(op, Activation):
            self.lower_activation(ann, terms, in_shape, meta)
            return
        factor = self.shared_factor(terms)
        if factor is False or (isinstance(op, MaxPool) and factor is not None and (factor <= 0).any()):
            terms, factor = [_Term(n, None) for n in self.materialise(terms, in_shape)], None
        if isinstance(op, (nir.Affine, nir.Linear, nir.Conv2d)):
            new = with_input_factor(op, factor)
            out_factor = None
        else:
            new = _copy(op)
            meta.pool = "max" if isinstance(op, MaxPool) else ""
            meta.pads = list(op.padding) if isinstance(op, MaxPool) and len(op.padding) == 4 else None
            out_factor = None if factor is None else _propagate_factor(op, factor, in_shape)
        name = self.names[ann.name]
        new.metadata = meta.as_metadata()
        self.nodes[name] = new
        for term in terms:
            self.edges.append((term.node, name))
        self.terms[ann.name] = [_Term(name, out_factor)]

    def lower_activation(self, ann, terms, in_shape, meta) -> None:
        op: Activation = ann.op
        threshold = np.asarray(op.threshold, np.float32)
        per_neuron = np.broadcast_to(threshold.reshape((-1,) + (1,) * (len(in_shape) - 1)) if threshold.ndim else threshold, in_shape)
        options = self.neuron_options
        params = self.model.parameters(per_neuron, **{k: options[k] for k in self.model.parameter_options})
        name = self.names[ann.name]
        meta.neuron, meta.reset, meta.max_spikes_per_step = self.model.name, "subtract", int(params.max_spikes)
        meta.v_init = np.ascontiguousarray(np.broadcast_to(params.v_init, in_shape), np.float32)
        meta.activation, meta.threshold, meta.levels = op.kind, np.atleast_1d(threshold), int(op.levels or 0)
        meta.schedule = self.model.schedule
        if self.model.family == "two_phase":
            meta.fire_rule, meta.cycle = self.model.fire_rule, int(options.get("cycle", self.model.cycle))
        if "seed" in options:
            meta.seed = int(options["seed"])
        self.nodes[name] = nir.IF(
            r=np.ones(in_shape, np.float32),
            v_threshold=np.ascontiguousarray(np.broadcast_to(params.unit_threshold, in_shape), np.float32),
            v_reset=np.zeros(in_shape, np.float32), metadata=meta.as_metadata(),
        )
        self.connect(name, terms, in_shape)
        per_spike = params.unit_threshold if op.amplitude is None else np.reshape(op.amplitude, (-1,) + (1,) * (len(in_shape) - 1))
        amplitude = np.broadcast_to(per_spike, in_shape).reshape(in_shape[0], -1)[:, 0]
        self.terms[ann.name] = [_Term(name, np.ascontiguousarray(amplitude, np.float32))]

    def lower_concat(self, ann, meta) -> None:
        total = ann.shape[0]
        offset, out_terms = 0, []
        for k, source in enumerate(ann.inputs):
            shape = self.graph.shape_of(source)
            terms = self.terms[source]
            factor = self.shared_factor(terms)
            if factor is False:
                terms, factor = [_Term(n, None) for n in self.materialise(terms, shape)], None
            place = np.zeros((total, shape[0]), np.float32)
            place[offset + np.arange(shape[0]), np.arange(shape[0])] = 1.0 if factor is None else factor
            offset += shape[0]
            if len(shape) == 1:
                node = nir.Affine(weight=place, bias=np.zeros(total, np.float32), metadata=meta.as_metadata())
            else:
                node = nir.Conv2d(input_shape=shape[1:], weight=place[:, :, None, None], stride=1, padding=0,
                                  dilation=1, groups=1, bias=np.zeros(total, np.float32), metadata=meta.as_metadata())
            name = self.derived(f"{self.names[ann.name]}_in{k}")
            self.nodes[name] = node
            for term in terms:
                self.edges.append((term.node, name))
            out_terms.append(_Term(name, None))
        self.terms[ann.name] = out_terms

    def finish(self) -> nir.NIRGraph:
        out_shape = self.graph.shape_of(self.graph.output)
        last = self.graph.nodes.get(self.graph.output)  # the readout sums the last layer: its ONNX node
        meta = NodeMeta(role="readout", onnx_node=last.onnx_node if last is not None else "")
        self.nodes["readout"] = nir.I(r=np.ones(out_shape, np.float32), metadata=meta.as_metadata())
        self.connect("readout", self.terms[self.graph.output], out_shape)
        self.nodes["output"] = nir.Output(output_type={"output": np.array(out_shape)})
        self.edges.append(("readout", "output"))
        metadata = GraphMeta(version=toolchain.__version__, neuron=self.model.name, source=self.graph.source,
                             notes="\n".join(self.graph.notes)).as_metadata()
        return nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=metadata, type_check=False)


def _copy(op):
    if isinstance(op, nir.Flatten):
        return nir.Flatten(input_type=op.input_type, start_dim=op.start_dim, end_dim=op.end_dim)
    if isinstance(op, nir.Scale):
        return nir.Scale(scale=op.scale)
    if isinstance(op, MaxPool):  # a SumPool2d's window, marked max in the metadata (toolchain/ir/metadata.py)
        symmetric = len(op.padding) == 2
        return nir.SumPool2d(kernel_size=np.array(op.kernel_size), stride=np.array(op.stride),
                             padding=np.array(op.padding if symmetric else (0, 0)))
    return type(op)(kernel_size=op.kernel_size, stride=op.stride, padding=op.padding)


def with_input_factor(op, factor):
    """A copy of a weighted op whose weights absorb a per-input-channel factor."""
    weight = op.weight.astype(np.float32)
    if isinstance(op, nir.Conv2d):
        if factor is not None:
            groups = int(op.groups)
            per_group = factor.reshape(groups, -1)  # (groups, in_channels / groups)
            out_group = np.arange(weight.shape[0]) // (weight.shape[0] // groups)
            weight = weight * per_group[out_group][:, :, None, None]
        return nir.Conv2d(input_shape=op.input_shape, weight=np.ascontiguousarray(weight, np.float32), stride=op.stride,
                          padding=op.padding, dilation=op.dilation, groups=op.groups, bias=np.asarray(op.bias, np.float32))
    if factor is not None:
        weight = weight * factor[None, :]
    bias = op.bias if isinstance(op, nir.Affine) else np.zeros(weight.shape[0], np.float32)
    return nir.Affine(weight=np.ascontiguousarray(weight, np.float32), bias=np.asarray(bias, np.float32))


def _propagate_factor(op, factor: np.ndarray, in_shape) -> np.ndarray:
    """Per-channel factors commute with pooling (positive ones with max pooling: spike amplitudes are) and
    per-position scaling; flattening spreads them per feature."""
    if isinstance(op, nir.Flatten):
        return np.repeat(factor, int(np.prod(in_shape[1:])))
    return factor


def lower_to_nir(graph: AnnGraph, neuron: str = "if", neuron_options: dict | None = None) -> nir.NIRGraph:
    lowering = _Lowering(graph, neuron, neuron_options or {})
    for ann in graph.nodes.values():
        lowering.lower_node(ann)
    return verify_nir(lowering.finish())
