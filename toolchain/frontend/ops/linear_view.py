"""Moves and gathers of a feature map's positions, folded into the next Gemm or MatMul (`LinearView`).

torch's default exporter writes AdaptiveAvgPool2d to a size its input does not divide (before a classifier) as
Transpose, GatherND or Gather, Where, Add, Mul or Div and ReduceMean, then a flatten and a Gemm. No graph node can
compute those steps, but together they are a linear function of the map: each step here acts on its coefficients,
and the Gemm or MatMul folds them into its weights (exact). Gather, GatherND and Where take nothing else, so their
converters are here; Transpose, Reshape, Flatten, ReduceMean/ReduceSum, Add, Mul, Div, Gemm and MatMul hand a linear
view to the functions here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import nir
import numpy as np

from toolchain.frontend.ops.base import Unsupported

if TYPE_CHECKING:
    from toolchain.frontend import Importer


class LinearView:
    """A tensor computed linearly from the feature map `source` by moving and gathering its positions and averaging
    them: `coefficients` has the tensor's shape (the batch axis `batch_axis` of size 1), then one axis over the
    source's per-sample elements. Gathering and reducing act on it as on the tensor; a Gemm folds it into its weights.

    On a (C, H, W) map the positions move the same way in every channel, so the coefficients are those of one
    channel: the channel axis `channel_axis` has size 1 there (`channels` in the tensor) and the last axis counts the
    H·W positions, which keeps them small for wide maps. A flatten to (batch, features) merges the channels into
    the features, each channel's `block` consecutive features apart."""

    def __init__(self, source: str, coefficients: np.ndarray, batch_axis: int, channel_axis: int | None = None,
                 channels: int = 1, block: int | None = None):
        self.source, self.coefficients, self.batch_axis = source, coefficients, batch_axis
        self.channel_axis, self.channels, self.block = channel_axis, channels, block

    @property
    def rank(self) -> int:
        return self.coefficients.ndim - 1

    @property
    def size(self) -> int:
        """The values per sample."""
        return self.coefficients[..., 0].size * self.channels

    def axes(self, axes, what: str) -> list[int]:
        """The given axes (negative ones counted from the end) as non-negative ones, none of them the batch or the
        channels."""
        if self.block is not None:
            raise Unsupported(f"{what} a flattened gathered feature map; snnc folds that only into a Gemm or MatMul")
        found = sorted(int(a) % self.rank for a in axes)
        if self.batch_axis in found:
            raise Unsupported(f"{what} the batch axis")
        if self.channel_axis in found:
            raise Unsupported(f"{what} the channel axis of a gathered feature map, which snnc folds only where every "
                              "channel's positions move alike")
        return found

    def derived(self, coefficients: np.ndarray, place) -> LinearView:
        """A view of the same source with new coefficients, in which `place(axis)` is where an axis now is."""
        channel_axis = None if self.channel_axis is None else place(self.channel_axis)
        return LinearView(self.source, coefficients, place(self.batch_axis), channel_axis, self.channels)


LINEAR_VIEW_LIMIT = 2**24  # coefficients (64 MiB): a linear view is for the maps before a classifier


def _check_linear_view_size(size: int) -> None:
    if size > LINEAR_VIEW_LIMIT:
        raise Unsupported("a Transpose or gather of a feature map is supported only inside a channel shuffle (Reshape "
                          "to (g, C/g, H, W), Transpose of those two axes, Reshape back) or, on a small map, ahead of a "
                          f"flatten and a Gemm (this one would need {size} coefficients, more than {LINEAR_VIEW_LIMIT})")


