"""`verify_nir`: the executable specification of a NIR graph between passes, as `toolchain.graph.verify` is of the
ANN graph. Every NIR pass ends with it, so a pass that breaks an invariant fails at that pass."""

from __future__ import annotations

import nir
import numpy as np

from toolchain.errors import SnncError
from toolchain.ir.metadata import ARITHMETICS, SCHEDULES, GraphMeta, NodeMeta
from toolchain.ir.order import only_node_of_type
from toolchain.ir.shapes import ShapeError, node_shapes


class GraphError(AssertionError):
    """A pass produced a graph that breaks an invariant: a bug in snnc, not in the user's model."""


def verify_nir(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Check a compiled NIR graph; return it unchanged so passes can end with `return verify_nir(graph)`.

    One Input and one Output, no cycle, edges between existing nodes, every shape what its node computes from its
    input, and snnc's metadata on every neuron: a model name, reset by subtraction, a known schedule, an initial
    potential of the layer's shape and positive thresholds; at most one readout integrator."""
    try:
        for kind in (nir.Input, nir.Output):
            only_node_of_type(graph, kind)
        shapes = node_shapes(graph)
    except (SnncError, ShapeError) as err:
        raise GraphError(str(err)) from None
    if GraphMeta.of(graph).precision not in ARITHMETICS:
        raise GraphError(f"graph precision {GraphMeta.of(graph).precision!r} is not one of {ARITHMETICS}")
    for name, node in graph.nodes.items():
        meta = NodeMeta.of(node)
        if isinstance(node, nir.IF):
            if not meta.neuron or not meta.subtracts or meta.schedule not in SCHEDULES:
                raise GraphError(f"neuron node {name!r} lacks snnc's metadata (neuron {meta.neuron!r}, reset {meta.reset!r}, schedule {meta.schedule!r})")
            if np.shape(np.broadcast_to(meta.v_init, shapes[name])) != shapes[name] or not (np.asarray(node.v_threshold) > 0).all():
                raise GraphError(f"neuron node {name!r} has an initial potential or thresholds that do not fit its layer")
        if meta.pool and not (meta.pool == "max" and isinstance(node, nir.SumPool2d)):
            raise GraphError(f"node {name!r} marks pooling {meta.pool!r}; snnc writes max pooling as a SumPool2d window")
    readouts = [n for n, node in graph.nodes.items() if isinstance(node, nir.I) and NodeMeta.of(node).role == "readout"]
    if len(readouts) > 1:
        raise GraphError(f"the graph has {len(readouts)} readout integrators; snnc's graphs have at most one")
    return graph
