"""Converters for elementwise ops: Sum, Mean and Add of tensors (residual merges); Add, Sub, Mul and Div with a
constant, a `ScalarOp` when it is a scalar (part of an activation, which `recognise_activations` reads as ReLU, clip
or QCFS) or a `ChannelAffine` when it is per channel (which `fold_channel_affine` folds into the layer before); Sub,
Mul and Div of two tensors, a `ScalarOp`; the scalar unary ops of activations (Relu, Clip, Floor, Ceil, Round, Neg,
Max, Min); Dropout and Identity, removed; and Softmax and LogSoftmax at the output, removed since they keep the argmax.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from toolchain.frontend.onnx_load import UPGRADE_TO
from toolchain.frontend.ops.base import Unsupported, broadcasts
from toolchain.frontend.ops.linear_view import binary_linear_view
from toolchain.graph import Add, ChannelAffine, Identity, ScalarOp

if TYPE_CHECKING:
    from toolchain.frontend import Importer


def convert_sum(imp: Importer, node, attrs):
    """Of tensors of one shape: a residual merge (Mean: then scaled by 1/n per channel)."""
    if len(node.input) == 1:
        imp.alias(node, node.input[0])
        return
    imp.add(node, Add(), list(node.input))
    if node.op_type == "Mean":
        channels = imp.graph_shape(node.output[0])[0]
        scale = np.full(channels, 1.0 / len(node.input), np.float32)
        imp.add(node, ChannelAffine(scale, np.zeros(channels, np.float32)), [node.output[0]], suffix=".mean")


def convert_binary(imp: Importer, node, attrs):
    """Add of two tensors is a residual merge; with a scalar constant it is part of an activation; with a per-channel
    constant it is folded into the layer before; of positions gathered ahead of a Gemm (AdaptiveAvgPool2d's bins), a
    sum of two or a scaling, folded into the Gemm's weights."""
    a, b = node.input
    if a in imp.linear_views or b in imp.linear_views:
        binary_linear_view(imp, node)
        return
    if not imp.is_const(a) and not imp.is_const(b):
        if node.op_type == "Add":
            imp.add(node, Add(), [a, b])
        else:
            imp.add(node, ScalarOp(node.op_type, (None, None)), [a, b])
        return
    tensor, const_index = (a, 1) if imp.is_const(b) else (b, 0)
    value = imp.const(node, const_index).astype(np.float64)
    if value.size == 1:
        operands = (None, float(value.reshape(()))) if const_index == 1 else (float(value.reshape(())), None)
        imp.add(node, ScalarOp(node.op_type, operands), [tensor])
        return
    shape, stored = imp.shape(tensor), imp.graph_shape(tensor)
    if shape != stored:  # a reshaped flat tensor: the constant's value for each of its values, in their order
        try:
            value = np.broadcast_to(value, (1, *shape)).reshape(stored)
        except ValueError:
            raise Unsupported(f"a constant of shape {value.shape} that does not broadcast to the data's {shape}")
    per_channel = _per_channel(value, stored)
    if per_channel is None:
        raise Unsupported(f"a constant of shape {value.shape} that is not per channel for data of shape {shape}")
    ones, zeros = np.ones_like(per_channel), np.zeros_like(per_channel)
    scale, shift = {
        ("Add", 1): (ones, per_channel), ("Add", 0): (ones, per_channel),
        ("Sub", 1): (ones, -per_channel), ("Sub", 0): (-ones, per_channel),
        ("Mul", 1): (per_channel, zeros), ("Mul", 0): (per_channel, zeros),
        ("Div", 1): (1.0 / per_channel, zeros),
    }.get((node.op_type, const_index), (None, None))
    if scale is None:
        raise Unsupported(f"{node.op_type} with a per-channel constant on this side is not supported")
    imp.add(node, ChannelAffine(scale.astype(np.float32), shift.astype(np.float32)), [tensor])


def _per_channel(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """The per-channel vector of a constant broadcast over (C, ...) data, or None if it varies otherwise."""
    channels = shape[0]
    squeezed = value.reshape(value.shape[1:]) if value.ndim == len(shape) + 1 and value.shape[0] == 1 else value
    if squeezed.ndim > len(shape):
        return None
    full = np.broadcast_to(squeezed, shape) if broadcasts(squeezed.shape, shape) else None
    if full is None:
        return None
    vector = full.reshape(channels, -1)[:, 0]
    return vector if np.array_equal(full, np.broadcast_to(vector.reshape((channels,) + (1,) * (len(shape) - 1)), shape)) else None


def convert_scalar_unary(imp: Importer, node, attrs):
    """Part of an activation: runs of elementwise ops are recognised as ReLU, clip(0, λ) or QCFS(λ, L), scaled and
    shifted (c·f(x) + b: c > 0 goes into the weights before, the rest into the weights after where exact)."""
    operands = [None]
    omitted = {1: -math.inf, 2: math.inf} if node.op_type == "Clip" else {}  # an omitted Clip bound does not clip
    for i in range(1, len(node.input)):
        operands.append(_scalar(imp.const(node, i), i) if node.input[i] else omitted.get(i))
    if node.op_type in ("Max", "Min") and (len(node.input) != 2 or operands[1] is None):
        raise Unsupported(f"{node.op_type} must have exactly one tensor and one scalar constant")
    imp.add(node, ScalarOp(node.op_type, tuple(operands), attrs), [node.input[0]])


def _scalar(value: np.ndarray, index: int) -> float:
    if value.size != 1:
        raise Unsupported(f"input {index} has shape {value.shape}; snnc needs a scalar constant here")
    return float(value.reshape(()))


def identity_converter(reason: str):
    def convert(imp: Importer, node, attrs):
        imp.add(node, Identity(reason), [node.input[0]])

    convert.__doc__ = f"Removed ({reason})."
    return convert


def convert_softmax(imp: Importer, node, attrs):
    """Removed when it produces the model output, or only reshapes follow it there, and normalises all of a
    sample's values together (it keeps their argmax); refused inside the network."""
    shape = imp.shape(node.input[0])
    rank = len(shape) + 1
    # before opset 13 it normalises the axes from `axis` (default 1) on together, from opset 13 one axis (default -1)
    if imp.opsets.get("", imp.opsets.get("ai.onnx", UPGRADE_TO)) < 13:
        axes = list(range(int(attrs.get("axis", 1)) % rank, rank))
    else:
        axes = [int(attrs.get("axis", -1)) % rank]
    if 0 in axes or any(shape[a - 1] != 1 for a in range(1, rank) if a not in axes):
        raise Unsupported(f"normalises axes {axes} of a (batch, {', '.join(map(str, shape))}) tensor, not all values of "
                          "a sample together, so dropping it would change the argmax; end the model before it")
    imp.add(node, Identity(f"{node.op_type} at the output"), [node.input[0]])
