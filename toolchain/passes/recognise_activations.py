"""Pass: read each run of scalar elementwise ops as one activation (ReLU, clip, QCFS) or an affine map.

Exporters write the same activation in many ways (QCFS alone appears as Div/Mul/Add/Floor/Div/Clip/Mul, or
with a straight-through Sub/Add around the Floor). Rather than match op sequences, the pass takes each
region of scalar ops that reads one tensor and hands one tensor on, evaluates it as a function of a scalar,
and compares that function with the templates of `Activation` on a dense probe grid. Anything else is
refused with the ops it found.
"""

from __future__ import annotations

from typing import NamedTuple

import nir
import numpy as np

from toolchain.errors import SnncError
from toolchain.graph import Activation, Add, AnnGraph, ChannelAffine, Node, ScalarOp, verify
from toolchain.passes.lower_to_nir import unique_name

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


def _evaluate(graph: AnnGraph, entry: str, region: list[str], probe: np.ndarray) -> dict[str, np.ndarray]:
    """Every region node's value when the entry holds `probe`."""
    values = {entry: probe.astype(np.float64)}
    for name in region:
        node = graph.nodes[name]
        with np.errstate(all="ignore"):
            values[name] = _apply(node.op, [values[i] for i in node.inputs])
    return values


class ScalarFunction(NamedTuple):
    """f(x) = post_scale · activation(pre_scale · x) + post_shift; no activation means the affine map alone."""

    activation: Activation | None
    pre_scale: float = 1.0
    post_scale: float = 1.0
    post_shift: float = 0.0


def _first_reaching(unit, ceiling: float) -> float:
    """The least x ≥ 0 at which the rising function `unit` reaches 1 (bisection; `unit(ceiling)` is 1)."""
    low, high = 0.0, ceiling
    while np.nextafter(low, high) < high:
        middle = 0.5 * (low + high)
        low, high = (low, middle) if unit(np.array([middle]))[0] >= 1.0 - 4 * np.finfo(float).eps else (middle, high)
    return high


def classify(f) -> ScalarFunction:
    """Name the scalar function f: an affine map, or ReLU, clip(x, 0, λ) or QCFS scaled and shifted.

    A positive scale goes into the activation's input (c · clip(x, 0, λ) = clip(c·x, 0, c·λ), likewise for ReLU
    and QCFS), where the layer before folds it; a shift or a negative scale stays after the activation.
    Raises ValueError when f is none of them.
    """
    big = 1e6
    rng = np.random.default_rng(0)
    wide = np.concatenate([rng.uniform(-1e3, 1e3, 4000), np.linspace(-10, 10, 2001)])
    b = float(f(np.zeros(1))[0])
    a = float(f(np.ones(1))[0]) - b
    if np.allclose(f(wide), a * wide + b, rtol=1e-6, atol=1e-6 * max(1.0, abs(b))):
        return ScalarFunction(None, post_scale=a, post_shift=b)
    shift = float(f(np.array([-big]))[0])
    rise = float(f(np.array([big]))[0]) - shift
    tolerance = 1e-9 * max(1.0, float(np.max(np.abs(f(wide)))))  # float rounding of the ops
    if not (np.isfinite(shift) and np.isfinite(rise) and rise != 0
            and np.allclose(f(-np.abs(wide)), shift, rtol=0, atol=tolerance)):
        raise ValueError("it is not constant for negative inputs, as ReLU, clip(x, 0, λ) and QCFS are")
    if np.isclose(float(f(np.array([2 * big]))[0]) - shift, 2 * rise, rtol=1e-6):
        scale = rise / big
        if not np.allclose(f(wide), scale * np.maximum(wide, 0.0) + shift, rtol=1e-6, atol=tolerance):
            raise ValueError("it grows without bound but is not a scaled ReLU")
        return _scaled(Activation("relu"), scale, shift, scale)

    def unit(x):  # f rescaled to rise from 0 to 1
        return (f(x) - shift) / rise

    top = _first_reaching(unit, big)
    grid = np.linspace(-top, 3 * top, 40001)
    values = unit(grid)
    if np.allclose(values, np.clip(grid / top, 0.0, 1.0), rtol=1e-6, atol=1e-6):
        return _scaled(Activation("clip", threshold=top), rise / top, shift, rise)
    levels = len(np.unique(np.round(values, 6))) - 1
    if levels >= 1:
        lam = top * levels / (levels - 0.5)  # QCFS reaches its top at (L − ½)·λ/L
        expected = np.clip(np.floor(grid * levels / lam + 0.5), 0, levels) / levels
        # Away from the step edges the two must agree; at an edge float rounding may pick either side.
        edge_distance = np.abs(grid * levels / lam + 0.5 - np.round(grid * levels / lam + 0.5))
        away = edge_distance > 1e-4
        if np.allclose(values[away], expected[away], rtol=1e-6, atol=1e-6):
            return _scaled(Activation("qcfs", threshold=lam, levels=int(levels)), rise / lam, shift, rise)
    raise ValueError(f"it rises by {rise:g} from its value for negative inputs but is neither a scaled clip(x, 0, λ) "
                     "nor a QCFS staircase")