def start_linear_view(imp: Importer, node, perm: list[int]) -> None:
    """A Transpose of a feature map starts a linear view: an identity over the source's positions (of one channel of
    a (C, H, W) map, else over all its elements), transposed."""
    shape = imp.shape(node.input[0])
    imp.data(node.input[0])
    if sorted(perm) != list(range(len(shape) + 1)):
        raise Unsupported(f"perm {perm} is not a permutation of the {len(shape) + 1} axes")
    is_map = len(shape) == 3 and node.input[0] not in imp.reshaped
    one_channel = (1, *shape[1:]) if is_map else shape
    _check_linear_view_size(math.prod(one_channel) ** 2)
    identity = np.eye(math.prod(one_channel), dtype=np.float32).reshape(1, *one_channel, -1)
    view = LinearView(node.input[0], identity, 0, 1 if is_map else None, shape[0] if is_map else 1)
    imp.linear_views[node.output[0]] = view.derived(identity.transpose([*perm, len(perm)]), perm.index)


def convert_gather_nd(imp: Importer, node, attrs):
    """With constant indices on positions moved to the front of a feature map (the default exporter's
    AdaptiveAvgPool2d to a larger size, ahead of a Gemm): exact, folded into the Gemm's weights."""
    view = imp.linear_views.get(node.input[0])
    if view is None:
        imp.data(node.input[0])
        raise Unsupported("a GatherND of a feature map is supported only on positions moved to the front by a "
                          "Transpose, ahead of a flatten and a Gemm (the default exporter's AdaptiveAvgPool2d)")
    imp.const_ints(node, 1)  # refuses indices that are not integers
    indices = imp.const(node, 1).astype(np.int64)
    if attrs.get("batch_dims", 0) or indices.ndim < 1:
        raise Unsupported("batch_dims != 0 is not supported")
    depth = indices.shape[-1]
    if depth > view.rank:
        raise Unsupported(f"indexes {depth} axes of a tensor with {view.rank}")
    view.axes(range(depth), "gathers along")
    sizes = np.array(view.coefficients.shape[:depth])
    if np.any(indices >= sizes) or np.any(indices < -sizes):
        raise Unsupported(f"an index is out of range for the leading axes of sizes {list(sizes)}")
    _check_linear_view_size(int(np.prod(indices.shape[:-1])) * view.coefficients[(0,) * depth].size)
    gathered = view.coefficients[tuple(np.moveaxis(indices, -1, 0))]
    imp.linear_views[node.output[0]] = view.derived(gathered, lambda axis: axis - depth + indices.ndim - 1)


