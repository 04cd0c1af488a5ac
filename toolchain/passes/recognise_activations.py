"""Pass: read each run of scalar elementwise ops as one activation (ReLU, clip, QCFS) or an affine map.

Exporters write the same activation in many ways (QCFS alone appears as Div/Mul/Add/Floor/Div/Clip/Mul, or
with a straight-through Sub/Add around the Floor). Rather than match op sequences, the pass takes each
region of scalar ops that reads one tensor and hands one tensor on, evaluates it as a function of a scalar,
and compares that function with the templates of `Activation` on a dense probe grid. Anything else is
refused with the ops it found.
"""

from __future__ import annotations

import numpy as np

from toolchain.errors import SnncError
from toolchain.graph import Activation, Add, AnnGraph, ChannelAffine, Node, ScalarOp, verify

_UNARY = {
    "Relu": lambda x, *_: np.maximum(x, 0.0),
    "Floor": lambda x, *_: np.floor(x),
    "Ceil": lambda x, *_: np.ceil(x),
    "Round": lambda x, *_: np.round(x),  # numpy and ONNX both round half to even
    "Neg": lambda x, *_: -x,
    "Clip": lambda x, lo=None, hi=None: np.clip(x, -np.inf if lo is None else lo, np.inf if hi is None else hi),
}
_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Max": np.maximum, "Min": np.minimum}


def _apply(op, values: list[np.ndarray]) -> np.ndarray:
    if isinstance(op, Add):
        return values[0] + values[1]
    operands = list(op.operands)
    tensors = iter(values)
    args = [next(tensors) if o is None else np.float64(o) for o in operands]
    if op.op_type in _UNARY:
        return _UNARY[op.op_type](args[0], *args[1:])
    return _BINARY[op.op_type](args[0], args[1])


def _region(graph: AnnGraph, entry: str) -> list[str]:
    """The scalar-op nodes computed from `entry` alone, in order."""
    members, region = {entry}, []
    for name, node in graph.nodes.items():
        is_scalar = isinstance(node.op, ScalarOp) or (isinstance(node.op, Add) and region)
        if is_scalar and all(i in members for i in node.inputs):
            region.append(name)
            members.add(name)
    return region


def _evaluate(graph: AnnGraph, entry: str, region: list[str], probe: np.ndarray) -> np.ndarray:
    values = {entry: probe}
    for name in region:
        node = graph.nodes[name]
        with np.errstate(all="ignore"):
            values[name] = _apply(node.op, [values[i] for i in node.inputs])
    return values[region[-1]]


def classify(f) -> Activation | ChannelAffine | None:
    """Name the scalar function f: an Activation, a scalar affine map (ChannelAffine), None for identity.

    Raises ValueError when f is none of them.
    """
    big = 1e6
    rng = np.random.default_rng(0)
    wide = np.concatenate([rng.uniform(-1e3, 1e3, 4000), np.linspace(-10, 10, 2001)])
    b = float(f(np.zeros(1))[0])
    a = float(f(np.ones(1))[0]) - b
    if np.allclose(f(wide), a * wide + b, rtol=1e-6, atol=1e-6 * max(1.0, abs(b))):
        return None if (a, b) == (1.0, 0.0) else ChannelAffine(np.array([a], np.float32), np.array([b], np.float32))
    if np.allclose(f(wide), np.maximum(wide, 0.0), rtol=1e-6, atol=1e-9) and np.isclose(f(np.array([big]))[0], big):
        return Activation("relu")
    lam = float(f(np.array([big]))[0])
    if not (np.isfinite(lam) and lam > 0 and abs(f(np.array([-big]))[0]) < 1e-9 * lam):
        raise ValueError("it is not zero for large negative inputs and bounded above")
    grid = np.linspace(-0.5 * lam, 1.5 * lam, 40001)
    values = f(grid)
    if np.allclose(values, np.clip(grid, 0.0, lam), rtol=1e-6, atol=1e-6 * lam):
        return Activation("clip", threshold=lam)
    levels = len(np.unique(np.round(values / lam, 6))) - 1
    if levels >= 1:
        expected = lam / levels * np.clip(np.floor(grid * levels / lam + 0.5), 0, levels)
        # Away from the step edges the two must agree; at an edge float rounding may pick either side.
        edge_distance = np.abs(grid * levels / lam + 0.5 - np.round(grid * levels / lam + 0.5))
        away = edge_distance > 1e-4
        if np.allclose(values[away], expected[away], rtol=1e-6, atol=1e-6 * lam):
            return Activation("qcfs", threshold=lam, levels=int(levels))
    raise ValueError(f"it is bounded by {lam:g} but is neither clip(x, 0, λ) nor a QCFS staircase")


def recognise_activations(graph: AnnGraph) -> AnnGraph:
    """Replace every scalar-op region by one Activation or ChannelAffine node, or drop it if it is identity."""
    while True:
        first = next((n for n in graph.nodes.values() if isinstance(n.op, ScalarOp)), None)
        if first is None:
            return verify(graph)
        entry = first.inputs[0]
        region = _region(graph, entry)
        if not region:
            raise SnncError(
                f"{graph.source}: node '{first.onnx_node}' ({first.op.op_type}) combines two different tensors; "
                "snnc supports elementwise ops between a tensor and constants, and Add for residual merges"
            )
        exits = [n for n in region if n == graph.output or any(c not in region for c in graph.consumers(n))]
        ops = ", ".join(f"{graph.nodes[n].onnx_node or n} ({getattr(graph.nodes[n].op, 'op_type', 'Add')})" for n in region)
        if len(exits) != 1:
            raise SnncError(f"{graph.source}: elementwise nodes {ops} hand on {len(exits)} results; snnc needs one activation per layer")
        try:
            op = classify(lambda probe: _evaluate(graph, entry, region, probe.astype(np.float64)))
        except ValueError as err:
            raise SnncError(
                f"{graph.source}: elementwise nodes {ops} compute a function snnc cannot turn into spiking neurons "
                f"({err}); use ReLU, Clip(0, λ) or the QCFS activation"
            )
        exit_node = graph.nodes[exits[0]]
        for name in region:
            if name != exit_node.name:
                del graph.nodes[name]
        exit_node.inputs = [entry]
        if op is None:
            graph.remove(exit_node.name)
            continue
        if isinstance(op, ChannelAffine):
            channels = graph.shape_of(entry)[0]
            op = ChannelAffine(np.repeat(op.scale, channels), np.repeat(op.shift, channels))
        graph.nodes[exit_node.name] = Node(exit_node.name, op, [entry], exit_node.shape, exit_node.onnx_node, exit_node.onnx_output,
                                              exit_node.scope)
