"""Converters for the layers with weights, which must be constants: Conv (on a flat tensor reshaped to a 1×1 map,
an Affine), Gemm, MatMul (with more axes per sample, or the data on the right: one Affine of the flattened sample)
and BatchNormalization (a `ChannelAffine`, which `fold_channel_affine` folds into the layer before). A Gemm or MatMul
takes the positions of a feature map gathered before it into its weights (linear_view.py).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import nir
import numpy as np

from toolchain.frontend.ops.base import Unsupported, broadcasts, symmetric_window, window_pads
from toolchain.frontend.ops.linear_view import LINEAR_VIEW_LIMIT, fold_linear_view
from toolchain.graph import ChannelAffine

if TYPE_CHECKING:
    from toolchain.frontend import Importer


def convert_conv(imp: Importer, node, attrs):
    """2-D only; stride, dilation, groups; pads or auto_pad (asymmetric ones as zero taps); constant weights; on a
    flat tensor reshaped to (C, 1, 1) (a classifier written as a 1×1 conv) an Affine."""
    weight = imp.const(node, 1).astype(np.float32)
    shape = imp.shape(node.input[0])
    if weight.ndim != 4 or len(shape) != 3:
        raise Unsupported("only 2-D convolutions (NCHW input, OIHW weight) are supported")
    bias = imp.const(node, 2, default=np.zeros(weight.shape[0])).astype(np.float32)
    if bias.shape != weight.shape[:1]:
        raise Unsupported(f"its bias has shape {bias.shape} for {weight.shape[0]} output channels")
    strides = tuple(attrs.get("strides", (1, 1)))
    dilations = tuple(attrs.get("dilations", (1, 1)))
    pads = window_pads(attrs, shape[1:], weight.shape[2:], strides, dilations)
    if node.input[0] in imp.reshaped:
        _conv_of_a_point(imp, node, weight, bias, pads, strides, dilations, int(attrs.get("group", 1)))
        return
    weight, padding = symmetric_window(weight, pads, dilations)
    op = nir.Conv2d(
        input_shape=shape[1:], weight=weight, stride=strides, padding=padding, dilation=dilations,
        groups=int(attrs.get("group", 1)), bias=bias,
    )
    imp.add(node, op, [node.input[0]])


def _conv_of_a_point(imp: Importer, node, weight, bias, pads, strides, dilations, groups: int) -> None:
    """A Conv of a flat tensor reshaped to (C, 1, 1): each output position sees at most one tap (the one on the
    single input position, the others on padding), so the conv is an Affine from (C,) to (O·H'·W',) (exact)."""
    channels = imp.shape(node.input[0])
    if channels[1:] != (1, 1) or len(imp.graph_shape(node.input[0])) != 1:
        raise Unsupported(f"convolves a flat tensor reshaped to {channels}; snnc reads such a reshape as a feature "
                          "map only when it is 1×1; reshape before the last linear layer that makes it flat")
    if groups < 1 or weight.shape[1] * groups != channels[0] or weight.shape[0] % groups:
        raise Unsupported(f"its weight of shape {weight.shape} in {groups} groups does not fit {channels[0]} input channels")
    if len(strides) != 2 or len(dilations) != 2 or min(*strides, *dilations) < 1:
        raise Unsupported(f"strides {list(strides)} and dilations {list(dilations)} must be two positive numbers each")
    kernel = weight.shape[2:]
    out_hw = [(1 + before + after - d * (k - 1) - 1) // s + 1
              for before, after, k, s, d in zip(pads[:2], pads[2:], kernel, strides, dilations)]
    outputs, inputs_per_group = weight.shape[0], weight.shape[1]
    if min(out_hw) < 1 or outputs * math.prod(out_hw) * channels[0] > LINEAR_VIEW_LIMIT:
        raise Unsupported(f"gives an output of {outputs}×{out_hw[0]}×{out_hw[1]} from a 1×1 map, which snnc does not "
                          "turn into one Affine; check its kernel, pads and strides")
    outputs_per_group = outputs // groups
    matrix = np.zeros((outputs, *out_hw, channels[0]), np.float32)
    for position in np.ndindex(*out_hw):
        # the tap on the input position: p·stride - pad_before + tap·dilation = 0
        offsets = [before - p * s for p, s, before in zip(position, strides, pads[:2])]
        if any(o % d or not 0 <= o // d < k for o, d, k in zip(offsets, dilations, kernel)):
            continue
        tap = tuple(o // d for o, d in zip(offsets, dilations))
        for g in range(groups):
            rows, columns = slice(g * outputs_per_group, (g + 1) * outputs_per_group), slice(g * inputs_per_group, (g + 1) * inputs_per_group)
            matrix[rows, position[0], position[1], columns] = weight[rows, :, tap[0], tap[1]]
    shape = (outputs, *out_hw)
    affine = nir.Affine(weight=matrix.reshape(-1, channels[0]),
                        bias=np.ascontiguousarray(np.broadcast_to(bias[:, None, None], shape).reshape(-1)))
    imp.add(node, affine, [node.input[0]], reshaped_to=shape)


def convert_gemm(imp: Importer, node, attrs):
    """transB, alpha, beta; transA=0 (transA=1 would contract over the batch); constant B and C."""
    if attrs.get("transA", 0):
        raise Unsupported("transA=1 multiplies over the batch axis of the data, which mixes samples; the data must "
                          "be a (batch, features) input A with transA=0")
    if imp.is_const(node.input[0]):
        raise Unsupported("the data is its B input, which Gemm multiplies over its batch axis (mixing samples); the "
                          "data must be the (batch, features) input A")
    b = imp.const(node, 1).astype(np.float32)
    b = b.T if attrs.get("transB", 0) else b
    weight = (attrs.get("alpha", 1.0) * b).T
    c = imp.const(node, 2, default=0.0)
    c = c[0] if c.ndim == 2 and c.shape[0] == 1 else c  # (1, N): one bias row for every sample
    if c.ndim > 1 or not broadcasts(c.shape, (weight.shape[0],)):
        raise Unsupported(f"the bias C of shape {c.shape} does not fit the {weight.shape[0]} outputs")
    bias = np.broadcast_to(attrs.get("beta", 1.0) * c, (weight.shape[0],))
    data, weight = fold_linear_view(imp, node, weight)
    imp.add(node, nir.Affine(weight=np.ascontiguousarray(weight, np.float32), bias=bias.astype(np.float32)), [data],
            reshaped_to=(weight.shape[0],))


def convert_matmul(imp: Importer, node, attrs):
    """(batch, features) @ constant (features, out); with more axes, data (batch, ..., K) @ constant (K, M) or
    constant (M, K) @ data (batch, ..., K, S), a linear map of each sample (an Affine on it flattened, exact);
    a following bias Add is folded in."""
    if imp.is_const(node.input[0]):
        _batched_matmul(imp, node, data_index=1)
        return
    weight = imp.const(node, 1).astype(np.float32)
    if node.input[0] in imp.linear_views:
        data, folded = fold_linear_view(imp, node, weight.T)
        imp.add(node, nir.Affine(weight=np.ascontiguousarray(folded), bias=np.zeros(weight.shape[1], np.float32)), [data],
                reshaped_to=(weight.shape[1],))
        return
    if weight.ndim != 2 or len(imp.shape(node.input[0])) != 1:
        _batched_matmul(imp, node, data_index=0)
        return
    imp.add(node, nir.Affine(weight=np.ascontiguousarray(weight.T), bias=np.zeros(weight.shape[1], np.float32)), [node.input[0]])


def _batched_matmul(imp: Importer, node, data_index: int) -> None:
    """A MatMul whose data has more than one axis per sample, or is the right operand: the per-sample map is found
    by multiplying the basis of the sample's values (numpy's matmul broadcasts like ONNX's), then one Affine."""
    data = node.input[data_index]
    constant = imp.const(node, 1 - data_index).astype(np.float64)
    shape = imp.shape(data)
    rank = len(shape) + 1
    if constant.ndim > rank or (constant.ndim == rank and constant.shape[0] != 1) or (data_index == 1 and rank == 2):
        raise Unsupported(f"multiplies a constant of shape {constant.shape} with data of shape (batch, "
                          f"{', '.join(map(str, shape))}) over or along the batch axis, which mixes samples")

    def product(data_values: np.ndarray) -> np.ndarray:
        try:
            return data_values @ constant if data_index == 0 else constant @ data_values
        except ValueError as err:  # shapes numpy's matmul (as ONNX's) cannot multiply
            raise Unsupported(f"cannot multiply shapes {(1, *shape)} and {constant.shape} ({err})")

    values = math.prod(shape)
    out_shape = product(np.zeros((1, *shape))).shape[1:]
    if values * math.prod(out_shape) > LINEAR_VIEW_LIMIT:
        raise Unsupported(f"as one Affine on the flattened sample it would need {values * math.prod(out_shape)} "
                          f"weights, more than {LINEAR_VIEW_LIMIT}; flatten the data and use a Gemm")
    images = product(np.eye(values).reshape(values, *shape))
    flat = data
    if len(imp.graph_shape(data)) > 1:  # a feature map: flattened first, the Affine reads its values in that order
        stored = imp.graph_shape(data)
        imp.add(node, nir.Flatten(input_type={"input": np.array(stored)}, start_dim=0, end_dim=-1), [data],
                suffix=".flatten", reshaped_to=shape)
        flat = node.output[0]
    weight = np.ascontiguousarray(images.reshape(values, -1).T, np.float32)
    imp.add(node, nir.Affine(weight=weight, bias=np.zeros(weight.shape[0], np.float32)), [flat], reshaped_to=out_shape)


def convert_batchnorm(imp: Importer, node, attrs):
    """Inference mode; folded into the preceding Conv/Gemm, else a depthwise 1×1 convolution."""
    if attrs.get("training_mode", 0):
        raise Unsupported("training_mode=1; export the model in eval mode (model.eval())")
    gamma, beta, mean, var = (imp.const(node, i).astype(np.float64) for i in range(1, 5))
    if (var + attrs.get("epsilon", 1e-5) <= 0).any():
        raise Unsupported("has a variance (plus epsilon) that is not positive; check the trained model's running_var")
    scale = gamma / np.sqrt(var + attrs.get("epsilon", 1e-5))
    imp.add(node, ChannelAffine(scale.astype(np.float32), (beta - mean * scale).astype(np.float32)), [node.input[0]])