def convert_gather(imp: Importer, node, attrs):
    """With constant indices, of positions of a feature map gathered ahead of a flatten and a Gemm (the default
    exporter's AdaptiveAvgPool2d with overlapping bins picks each bin's taps so): exact, folded into the Gemm's weights."""
    view = imp.linear_views.get(node.input[0])
    if view is None:
        imp.data(node.input[0])
        raise Unsupported("a Gather of data is supported only on positions of a feature map gathered for a flatten "
                          "and a Gemm (the default exporter's AdaptiveAvgPool2d)")
    indices = np.asarray(imp.const_ints(node, 1), np.int64).reshape(imp.const(node, 1).shape)
    axis = view.axes([attrs.get("axis", 0)], "gathers along")[0]
    if np.any(indices >= view.coefficients.shape[axis]) or np.any(indices < -view.coefficients.shape[axis]):
        raise Unsupported(f"an index is out of range for axis {axis} of size {view.coefficients.shape[axis]}")
    _check_linear_view_size(view.coefficients.size // view.coefficients.shape[axis] * indices.size)
    gathered = np.take(view.coefficients, indices, axis=axis)
    imp.linear_views[node.output[0]] = view.derived(gathered, lambda a: a + (indices.ndim - 1 if a > axis else 0))


def _lifted(view: LinearView, rank: int) -> LinearView:
    """The view with leading axes of size 1 up to `rank` tensor axes, as broadcasting adds them."""
    view.axes([], "broadcasts")  # refuses a flattened view
    return view.derived(view.coefficients.reshape((1,) * (rank - view.rank) + view.coefficients.shape),
                        lambda axis: axis + rank - view.rank)


def _aligned(view: LinearView, *constants: np.ndarray) -> tuple[LinearView, list[np.ndarray]]:
    """The view and the constants with as many axes as the broadcast of the tensor and the constants (the constants
    then with the axis of the source's elements, of size 1). Refuses constants that vary along the batch or the
    channels."""
    lifted = _lifted(view, max(view.rank, *(c.ndim for c in constants)))
    expanded = [np.asarray(c).reshape((1,) * (lifted.rank - c.ndim) + c.shape + (1,)) for c in constants]
    if any(c.shape[lifted.batch_axis] != 1 or (lifted.channel_axis is not None and c.shape[lifted.channel_axis] != 1)
           for c in expanded):
        raise Unsupported("a constant varies along the batch or the channel axis of a gathered feature map")
    return lifted, expanded


def _check_broadcast(*shapes: tuple[int, ...]) -> None:
    """Refuses coefficients and constants (each with the axis of the source's elements last) that do not broadcast
    together, or whose broadcast is too large for a linear view."""
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        raise Unsupported(f"operands of shapes {[s[:-1] for s in shapes]} do not broadcast together")
    _check_linear_view_size(math.prod(shape))


def convert_where(imp: Importer, node, attrs):
    """Choosing, by a constant condition, between zeros and positions of a feature map gathered ahead of a flatten and
    a Gemm (the default exporter masks the unused taps of AdaptiveAvgPool2d's overlapping bins so): exact, folded
    into the Gemm's weights."""
    condition, first, second = node.input
    views = [t for t in (first, second) if t in imp.linear_views]
    if len(views) != 1 or not imp.is_const(condition):
        raise Unsupported("a Where is supported only choosing by a constant condition between zeros and positions of "
                          "a feature map gathered for a flatten and a Gemm (the default exporter's AdaptiveAvgPool2d)")
    zeros = imp.const(node, 2 if views[0] == first else 1)
    if np.any(zeros):
        raise Unsupported("a Where chooses between a gathered feature map and constants other than 0; snnc folds "
                          "only the masking of AdaptiveAvgPool2d's taps")
    view, (chosen, zeros) = _aligned(imp.linear_views[views[0]], imp.const(node, 0).astype(bool), zeros.astype(np.float32))
    _check_broadcast(chosen.shape, view.coefficients.shape, zeros.shape)
    chosen_or_not = (view.coefficients, zeros) if views[0] == first else (zeros, view.coefficients)
    imp.linear_views[node.output[0]] = view.derived(np.where(chosen, *chosen_or_not), lambda axis: axis)


def binary_linear_view(imp: Importer, node) -> None:
    """The sum of two linear views of one feature map, or one scaled by a constant (Mul, Div): the default exporter
    sums and averages AdaptiveAvgPool2d's overlapping bins so; exact, folded into the following Gemm's weights."""
    a, b = node.input
    if a in imp.linear_views and b in imp.linear_views:
        first, second = imp.linear_views[a], imp.linear_views[b]
        if node.op_type != "Add" or first.source != second.source:
            raise Unsupported(f"{node.op_type} of two gathered feature maps; snnc folds only the Add of two of one map")
        rank = max(first.rank, second.rank)
        view, other = _lifted(first, rank), _lifted(second, rank)
        if (view.batch_axis, view.channel_axis, view.channels) != (other.batch_axis, other.channel_axis, other.channels):
            raise Unsupported("adds two gathered feature maps whose batch or channel axes differ")
        _check_broadcast(view.coefficients.shape, other.coefficients.shape)
        result = view.coefficients + other.coefficients
    else:
        view_input, constant_index = (a, 1) if a in imp.linear_views else (b, 0)
        constant = imp.const(node, constant_index).astype(np.float64)
        if node.op_type not in ("Mul", "Div") or (node.op_type, constant_index) == ("Div", 0):
            raise Unsupported(f"{node.op_type} of a gathered feature map and a constant; snnc folds only scaling "
                              "(Mul, Div by a constant) into the following Gemm")
        view, (factor,) = _aligned(imp.linear_views[view_input], constant)
        _check_broadcast(view.coefficients.shape, factor.shape)
        result = view.coefficients * factor if node.op_type == "Mul" else view.coefficients / factor
    imp.linear_views[node.output[0]] = view.derived(result.astype(np.float32), lambda axis: axis)


def transpose_linear_view(imp: Importer, node, perm: list[int]) -> None:
    view = imp.linear_views[node.input[0]]
    view.axes([], "transposes")  # refuses a flattened view
    if sorted(perm) != list(range(view.rank)):
        raise Unsupported(f"perm {perm} is not a permutation of the {view.rank} axes")
    imp.linear_views[node.output[0]] = view.derived(view.coefficients.transpose([*perm, view.rank]), perm.index)


def reduce_linear_view(imp: Importer, node, axes, keepdims: bool) -> None:
    view = imp.linear_views[node.input[0]]
    axes = view.axes(axes if axes else range(view.rank), "reduces over")
    reduce = np.mean if node.op_type == "ReduceMean" else np.sum
    reduced = reduce(view.coefficients, axis=tuple(axes), keepdims=keepdims)
    imp.linear_views[node.output[0]] = view.derived(reduced, lambda axis: axis if keepdims else axis - sum(a < axis for a in axes))


def reshape_linear_view(imp: Importer, node, per_sample: tuple[int, ...]) -> None:
    """Any reshape of a view of all the source's elements; of a view of one channel's positions, a flatten (which
    puts each channel's values `block` features apart) or a no-op."""
    view = imp.linear_views[node.input[0]]
    if view.batch_axis != 0:
        raise Unsupported("reshapes a tensor whose batch is not the first axis")
    if view.channel_axis is None:
        imp.linear_views[node.output[0]] = LinearView(view.source, view.coefficients.reshape(1, *per_sample, -1), 0)
        return
    shape = [d * (view.channels if axis == view.channel_axis else 1) for axis, d in enumerate(view.coefficients.shape[1:-1], 1)]
    if list(per_sample) == shape:
        imp.linear_views[node.output[0]] = view
    elif len(per_sample) == 1:
        view.axes([], "flattens")  # refuses a flattened view
        block = math.prod(view.coefficients.shape[view.channel_axis + 1:-1])
        coefficients = view.coefficients.reshape(1, -1, view.coefficients.shape[-1])
        imp.linear_views[node.output[0]] = LinearView(view.source, coefficients, 0, 1, view.channels, block)
    else:
        raise Unsupported(f"reshapes a gathered feature map of shape {tuple(shape)} per sample to {per_sample}; snnc "
                          "folds only a flatten of it into the following Gemm")


def fold_linear_view(imp: Importer, node, weight: np.ndarray) -> tuple[str, np.ndarray]:
    """For a Gemm/MatMul whose data input is a linear view: a flatten of the view's source, added, and the (out,
    in) weight that reads it; the data input and `weight` unchanged where it is no linear view."""
    view = imp.linear_views.get(node.input[0])
    if view is None:
        return node.input[0], weight
    if view.batch_axis != 0 or view.rank != 2:
        raise Unsupported("its data input is a gathered feature map that is not flattened to (batch, features)")
    if weight.shape[1] != view.size:
        raise Unsupported(f"its weight takes {weight.shape[1]} features, its data input has {view.size}")
    coefficients = view.coefficients[0].astype(np.float64)
    if view.channel_axis is None:
        folded = weight.astype(np.float64) @ coefficients
    else:  # the weights of each channel's features, times that channel's positions
        outputs, block = weight.shape[0], view.block or 1
        per_channel = weight.reshape(outputs, -1, view.channels, block).transpose(0, 2, 1, 3).reshape(outputs, view.channels, -1)
        folded = (per_channel.astype(np.float64) @ coefficients).reshape(outputs, -1)
    source = imp.graph_shape(view.source)
    if len(source) == 1:  # already flat, its values in the order the coefficients count them
        return view.source, folded.astype(np.float32)
    imp.add(node, nir.Flatten(input_type={"input": np.array(source)}, start_dim=0, end_dim=-1), [view.source],
            suffix=".flatten")
    return node.output[0], folded.astype(np.float32)
