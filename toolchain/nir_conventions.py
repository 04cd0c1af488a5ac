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
| schedule             | IF         | `two_phase`: integrate a window, then fire (parallel, tpp, bsnn);   |
|                      |            | `permuted`: IF over the window, then a permuted replay (if-permuted) |
| fire_rule, cycle     | IF         | two-phase rule (`deterministic`, `bernoulli`) and cycle (0 = T)     |
| seed                 | IF         | seed of the random draws (`tpp`, `if-permuted`)                     |
| group, member(s)     | IF         | an expanded group neuron's layer name and member index              |
| role                 | I          | `readout`: the non-spiking integrator summing the last layer        |
| onnx_node            | any        | the ONNX node the NIR node came from                                |

Spike amplitudes are folded into the weights of the next layer (or a `Scale` node), so an IF node's output
is its spike count, which is also what NIR's standard meaning gives.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import graphlib
import math
import os
import pickle
import select
import signal
import time
import warnings
from pathlib import Path

import h5py
import nir
import numpy as np

from toolchain.errors import SnncError
from toolchain.frontend.onnx_load import MAX_TENSOR_BYTES, error_summary
from toolchain.graph import conv_output_hw

KEY = "snnc"
SUPPORTED_NODES = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d,
                   nir.Scale, nir.Flatten, nir.IF, nir.I)
_PASS_NIR = "pass a model.nir written by snnc compile or a valid NIR export"
# Reading slower than this (after a fixed allowance for starting) means HDF5 is looping on a damaged file.
READ_SECONDS_MIN, READ_BYTES_PER_SECOND_MIN = 30.0, 10e6
# What read_graph checks before the runtime converts fields to tensors or the report to numbers.
_ARRAYS = {nir.Affine: ("weight", "bias"), nir.Linear: ("weight",), nir.Conv2d: ("weight", "bias"), nir.Scale: ("scale",),
           nir.IF: ("r", "v_threshold", "v_reset"), nir.I: ("r",)}
# snnc metadata that the runtime and the report turn into numbers: arrays of finite numbers, and single integers
# within the ranges its arithmetic takes (counts exact in float32, seeds in 64 bits, weight_exp a power of 2 of
# float range, host a flag).
_METADATA_ARRAYS = ("v_init", "threshold")
_METADATA_INTEGERS = {"max_spikes_per_step": (0, 2**24), "levels": (0, 2**24), "cycle": (0, 2**24),
                      "seed": (0, 2**63 - 1), "weight_exp": (-64, 64), "host": (0, 1)}


def snnc_metadata(node: nir.NIRNode) -> dict:
    return node.metadata.get(KEY, {}) if isinstance(node.metadata, dict) else {}


def normalise(node: nir.NIRNode) -> nir.NIRNode:
    """Undo what HDF5 does to fields on reading (arrays for tuples, numpy scalars for ints)."""
    if isinstance(node, nir.Conv2d):
        node.stride, node.padding, node.dilation = (tuple(int(v) for v in np.atleast_1d(f)) for f in (node.stride, node.padding, node.dilation))
        node.groups = int(node.groups)
    return node


def read_graph(path) -> nir.NIRGraph:
    """Read a NIR file and check it is a graph the reference runtime can run: only supported node types,
    finite numeric parameters, snnc metadata of the documented types, one Input and one Output, no cycles,
    and shapes that agree along every edge. Anything else is an SnncError naming the file and the node."""
    if not Path(path).is_file():
        raise SnncError(f"{path}: {'not a file' if Path(path).exists() else 'no such file'}; pass the path of a model.nir")
    graph = _read_in_child(path)
    if not isinstance(graph, nir.NIRGraph) or not isinstance(graph.metadata, dict):
        raise SnncError(f"{path}: not a NIR graph (its top node is a {type(graph).__name__}); {_PASS_NIR}")
    for name, node in graph.nodes.items():
        if not isinstance(node, SUPPORTED_NODES):
            supported = ", ".join(t.__name__ for t in SUPPORTED_NODES)
            raise SnncError(f"{path}: node '{name}' is a NIR {type(node).__name__}, which snnc does not run; supported: {supported}")
        try:
            _check_fields(node)
        except ValueError as err:
            raise SnncError(f"{path}: node '{name}' ({type(node).__name__}) {err}; {_PASS_NIR}")
        normalise(node)
    _check_shapes(graph, path)
    return graph


