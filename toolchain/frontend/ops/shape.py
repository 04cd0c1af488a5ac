"""Converters for ops that change only how each sample's values are indexed: Reshape, Flatten, Squeeze, Unsqueeze
(an alias of the input with its new per-sample shape, `Importer.reshaped`, or a flatten), Transpose (of a channel
split: with the Reshapes around it a channel shuffle, one 1×1 permutation convolution; of a small map before a
classifier, linear_view.py), Concat along channels, Cast between floats, and Shape, which only feeds a Reshape.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import nir
import numpy as np
import onnx

from toolchain.frontend.ops.base import Unsupported
from toolchain.frontend.ops.linear_view import reshape_linear_view, start_linear_view, transpose_linear_view
from toolchain.graph import Concat

if TYPE_CHECKING:
    from toolchain.frontend import Importer


def _reshape_to(imp: Importer, node, target: tuple[int, ...]) -> None:
    """A reshape that keeps the batch: a step of a channel shuffle (`_channel_shuffle_step`), a no-op, a flatten,
    or any other per-sample shape of the same values, kept on the graph node (`Importer.reshaped`): a feature map
    where only axes of size 1 come or go (so that reshaping back gives the map again), else flattened."""
    if _channel_shuffle_step(imp, node, target):
        return
    source, stored = imp.shape(node.input[0]), imp.graph_shape(node.input[0])
    if min(target, default=1) < 1 or math.prod(target) != math.prod(source):
        raise Unsupported(f"reshapes {math.prod(source)} values per sample {source} to {target}, which would move "
                          "values between samples; keep the batch as the first axis")
    only_unit_axes = [d for d in target if d != 1] == [d for d in stored if d != 1] and len(target) > 1
    if len(stored) == 1 or target == stored or only_unit_axes:
        imp.alias(node, node.input[0], reshaped_to=target)
        return
    input_type = {"input": np.array(stored)}
    imp.add(node, nir.Flatten(input_type=input_type, start_dim=0, end_dim=-1), [node.input[0]], reshaped_to=target)


def _channel_shuffle_step(imp: Importer, node, target: tuple[int, ...]) -> bool:
    """Reshape (C, H, W) → (g, C/g, H, W) and back, around a Transpose of the split axes (ShuffleNet): the pair only
    reorders channels, so it becomes a 1×1 convolution with a permutation matrix (exact). True when handled."""
    if node.input[0] in imp.channel_views:
        source, channel_of = imp.channel_views[node.input[0]]
        if tuple(target[-2:]) != imp.shape(source)[1:] or int(np.prod(target[:-2])) != channel_of.size:
            raise Unsupported(f"reshapes a channel split to {target}; only a Reshape back to channels completes a shuffle")
        channel_of = channel_of.reshape(target[:-2])
        if len(target) > 3:
            imp.channel_views[node.output[0]] = (source, channel_of)
        elif np.array_equal(channel_of, np.arange(channel_of.size)):
            imp.alias(node, source)
        else:
            weight = np.zeros((channel_of.size, channel_of.size, 1, 1), np.float32)
            weight[np.arange(channel_of.size), channel_of, 0, 0] = 1.0
            imp.add(node, nir.Conv2d(input_shape=target[1:], weight=weight, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                                     groups=1, bias=np.zeros(channel_of.size, np.float32)), [source])
        return True
    source = imp.shape(node.input[0])
    # a split into axes of size 1 only adds axes (`_reshape_to`)
    if (len(source) == 3 and len(target) > 3 and tuple(target[-2:]) == source[1:] and int(np.prod(target[:-2])) == source[0]
            and min(target[:-2]) > 1 and node.input[0] not in imp.reshaped):
        imp.data(node.input[0])  # the split tensor must be data
        imp.channel_views[node.output[0]] = (node.input[0], np.arange(source[0]).reshape(target[:-2]))
        return True
    return False


def convert_transpose(imp: Importer, node, attrs):
    """Of the split channel axes of a channel shuffle (batch and the two spatial axes stay in place), or of a small
    feature map ahead of GatherND, ReduceMean, a flatten and a Gemm (the default exporter's AdaptiveAvgPool2d to a
    larger size before a classifier), folded exactly into the Gemm's weights."""
    if node.input[0] in imp.linear_views:
        transpose_linear_view(imp, node, [int(p) for p in attrs.get("perm", range(imp.linear_views[node.input[0]].rank)[::-1])])
        return
    if node.input[0] not in imp.channel_views:
        rank = len(imp.shape(node.input[0])) + 1
        # a gather or a Gemm must follow to complete it; anything else is refused there, naming the Transpose's output
        start_linear_view(imp, node, [int(p) for p in attrs.get("perm", range(rank)[::-1])])
        return
    source, channel_of = imp.channel_views[node.input[0]]
    rank = channel_of.ndim + 3
    perm = list(attrs.get("perm", range(rank)[::-1]))
    if sorted(perm) != list(range(rank)) or perm[0] != 0 or perm[-2:] != [rank - 2, rank - 1]:
        raise Unsupported(f"perm {perm} moves the batch or the spatial axes; only the split channel axes may move")
    imp.channel_views[node.output[0]] = (source, channel_of.transpose([p - 1 for p in perm[1:-2]]))


