"""Pass: snnc's compact NIR graph becomes a portable one, exact by NIR 1.0.8's own equations, no metadata read.

The compact graph (`lower_to_nir`) keeps snnc's neuron in `metadata["snnc"]`: NIR's `IF` resets to v_reset and
starts at 0, so a consumer that ignores the metadata fires other spikes. The portable graph says the same
network with standard nodes only (docs/nir.md, "Portable profile"):

- a soft-reset binary neuron of threshold θ and initial potential v₀ is an integrator `I` (r as before) feeding
  a `Threshold`, with a recurrent `Scale(−θ)` edge from the Threshold back into the integrator. A recurrent edge
  carries the previous step's spikes, so the integrator holds snnc's potential before firing, minus v₀: it
  starts at 0 and fires at θ − v₀ (exact for subtract reset: the potential only ever moves by inputs and by θ;
  in float32 the sums round in another order, so a potential within rounding of θ can fire on one side only).
  snnc fires at v ≥ θ and `Threshold` at v > θ; the threshold is the next float32 below θ − v₀, so that the
  two agree for every float32 potential;
- group neurons are first expanded into their binary members (`expand_group_neurons`); other neurons that may
  emit several spikes per step, and windowed neurons (parallel, tpp, bsnn, if-permuted: spikes that depend on
  the whole window), have no standard form and are refused;
- `AvgPool2d` is `SumPool2d`, its 1/(kh·kw) folded into the next weights (through `Flatten`), or into a `Scale`
  where no weights follow; exact for 2×2 windows (a power of two), else within float rounding;
- the readout integrator is dropped: the Output receives the last layer's per-step values, and their sum over
  the steps is snnc's readout (its argmax is the prediction).

Names are kept: the node that emits a layer's spikes has the layer's name (the Threshold), its integrator is
`<name>_v` and its reset edge `<name>_reset`; each of the three carries `metadata["snnc"]["layer"]`, the layer
whose spikes it counts (a group neuron's members count for their group).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nir
import numpy as np

from toolchain.errors import SnncError
from toolchain.ir.files import differences
from toolchain.ir.metadata import GraphMeta, NodeMeta, with_meta
from toolchain.ir.schedule import windowed_layers
from toolchain.ir.shapes import node_shapes
from toolchain.neurons import get_model
from toolchain.passes.expand_group_neurons import expand_group_neurons
from toolchain.passes.lower_to_nir import unique_name

PROFILE = "portable"


def portable_nir(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The portable form of a compact snnc graph; SnncError (one line) for what standard NIR cannot say."""
    _refuse_unportable(graph)
    graph = expand_group_neurons(graph)
    nodes, edges, shapes = dict(graph.nodes), [tuple(e) for e in graph.edges], node_shapes(graph)
    for name, node in graph.nodes.items():
        if isinstance(node, nir.IF) and NodeMeta.of(node).subtracts:
            _split_neuron(name, node, nodes, edges)
        elif isinstance(node, nir.AvgPool2d):
            _sum_pool(name, node, shapes[name], nodes, edges)
        elif isinstance(node, nir.I) and NodeMeta.of(node).role == "readout":
            _drop_readout(name, nodes, edges)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=with_meta(graph, profile=PROFILE), type_check=False)


def _refuse_unportable(graph: nir.NIRGraph) -> None:
    windowed = windowed_layers(graph)
    if windowed:
        neuron = NodeMeta.of(graph.nodes[windowed[0]]).neuron
        raise SnncError(f"layer '{windowed[0]}': {neuron} neurons fire from their whole window of input, which standard "
                        "NIR cannot say; the portable profile covers if and gn (model.nir keeps them for snnc)")
    pooled = [name for name, node in graph.nodes.items() if NodeMeta.of(node).pool == "max"]
    if pooled:
        raise SnncError(f"node '{pooled[0]}': max pooling has no standard NIR node; the portable profile needs "
                        "--maxpool avg (model.nir keeps it for snnc)")
    if GraphMeta.of(graph).precision != "float":
        raise SnncError("the portable profile is written from the float network (model.nir), not from a quantized one")
    for name, node in graph.nodes.items():
        meta = NodeMeta.of(node)
        if isinstance(node, nir.IF) and meta.max_spikes_per_step > 1 and not (meta.neuron and get_model(meta.neuron).graded):
            raise SnncError(f"layer '{name}': {meta.neuron or '?'} neurons emit up to {meta.max_spikes_per_step} "
                            "spikes per step, which standard NIR cannot say; the portable profile covers binary neurons and gn")