def _read_in_child(path) -> nir.NIRGraph:
    """nir.read in a forked child. HDF5 follows the file's internal addresses, so a damaged file can crash it
    (SIGSEGV) or send it round in circles instead of raising an error; the child takes that risk, within a time
    limit, and hands back the graph or the error message."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child must never return into the caller's code, so it always leaves through os._exit
        status = 1
        try:
            faulthandler.disable()  # a crash here is expected and reported by the parent, without a dump on stderr
            os.close(read_end)
            with os.fdopen(write_end, "wb") as pipe:
                pickle.dump(_graph_or_message(path), pipe)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    limit = READ_SECONDS_MIN + Path(path).stat().st_size / READ_BYTES_PER_SECOND_MIN
    payload = None
    try:
        payload = _read_until_closed(read_end, time.monotonic() + limit)
    finally:
        if payload is None:  # the time is up, or Ctrl-C
            os.kill(child, signal.SIGKILL)
        _, status = os.waitpid(child, 0)
    if payload is None:
        raise SnncError(f"{path}: a damaged HDF5 file (reading it did not finish in {limit:.0f} s); {_PASS_NIR}")
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        raise SnncError(f"{path}: a damaged HDF5 file (reading it crashed the HDF5 library); {_PASS_NIR}")
    result = pickle.loads(payload)
    if isinstance(result, str):
        raise SnncError(result)
    return result


def _read_until_closed(fd: int, deadline: float) -> bytes | None:
    """Everything written to the pipe `fd` until its writer closes it, or None at the deadline."""
    chunks = []
    with os.fdopen(fd, "rb", buffering=0) as pipe:
        while select.select([pipe], [], [], max(deadline - time.monotonic(), 0))[0]:
            chunk = pipe.read(1 << 20)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    return None


def _graph_or_message(path) -> nir.NIRGraph | str:
    warnings.simplefilter("ignore")  # in the child only: nir's arithmetic on bad values must not add lines to stderr
    try:
        _refuse_huge_datasets(path)
        # NIR 1.0.8's own type check takes weight.shape[1] as a grouped convolution's input channels and so
        # rejects valid files; _check_shapes checks the same edges with the right rule.
        return nir.read(str(path), type_check=False)
    except SnncError as err:
        return str(err)
    except Exception as err:  # nir builds nodes from whatever the file holds and fails in many ways on bad values
        detail = error_summary(err)
        detail = detail if detail.startswith(type(err).__name__) else f"{type(err).__name__}: {detail}"
        return f"{path}: not a readable NIR file ({detail}); {_PASS_NIR}"


def _refuse_huge_datasets(path) -> None:
    """Refuse before reading: a few compressed bytes of HDF5 can declare a dataset of terabytes."""
    def check(name: str, item) -> None:
        if isinstance(item, h5py.Dataset) and item.size * item.dtype.itemsize > MAX_TENSOR_BYTES:
            raise SnncError(
                f"{path}: dataset '{name}' declares shape {item.shape} ({item.size * item.dtype.itemsize / 2**30:.1f} GiB); "
                f"snnc reads arrays up to {MAX_TENSOR_BYTES // 2**30} GiB, so this file is damaged or not for snnc"
            )
    with h5py.File(path, "r") as f:
        f.visititems(check)


def _numbers(value, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf" or not np.isfinite(array).all():
        raise ValueError(f"has a {what} that is not finite numbers")
    return array


def _ints(value, what: str, count: int, minimum: int = 1, maximum: int = 2**31 - 1) -> tuple[int, ...]:
    """`count` integers from a scalar (repeated) or an array of `count`, each within [minimum, maximum]; the
    default maximum keeps sizes and window parameters within what torch takes as C integers."""
    array = _numbers(value, what).reshape(-1)
    if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
        raise ValueError(f"has a {what} of non-integers {array.tolist()}")
    if array.size not in (1, count) or (array < minimum).any() or (array > maximum).any():
        raise ValueError(f"has {what} {array.tolist()}; expected {count} integer(s) in {minimum}..{maximum}")
    return tuple(int(v) for v in np.broadcast_to(array, count))


def _single_int(value, what: str, minimum: int, maximum: int = 2**31 - 1) -> int:
    """One integer that the runtime converts with int() or uses as an index: a scalar, not an array."""
    if np.ndim(value) != 0:
        raise ValueError(f"has a {what} of shape {np.shape(value)}; expected one integer")
    return _ints(value, what, 1, minimum, maximum)[0]


def _check_fields(node: nir.NIRNode) -> None:
    """Parameters the runtime converts to float tensors, a convolution's window (`normalise` makes it ints),
    and the types of the snnc metadata the runtime and the report read."""
    for field in _ARRAYS.get(type(node), ()):
        _numbers(getattr(node, field), field)
    if isinstance(node, nir.Conv2d):
        if isinstance(node.padding, str):
            raise ValueError(f"has padding '{node.padding}'; snnc runs explicit integer padding")
        _ints(node.stride, "stride", 2)
        _ints(node.dilation, "dilation", 2)
        _ints(node.padding, "padding", 2, minimum=0)
        _single_int(node.groups, "groups", 1)
    if not isinstance(node.metadata, dict) or not isinstance(node.metadata.get(KEY, {}), dict):
        raise ValueError(f"has metadata that is not a mapping (snnc keeps its own under '{KEY}')")
    meta = snnc_metadata(node)
    for key in _METADATA_ARRAYS:
        if key in meta:
            _numbers(meta[key], f"metadata '{key}'")
    for key, (minimum, maximum) in _METADATA_INTEGERS.items():
        if key in meta:
            _single_int(meta[key], f"metadata '{key}'", minimum, maximum)


def _shape_of(node: nir.NIRNode, port: str) -> tuple[int, ...]:
    types = node.input_type if port == "input" else node.output_type
    value = types.get(port) if isinstance(types, dict) else None
    if value is None:
        raise ValueError(f"declares no {port} shape")
    return _ints(value, f"{port} shape", max(np.size(value), 1))


def _broadcast_onto(value, shape: tuple[int, ...], what: str) -> None:
    """The runtime multiplies or adds `value` into a tensor of `shape` in place, so it must not widen it."""
    array_shape = np.shape(value)
    if len(array_shape) > len(shape) or not all(a in (1, s) for a, s in zip(array_shape[::-1], shape[::-1])):
        raise ValueError(f"has {what} of shape {array_shape}, which does not fit its input of shape {shape}")


def _output_shape(node: nir.NIRNode, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The per-sample shape `node` hands on for an input of `shape`; ValueError says what does not fit."""
    if isinstance(node, (nir.Affine, nir.Linear)):
        weight = np.shape(node.weight)
        if len(weight) != 2 or shape != (weight[1],):
            raise ValueError(f"has weights of shape {weight} for an input of shape {shape}")
        if isinstance(node, nir.Affine) and np.shape(node.bias) != (weight[0],):
            raise ValueError(f"has a bias of shape {np.shape(node.bias)} for {weight[0]} outputs")
        return (weight[0],)
    if isinstance(node, nir.Conv2d):
        weight, groups = np.shape(node.weight), int(node.groups)
        if len(weight) != 4 or len(shape) != 3 or shape[0] != weight[1] * groups or weight[0] % groups:
            raise ValueError(f"has weights of shape {weight} in {groups} groups for an input of shape {shape}")
        if np.shape(node.bias) != (weight[0],):
            raise ValueError(f"has a bias of shape {np.shape(node.bias)} for {weight[0]} output channels")
        return _window_output(shape, (weight[0],), weight[2:], node.stride, node.padding, node.dilation)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        if len(shape) != 3:
            raise ValueError(f"pools an input of shape {shape}; it needs (channels, height, width)")
        kernel, stride = _ints(node.kernel_size, "kernel_size", 2), _ints(node.stride, "stride", 2)
        padding = _ints(node.padding, "padding", 2, minimum=0)
        if any(2 * p > k for p, k in zip(padding, kernel)):
            raise ValueError(f"pads {padding} more than half its window {kernel}")
        return _window_output(shape, shape[:1], kernel, stride, padding, (1, 1))
    if isinstance(node, nir.Flatten):
        if _shape_of(node, "input") != shape:
            raise ValueError(f"declares input shape {_shape_of(node, 'input')} but receives {shape}")
        start, end = (_single_int(d, name, -len(shape)) for name, d in (("start_dim", node.start_dim), ("end_dim", node.end_dim)))
        if start >= len(shape) or end >= len(shape) or start % len(shape) > end % len(shape):
            raise ValueError(f"flattens dimensions {start}..{end} of a {len(shape)}-dimensional input")
        start, end = start % len(shape), end % len(shape)
        return (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])
    if isinstance(node, nir.Scale):
        _broadcast_onto(node.scale, shape, "a scale")
    if isinstance(node, nir.IF):
        if np.shape(node.v_threshold) != shape:
            raise ValueError(f"has thresholds of shape {np.shape(node.v_threshold)} for an input of shape {shape}")
        for field in ("r", "v_reset"):
            _broadcast_onto(getattr(node, field), shape, field)
        _broadcast_onto(snnc_metadata(node).get("v_init", 0.0), shape, "metadata 'v_init'")
    if isinstance(node, nir.I):
        _broadcast_onto(node.r, shape, "r")
    if isinstance(node, nir.Output) and math.prod(_shape_of(node, "output")) != math.prod(shape):
        raise ValueError(f"declares output shape {_shape_of(node, 'output')} but receives {shape}")
    return shape