def convert_flatten(imp: Importer, node, attrs):
    """axis=1, or any axis whose leading per-sample axes all have size 1 (the same result); of a transposed feature
    map (channels last) ahead of a Gemm, folded into its weights."""
    if node.input[0] in imp.linear_views:
        if int(attrs.get("axis", 1)) != 1:
            raise Unsupported("flattens a transposed feature map from an axis other than 1")
        reshape_linear_view(imp, node, (imp.linear_views[node.input[0]].size,))
        return
    source = imp.shape(node.input[0])
    axis = int(attrs.get("axis", 1)) % (len(source) + 1)
    if axis == 0 or any(d != 1 for d in source[: axis - 1]):
        raise Unsupported(f"Flatten with axis {attrs.get('axis', 1)} of a (batch, {', '.join(map(str, source))}) tensor "
                          "would mix the batch into features; flatten from axis 1")
    _reshape_to(imp, node, (int(np.prod(source)),))


def convert_reshape(imp: Importer, node, attrs):
    """Any reshape that keeps the batch first: a flatten, a no-op, another shape of each sample's values (read by
    elementwise ops, MatMul, a Conv when 1×1 and the next reshape), or a channel shuffle with Transpose (a 1×1
    permutation conv); constant or Shape-derived target shape."""
    # The first entry is the batch (a symbolic size, -1, 0 or the batch of a Shape-derived constant).
    target = imp.const_ints(node, 1)
    if node.input[0] in imp.linear_views:
        view = imp.linear_views[node.input[0]]
        size = view.size
        per_sample = list(target[1:])  # the first entry is the batch
        if per_sample.count(-1) == 1:
            known = int(np.prod([d for d in per_sample if d != -1]))
            per_sample[per_sample.index(-1)] = size // max(known, 1)
        if 0 in per_sample or int(np.prod(per_sample)) != size:
            raise Unsupported(f"reshapes a gathered feature map of {size} values per sample to {tuple(per_sample)}")
        reshape_linear_view(imp, node, tuple(per_sample))
        return
    source = imp.shape(node.input[0])
    per_sample = [source[i - 1] if d == 0 and 0 < i <= len(source) else d for i, d in enumerate(target)][1:]
    if per_sample.count(-1) == 1:
        known = int(np.prod([d for d in per_sample if d != -1]))
        per_sample[per_sample.index(-1)] = int(np.prod(source)) // max(known, 1)
    _reshape_to(imp, node, tuple(per_sample))


def convert_squeeze_like(imp: Importer, node, attrs):
    """Axes of size 1 after the batch dropped or added: a flatten, a no-op or a reshape (e.g. (C,) to (C, 1, 1)
    before a classifier written as a 1×1 conv, and back)."""
    source = imp.shape(node.input[0])
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = imp.const_ints(node, 1)
    rank = len(source) + 1 + (len(axes or ()) if node.op_type == "Unsqueeze" else 0)
    if any(not -rank <= int(a) < rank for a in axes or ()):
        raise Unsupported(f"axes {list(axes)} are out of range for {rank} axes")
    if node.op_type == "Squeeze":
        drop = {int(a) % rank for a in axes} if axes else {i + 1 for i, d in enumerate(source) if d == 1}
        if 0 in drop or any(source[a - 1] != 1 for a in drop):
            raise Unsupported(f"drops axes {sorted(drop)} of a (batch, {', '.join(map(str, source))}) tensor; only "
                              "axes of size 1 after the batch can be dropped")
        target = tuple(d for i, d in enumerate(source) if i + 1 not in drop)
    else:
        added = sorted(int(a) % rank for a in axes)
        if 0 in added or len(set(added)) != len(added):
            raise Unsupported(f"adds axes {added}; snnc keeps the batch as the first axis")
        target = list(source)
        for a in added:
            target.insert(a - 1, 1)
        target = tuple(target)
    _reshape_to(imp, node, target)


def convert_concat(imp: Importer, node, attrs):
    """Along channels (axis 1)."""
    rank = len(imp.shape(node.input[0]))
    if attrs.get("axis") not in (1, 1 - (rank + 1)):
        raise Unsupported("only concatenation along channels (axis 1) is supported")
    imp.add(node, Concat(), list(node.input))


def convert_cast(imp: Importer, node, attrs):
    """Float to float casts only (no-op)."""
    if attrs.get("to") not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
        raise Unsupported("casting the data to a non-float type is not supported")
    imp.alias(node, node.input[0])


def convert_shape(imp: Importer, node, attrs):
    """Only as input to the shape arithmetic of a Reshape."""
    # Shape arithmetic only feeds Reshape; a batch of 1 stands for the (symbolic) batch, which Reshape skips.
    shape = np.array((1, *imp.shape(node.input[0])), dtype=np.int64)
    imp.consts[node.output[0]] = shape[attrs.get("start", 0): attrs.get("end", None)]