def _scaled(activation: Activation, scale: float, shift: float, rise: float) -> ScalarFunction:
    """scale · activation(x) + shift as a ScalarFunction. `rise` is what a shift is small against: a bounded
    activation's exact top scale · λ (which becomes λ where the scale goes into the input), a ReLU's slope."""
    # Unscaled up to float32 rounding (QCFS written as ·(L/λ) … ·(λ/L) with both constants rounded): λ stays as the
    # model wrote it, the rise.
    scale = 1.0 if abs(scale - 1.0) < 1e-6 else scale
    shift = 0.0 if abs(shift) < 1e-9 * abs(rise) else shift
    if scale < 0:
        return ScalarFunction(activation, post_scale=scale, post_shift=shift)
    if activation.threshold is not None:
        activation.threshold = rise
    return ScalarFunction(activation, pre_scale=scale, post_shift=shift)


def recognise_activations(graph: AnnGraph) -> AnnGraph:
    """Replace every scalar-op region by an Activation with the affine maps around it, an affine map, or nothing."""
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
            function = classify(lambda probe: _evaluate(graph, entry, region, probe)[region[-1]])
        except ValueError as err:
            raise SnncError(
                f"{graph.source}: elementwise nodes {ops} compute a function snnc cannot turn into spiking neurons "
                f"({err}); use ReLU, Clip(0, λ) or the QCFS activation"
            )
        _replace_region(graph, entry, region, exits[0], function, ops)


def _replace_region(graph: AnnGraph, entry: str, region: list[str], exit_name: str, function: ScalarFunction, ops: str) -> None:
    """The region becomes a chain: the input scale (folded later into the layer before), the activation, the map after
    it; the last takes the exit's name and ONNX output, so its readers are unchanged. An identity leaves nothing."""
    channels = graph.shape_of(entry)[0]
    exit_node = graph.nodes[exit_name]
    has_post_map = (function.post_scale, function.post_shift) != (1.0, 0.0)
    activation_tensor = "" if has_post_map else exit_node.onnx_output
    if function.activation is not None and function.activation.kind == "relu" and has_post_map:
        activation_tensor, scale = _relu_tensor(graph, entry, region, ops)
        total = function.pre_scale * function.post_scale
        function = function._replace(pre_scale=scale, post_scale=total / scale)
    if function.pre_scale != 1.0 and function.activation.threshold is not None and not _absorbs_scale(graph, entry):
        # no weights before take the scale (a residual Add): act_{cλ}(c·x) = c·act_λ(x) puts it after the activation
        function.activation.threshold /= function.pre_scale
        function = function._replace(pre_scale=1.0, post_scale=function.pre_scale * function.post_scale)
        has_post_map = True
    chain = []  # (op, the ONNX tensor that holds its value)
    if function.pre_scale != 1.0:
        chain.append((ChannelAffine(np.full(channels, function.pre_scale, np.float32), np.zeros(channels, np.float32)), ""))
    if function.activation is not None:
        chain.append((function.activation, activation_tensor))
    if has_post_map:
        chain.append((ChannelAffine(np.full(channels, function.post_scale, np.float32),
                                    np.full(channels, function.post_shift, np.float32)), exit_node.onnx_output))
    added, source = [], entry
    for index, (op, onnx_output) in enumerate(chain):
        word = "scale" if isinstance(op, ChannelAffine) else op.kind
        name = exit_name if index == len(chain) - 1 else unique_name(f"{exit_name}.{word}", graph.nodes)
        added.append(Node(name, op, [source], exit_node.shape, exit_node.onnx_node, onnx_output, exit_node.scope))
        source = name
    rebuilt = {}
    for name, node in graph.nodes.items():
        if name == exit_name:
            rebuilt.update({node.name: node for node in added})
        elif name not in region:
            rebuilt[name] = node
    graph.nodes.clear()
    graph.nodes.update(rebuilt)
    if not chain:
        graph.replace_input(exit_name, entry)


def _absorbs_scale(graph: AnnGraph, entry: str) -> bool:
    """Whether a scale on `entry` folds into the weights that compute it (fold_channel_affine, through a map there)."""
    producer = graph.nodes.get(entry)
    while producer is not None and isinstance(producer.op, ChannelAffine) and len(graph.consumers(producer.name)) == 1:
        producer = graph.nodes.get(producer.inputs[0])
    return producer is not None and isinstance(producer.op, (nir.Conv2d, nir.Affine, nir.Linear)) and len(graph.consumers(producer.name)) == 1


def _relu_tensor(graph: AnnGraph, entry: str, region: list[str], ops: str) -> tuple[str, float]:
    """An ONNX tensor in the region that holds k · max(x, 0) with k > 0, and k: a ReLU followed by a shift or a
    negative scale is that tensor's ReLU (max(k·x, 0)), whose threshold calibration sets from it."""
    probe = np.linspace(-10, 10, 2001)
    values = _evaluate(graph, entry, region, probe)
    for name in region:
        scale = float(values[name][-1]) / probe[-1]
        if graph.nodes[name].onnx_output and scale > 0 and np.allclose(values[name], scale * np.maximum(probe, 0.0), rtol=1e-6, atol=1e-9):
            return graph.nodes[name].onnx_output, scale
    raise SnncError(f"{graph.source}: elementwise nodes {ops} shift or negate a ReLU whose own output no ONNX tensor "
                    "holds; snnc sets a ReLU's threshold from that output: write the ReLU as its own op")