def _window_output(shape, channels, kernel, stride, padding, dilation) -> tuple[int, ...]:
    hw = conv_output_hw(shape[1:], kernel, stride, padding, dilation)
    if min(hw) < 1:
        raise ValueError(f"has a window {tuple(kernel)} larger than its padded input {shape[1:]}")
    return (*channels, *hw)


def _check_shapes(graph: nir.NIRGraph, path) -> None:
    """Walk the graph from its Input: every node must receive inputs of one shape that it can take."""
    sources = {name: [] for name in graph.nodes}
    for edge in graph.edges:
        if len(edge) != 2 or any(end not in graph.nodes for end in edge):
            raise SnncError(f"{path}: edge {tuple(edge)} names a node the graph does not have; {_PASS_NIR}")
        sources[edge[1]].append(edge[0])
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise SnncError(f"{path}: the graph has {len(inputs)} Input and {len(outputs)} Output nodes; snnc runs graphs with one of each")
    try:
        order = list(graphlib.TopologicalSorter(sources).static_order())
    except graphlib.CycleError as err:
        raise SnncError(f"{path}: the graph has a cycle through {err.args[1][:3]}; snnc runs feed-forward graphs")
    shapes = {}
    for name in order:
        node = graph.nodes[name]
        try:
            if isinstance(node, nir.Input):
                if sources[name]:
                    raise ValueError(f"receives edges from {sources[name][:3]}")
                shapes[name] = _shape_of(node, "input")
            else:
                incoming = {shapes[s] for s in sources[name]}
                if len(incoming) != 1:
                    raise ValueError(f"receives {'no input' if not incoming else f'inputs of different shapes {sorted(incoming)}'}")
                shapes[name] = _output_shape(node, incoming.pop())
            if math.prod(shapes[name]) * 4 > MAX_TENSOR_BYTES:
                raise ValueError(f"gives shape {shapes[name]}, over {MAX_TENSOR_BYTES // 2**30} GiB per sample")
        except ValueError as err:
            raise SnncError(f"{path}: node '{name}' ({type(node).__name__}) {err}; {_PASS_NIR}")


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


WINDOWED_SCHEDULES = ("two_phase", "permuted")


def windowed_layers(graph: nir.NIRGraph) -> list[str]:
    """Layers that need their whole window (or cycle) of input before they emit: T is part of such a neuron."""
    return [n for n, node in graph.nodes.items() if str(snnc_metadata(node).get("schedule", "")) in WINDOWED_SCHEDULES]


def latency_steps(graph: nir.NIRGraph, timesteps: int) -> int:
    """Steps from presenting a sample until its answer after T steps is complete on a streaming target:
    T, plus one cycle (or window) for every windowed layer on the longest path: each emits only after it."""
    from targets.reference.runtime import _topological_order

    order, preds = _topological_order(graph)
    delay = {}
    for name in order:
        meta = snnc_metadata(graph.nodes[name])
        own = (int(meta.get("cycle", 0)) or timesteps) if str(meta.get("schedule", "")) in WINDOWED_SCHEDULES else 0
        delay[name] = max((delay[p] for p in preds[name]), default=0) + own
    return timesteps + max(delay.values())
