"""How snnc writes what NIR cannot say, and reads it back.

NIR 1.0.8's IF resets *to* v_reset, starts at 0 and emits binary spikes. snnc's neurons reset by subtraction,
start at v_init and may emit several spikes per step. Each node therefore carries `metadata["snnc"]`:

| key                  | on         | meaning                                                            |
| -------------------- | ---------- | ------------------------------------------------------------------ |
| neuron               | IF         | neuron model name (`if`, `gn`, ...)                                 |
| reset                | IF         | `subtract` (snnc) — absent means NIR's reset to v_reset            |
| v_init               | IF         | initial membrane potential, array of the layer's shape             |
| max_spikes_per_step  | IF         | m: spikes a neuron may emit in one step (1 for binary IF)           |
| threshold, levels    | IF         | the ANN activation's λ (scalar or per channel) and QCFS level count |
| role                 | I          | `readout`: the non-spiking integrator summing the last layer        |
| onnx_node            | any        | the ONNX node the NIR node came from                                |

Spike amplitudes are folded into the weights of the next layer (or a `Scale` node), so an IF node's output
is its spike count, which is also what NIR's standard meaning gives.
"""

from __future__ import annotations

import dataclasses

import nir
import numpy as np

from toolchain.errors import SnncError

KEY = "snnc"
SUPPORTED_NODES = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d,
                   nir.Scale, nir.Flatten, nir.IF, nir.I)


def snnc_metadata(node: nir.NIRNode) -> dict:
    return node.metadata.get(KEY, {}) if isinstance(node.metadata, dict) else {}


def normalise(node: nir.NIRNode) -> nir.NIRNode:
    """Undo what HDF5 does to fields on reading (arrays for tuples, numpy scalars for ints)."""
    if isinstance(node, nir.Conv2d):
        node.stride, node.padding, node.dilation = (tuple(int(v) for v in np.atleast_1d(f)) for f in (node.stride, node.padding, node.dilation))
        node.groups = int(node.groups)
    return node


def read_graph(path) -> nir.NIRGraph:
    """Read a NIR file and check that every node is one the reference runtime runs."""
    try:
        graph = nir.read(str(path))
    except (OSError, KeyError, AssertionError, ValueError, TypeError) as err:
        raise SnncError(f"{path}: not a readable NIR file ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); pass a model.nir written by snnc or another NIR exporter")
    for name, node in graph.nodes.items():
        if not isinstance(node, SUPPORTED_NODES):
            supported = ", ".join(t.__name__ for t in SUPPORTED_NODES)
            raise SnncError(f"{path}: node '{name}' is a NIR {type(node).__name__}, which snnc does not run; supported: {supported}")
        normalise(node)
    return graph


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return np.array_equal(np.asarray(a), np.asarray(b))


def differences(a: nir.NIRGraph, b: nir.NIRGraph) -> list[str]:
    """Where two NIR graphs differ (node set, types, every field and metadata, edges); empty when identical."""
    found = []
    if set(a.nodes) != set(b.nodes):
        found.append(f"nodes {sorted(set(a.nodes) ^ set(b.nodes))}")
    if sorted(map(tuple, a.edges)) != sorted(map(tuple, b.edges)):
        found.append("edges")
    for name in set(a.nodes) & set(b.nodes):
        x, y = normalise(a.nodes[name]), normalise(b.nodes[name])
        if type(x) is not type(y):
            found.append(f"{name}: type {type(x).__name__} != {type(y).__name__}")
            continue
        for key in (f.name for f in dataclasses.fields(x) if f.init):  # derived types are not compared
            if not _same(getattr(x, key), getattr(y, key)):
                found.append(f"{name}.{key}")
    if not _same(a.metadata, b.metadata):
        found.append("graph metadata")
    return found
