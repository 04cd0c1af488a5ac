"""NIR shape inference: the per-sample shape each node hands on, with the checks of what it may receive.

The one place where snnc computes shapes: the ANN graph's `verify`, the NIR reader and `verify_nir`, and the cost
counting all use `output_shape`. A ValueError says, as the end of a sentence about the node, what does not fit.
"""

from __future__ import annotations

import math

import nir
import numpy as np

from toolchain.errors import MAX_TENSOR_BYTES
from toolchain.ir.metadata import raw_metadata
from toolchain.ir.order import topological_order


def finite_numbers(value, what: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf" or not np.isfinite(array).all():
        raise ValueError(f"has a {what} that is not finite numbers")
    return array


def integers(value, what: str, count: int, minimum: int = 1, maximum: int = 2**31 - 1) -> tuple[int, ...]:
    """`count` integers from a scalar (repeated) or an array of `count`, each within [minimum, maximum]; the
    default maximum keeps sizes and window parameters within what torch takes as C integers."""
    array = finite_numbers(value, what).reshape(-1)
    if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
        raise ValueError(f"has a {what} of non-integers {array.tolist()}")
    if array.size not in (1, count) or (array < minimum).any() or (array > maximum).any():
        raise ValueError(f"has {what} {array.tolist()}; expected {count} integer(s) in {minimum}..{maximum}")
    return tuple(int(v) for v in np.broadcast_to(array, count))


def single_integer(value, what: str, minimum: int, maximum: int = 2**31 - 1) -> int:
    """One integer that the runtime converts with int() or uses as an index: a scalar, not an array."""
    if np.ndim(value) != 0:
        raise ValueError(f"has a {what} of shape {np.shape(value)}; expected one integer")
    return integers(value, what, 1, minimum, maximum)[0]


def pair(value) -> tuple[int, int]:
    """A window parameter (kernel, stride, padding) given as one number or two, as two ints."""
    return tuple(int(v) for v in np.broadcast_to(np.asarray(value).reshape(-1), 2))


def window_pads(node) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) zero padding of a window op: NIR's symmetric `padding`, or the asymmetric padding
    of a max pooling (four values on snnc's MaxPool; in NIR snnc's metadata `pads`, NIR's padding then 0)."""
    pads = raw_metadata(node).get("pads") if isinstance(node, nir.NIRNode) else None
    values = tuple(int(p) for p in np.ravel(pads if pads is not None and len(pads) else node.padding))
    return (values * 4)[:4] if len(values) == 1 else values * 2 if len(values) == 2 else values


def declared_shape(node: nir.NIRNode, port: str) -> tuple[int, ...]:
    """The shape an Input/Output/Flatten node declares for its `port` ("input" or "output")."""
    types = node.input_type if port == "input" else node.output_type
    value = types.get(port) if isinstance(types, dict) else None
    if value is None:
        raise ValueError(f"declares no {port} shape")
    return integers(value, f"{port} shape", max(np.size(value), 1))


def conv_output_hw(hw, kernel, stride, padding, dilation) -> tuple[int, int]:
    """Output height and width of a convolution or pooling window (floor mode); padding per axis, or (top, left,
    bottom, right)."""
    padding = tuple(int(p) for p in padding)
    before, after = (padding[:2], padding[2:]) if len(padding) == 4 else (padding, padding)
    return tuple(
        (int(n) + b + a - int(d) * (int(k) - 1) - 1) // int(s) + 1
        for n, k, s, b, a, d in zip(hw, kernel, stride, before, after, dilation)
    )


def _broadcast_onto(value, shape: tuple[int, ...], what: str) -> None:
    """The runtime multiplies or adds `value` into a tensor of `shape` in place, so it must not widen it."""
    array_shape = np.shape(value)
    if len(array_shape) > len(shape) or not all(a in (1, s) for a, s in zip(array_shape[::-1], shape[::-1])):
        raise ValueError(f"has {what} of shape {array_shape}, which does not fit its input of shape {shape}")


def _window_output(shape, channels, kernel, stride, padding, dilation) -> tuple[int, ...]:
    hw = conv_output_hw(shape[1:], kernel, stride, padding, dilation)
    if min(hw) < 1:
        raise ValueError(f"has a window {tuple(kernel)} larger than its padded input {shape[1:]}")
    return (*channels, *hw)


def _weighted_output(node, shape: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(node, (nir.Affine, nir.Linear)):
        weight = np.shape(node.weight)
        if len(weight) != 2 or shape != (weight[1],):
            raise ValueError(f"has weights of shape {weight} for an input of shape {shape}")
        if isinstance(node, nir.Affine) and np.shape(node.bias) != (weight[0],):
            raise ValueError(f"has a bias of shape {np.shape(node.bias)} for {weight[0]} outputs")
        return (weight[0],)
    weight, groups = np.shape(node.weight), int(node.groups)
    if len(weight) != 4 or len(shape) != 3 or shape[0] != weight[1] * groups or weight[0] % groups:
        raise ValueError(f"has weights of shape {weight} in {groups} groups for an input of shape {shape}")
    if np.shape(node.bias) != (weight[0],):
        raise ValueError(f"has a bias of shape {np.shape(node.bias)} for {weight[0]} output channels")
    return _window_output(shape, (weight[0],), weight[2:], node.stride, node.padding, node.dilation)


def pool_output_shape(node, shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) != 3:
        raise ValueError(f"pools an input of shape {shape}; it needs (channels, height, width)")
    kernel, stride = integers(node.kernel_size, "kernel_size", 2), integers(node.stride, "stride", 2)
    four = not isinstance(node, nir.NIRNode) and np.size(node.padding) == 4  # snnc's MaxPool, asymmetric
    padding = integers(node.padding, "padding", 4 if four else 2, minimum=0)
    if not four and any(2 * p > k for p, k in zip(padding, kernel)):  # what torch's pooling kernels take
        raise ValueError(f"pads {padding} more than half its window {kernel}")
    pads = window_pads(node)
    if any(p >= k for p, k in zip(pads, kernel * 2)):
        raise ValueError(f"pads {pads} a whole window {kernel} or more")
    return _window_output(shape, shape[:1], kernel, stride, pads, (1, 1))


def _flatten_output(node, shape: tuple[int, ...]) -> tuple[int, ...]:
    if declared_shape(node, "input") != shape:
        raise ValueError(f"declares input shape {declared_shape(node, 'input')} but receives {shape}")
    start, end = (single_integer(d, name, -len(shape)) for name, d in (("start_dim", node.start_dim), ("end_dim", node.end_dim)))
    if start >= len(shape) or end >= len(shape) or start % len(shape) > end % len(shape):
        raise ValueError(f"flattens dimensions {start}..{end} of a {len(shape)}-dimensional input")
    start, end = start % len(shape), end % len(shape)
    return (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])


def output_shape(node: nir.NIRNode, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The per-sample shape `node` hands on for an input of `shape`; ValueError says what does not fit."""
    if isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
        return _weighted_output(node, shape)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        return pool_output_shape(node, shape)
    if isinstance(node, nir.Flatten):
        return _flatten_output(node, shape)
    if isinstance(node, nir.Scale):
        _broadcast_onto(node.scale, shape, "a scale")
    if isinstance(node, nir.IF):
        if np.shape(node.v_threshold) != shape:
            raise ValueError(f"has thresholds of shape {np.shape(node.v_threshold)} for an input of shape {shape}")
        for field in ("r", "v_reset"):
            _broadcast_onto(getattr(node, field), shape, field)
        _broadcast_onto(raw_metadata(node).get("v_init", 0.0), shape, "metadata 'v_init'")
    if isinstance(node, nir.I):
        _broadcast_onto(node.r, shape, "r")
    if isinstance(node, nir.Output) and math.prod(declared_shape(node, "output")) != math.prod(shape):
        raise ValueError(f"declares output shape {declared_shape(node, 'output')} but receives {shape}")
    return shape


def node_shapes(graph: nir.NIRGraph) -> dict[str, tuple[int, ...]]:
    """Every node's per-sample output shape, walking from the Input. (name, ValueError) pairs are raised as
    `ShapeError`: every node must receive inputs of one shape that it can take."""
    order, preds = topological_order(graph)
    shapes = {}
    for name in order:
        node = graph.nodes[name]
        try:
            if isinstance(node, nir.Input):
                if preds[name]:
                    raise ValueError(f"receives edges from {preds[name][:3]}")
                shapes[name] = declared_shape(node, "input")
            else:
                incoming = {shapes[s] for s in preds[name]}
                if len(incoming) != 1:
                    raise ValueError(f"receives {'no input' if not incoming else f'inputs of different shapes {sorted(incoming)}'}")
                shapes[name] = output_shape(node, incoming.pop())
            if math.prod(shapes[name]) * 4 > MAX_TENSOR_BYTES:
                raise ValueError(f"gives shape {shapes[name]}, over {MAX_TENSOR_BYTES // 2**30} GiB per sample")
        except ValueError as err:
            raise ShapeError(name, node, err) from None
    return shapes


class ShapeError(ValueError):
    """A node whose inputs do not fit it: `node` names it; str(self) is the sentence about it."""

    def __init__(self, name: str, node: nir.NIRNode, reason: ValueError):
        super().__init__(f"node '{name}' ({type(node).__name__}) {reason}")
        self.node = name