def _split_neuron(name: str, node: nir.IF, nodes: dict, edges: list) -> None:
    """IF `name` → I `name_v` → Threshold `name`, and Scale `name_reset` from the Threshold back into `name_v`."""
    meta = NodeMeta.of(node)
    threshold = np.asarray(node.v_threshold, np.float32)
    shape = threshold.shape
    v_init = np.broadcast_to(np.asarray(meta.v_init, np.float32), shape)
    fires_at = np.nextafter(threshold - v_init, np.float32(-np.inf), dtype=np.float32)
    tagged = lambda role: NodeMeta(layer=meta.group or name, onnx_node=meta.onnx_node, role=role).as_metadata()
    potential = unique_name(f"{name}_v", nodes)
    reset = unique_name(f"{name}_reset", nodes, {potential})
    nodes[potential] = nir.I(r=np.asarray(node.r, np.float32), metadata=tagged("potential"))
    nodes[name] = nir.Threshold(threshold=np.ascontiguousarray(fires_at), metadata=tagged("spikes"))
    nodes[reset] = nir.Scale(scale=np.ascontiguousarray(-threshold), metadata=tagged("reset"))
    edges[:] = [(s, potential if d == name else d) for s, d in edges] + [(potential, name), (name, reset), (reset, potential)]


def _sum_pool(name: str, node: nir.AvgPool2d, shape: tuple[int, ...], nodes: dict, edges: list) -> None:
    kernel = np.broadcast_to(np.asarray(node.kernel_size).reshape(-1), 2)
    nodes[name] = nir.SumPool2d(kernel_size=np.array(kernel), stride=np.broadcast_to(np.asarray(node.stride).reshape(-1), 2).copy(),
                                padding=np.broadcast_to(np.asarray(node.padding).reshape(-1), 2).copy(), metadata=node.metadata)
    factor = np.float32(1.0) / np.float32(np.prod(kernel))
    target = _weights_after(name, nodes, edges)
    if target is not None:
        weighted = nodes[target]  # a new node: the compact graph's stays as it was
        nodes[target] = dataclasses.replace(weighted, weight=np.ascontiguousarray(np.asarray(weighted.weight, np.float32) * factor))
        return
    mean = unique_name(f"{name}_mean", nodes)
    tagged = NodeMeta(role="mean", onnx_node=NodeMeta.of(node).onnx_node).as_metadata()
    nodes[mean] = nir.Scale(scale=np.full(shape, factor, np.float32), metadata=tagged)
    edges[:] = [(mean, d) if s == name else (s, d) for s, d in edges] + [(name, mean)]


def _weights_after(name: str, nodes: dict, edges: list) -> str | None:
    """The weighted node that alone receives `name`'s output (through Flatten nodes), or None."""
    current = name
    while True:
        targets = [d for s, d in edges if s == current]
        if len(targets) != 1 or sum(d == targets[0] for _, d in edges) != 1:
            return None
        node = nodes[targets[0]]
        if isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
            return targets[0]
        if not isinstance(node, nir.Flatten):
            return None
        current = targets[0]


def _drop_readout(name: str, nodes: dict, edges: list) -> None:
    """The Output takes the readout's input (snnc's readout integrates with r = 1)."""
    del nodes[name]
    sources, targets = [s for s, d in edges if d == name], [d for s, d in edges if s == name]
    edges[:] = [(s, d) for s, d in edges if name not in (s, d)] + [(s, d) for s in sources for d in targets]


PORTABLE_FILE = "model.portable.nir"


def write_portable(graph: nir.NIRGraph, path: Path) -> dict:
    """Write the portable form of the compiled (compact) network beside model.nir and read it back; the report's
    entry says what was written, or in one line why this network has no portable form."""
    try:
        portable = portable_nir(graph)
    except SnncError as err:
        return {"file": None, "reason": str(err)}
    nir.write(str(path), portable)
    mismatch = differences(portable, nir.read(str(path)))
    if mismatch:
        raise AssertionError(f"{path.name} does not read back as written: {mismatch[:5]}")
    return {"file": path.name, "nodes": len(portable.nodes), "read_back_identical": True}
