"""ONNX nodes to ANN-graph nodes, one converter per ONNX op type.

Each converter turns one ONNX node into one graph node (or a constant, or an alias of its input, or a view of a
node that only the ops after it resolve: a reshape, a channel split, positions gathered for a Gemm). Elementwise
ops with scalar constants become `ScalarOp`s that the `recognise_activations` pass later reads as ReLU, clip
or QCFS; per-channel constants become `ChannelAffine`s that `fold_channel_affine` folds into convolutions.
`SUPPORTED_OPS` is the op-support table that `snnc inspect` and docs/op-support.md are made from.
"""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import nir
import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from toolchain.errors import SnncError
from toolchain.frontend.onnx_load import UPGRADED_FROM_KEY, UPGRADE_TO, load_onnx
from toolchain.graph import (
    Activation,
    Add,
    AnnGraph,
    ChannelAffine,
    Concat,
    GraphError,
    Identity,
    MaxPool,
    Node,
    ScalarOp,
    infer_shape,
    verify,
)

MAXPOOL_MODES = ("spiking", "avg", "error")
# Nonlinearities a spiking rate cannot compute; named as such in the error rather than as merely unsupported, with
# the torch modules exported as the op where its name does not say so
NO_SPIKING_EQUIVALENT = {
    "Sigmoid": "torch's SiLU is exported as Sigmoid then Mul", "Tanh": "the legacy exporter writes Mish with Tanh",
    "Gelu": "", "Erf": "older exporters write GELU with Erf", "HardSigmoid": "", "HardSwish": "", "Elu": "",
    "Selu": "", "Celu": "", "Softplus": "the legacy exporter writes Mish with Softplus", "Mish": "",
    "LeakyRelu": "a spike count is never negative", "PRelu": "a spike count is never negative", "ThresholdedRelu": "",
}
AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")
# Graph ops that act on each value alone, so they read a reshaped tensor as its graph node (Importer.reshaped)
ELEMENTWISE_OPS = (ScalarOp, ChannelAffine, Add, Identity, nir.Scale)


class _Unsupported(Exception):
    """Raised by a converter for an ONNX node it cannot take; becomes one SnncError naming the node."""


class Importer:
    """Walks the ONNX graph in order, keeping constants, per-sample shapes and the nodes built so far."""

    def __init__(self, model: onnx.ModelProto, source: str, maxpool: str, drop_lrn: bool = False):
        self.source = source
        self.maxpool = maxpool
        self.drop_lrn = drop_lrn
        self.notes: list[str] = [
            f"ONNX opset {p.value} upgraded to {UPGRADE_TO} with onnx.version_converter"
            for p in model.metadata_props if p.key == UPGRADED_FROM_KEY
        ]
        self.opsets = {o.domain or "": o.version for o in model.opset_import}
        self.consts = {t.name: _initializer(t, source) for t in model.graph.initializer}
        data_inputs = [i for i in model.graph.input if i.name not in self.consts]
        if len(data_inputs) != 1:
            raise SnncError(
                f"{source}: the model has {len(data_inputs)} data inputs {[i.name for i in data_inputs][:4]}; snnc compiles "
                "models with exactly one, with the weights stored as initializers (torch.onnx.export(..., export_params=True))"
            )
        self.input = data_inputs[0]
        self.input_name = _node_name(self.input.name, "input")
        self.input_shape = _per_sample_shape(self.input, source)
        self.tensor = {self.input.name: self.input_name}  # ONNX tensor name -> graph node name
        # ONNX tensor -> (the tensor whose channels it splits, the source channel at each index of the split axes):
        # the first half of a channel shuffle, which only a Reshape back to channels completes
        self.channel_views: dict[str, tuple[str, np.ndarray]] = {}
        # ONNX tensor -> a linear function of a feature map that only a following Gemm/MatMul can take in its weights:
        # the default exporter writes AdaptiveAvgPool2d((7, 7)) on a smaller map as Transpose, GatherND, Transpose,
        # ReduceMean, which replicates (or averages) positions (LinearView)
        self.linear_views: dict[str, LinearView] = {}
        # ONNX tensor -> its per-sample shape where that differs from the shape of the graph node computing it: a
        # reshape of a flat node ((C,) as (C, 1, 1) before a classifier written as a 1×1 conv, (K,) as (1, K)), of a
        # flattened map, or of a map with axes of size 1 added or dropped; the values and their order are the node's,
        # only how later ops index them differs
        self.reshaped: dict[str, tuple[int, ...]] = {}
        self.nodes: dict[str, Node] = {}

    # -- helpers used by converters -------------------------------------------------------------------
    def const(self, node: onnx.NodeProto, index: int, default=None) -> np.ndarray:
        name = node.input[index] if index < len(node.input) else ""
        if not name:
            if default is None:
                raise _Unsupported(f"input {index} is missing")
            return np.asarray(default)
        if name not in self.consts:
            raise _Unsupported(f"input {index} ('{name}') must be a constant (an initializer)")
        if self.consts[name].dtype.kind not in "biuf":
            raise _Unsupported(f"input {index} ('{name}') holds {self.consts[name].dtype} values; snnc needs numbers here")
        return self.consts[name]

    def const_ints(self, node: onnx.NodeProto, index: int) -> list[int]:
        value = self.const(node, index)
        if value.dtype.kind not in "iu":
            raise _Unsupported(f"input {index} ('{node.input[index]}') holds {value.dtype} values; ONNX needs int64 here")
        return [int(v) for v in value.reshape(-1)]

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def data(self, tensor: str) -> str:
        """The graph node computing ONNX tensor `tensor`, which must be data (computed from the model input)."""
        if tensor in self.linear_views:
            raise _Unsupported(f"input '{tensor}' moves or gathers the positions of a feature map; snnc folds that only "
                               "into a following Gemm or MatMul after a flatten (AdaptiveAvgPool2d before a classifier)")
        if tensor in self.channel_views:
            raise _Unsupported(f"input '{tensor}' splits the channels of a feature map; snnc folds such a split only "
                               "as a channel shuffle (Reshape, Transpose of the split axes, Reshape back)")
        if tensor not in self.tensor:
            what = "a constant" if self.is_const(tensor) else "not computed by any node snnc converts"
            raise _Unsupported(f"input '{tensor}' is {what}; snnc needs data computed from the model input here")
        return self.tensor[tensor]

    def shape(self, tensor: str) -> tuple[int, ...]:
        """The per-sample shape of ONNX tensor `tensor` (after any reshape of the graph node holding it)."""
        if tensor in self.channel_views:
            source, channel_of = self.channel_views[tensor]
            return (*channel_of.shape, *self.shape(source)[1:])
        return self.reshaped[tensor] if tensor in self.reshaped else self.graph_shape(tensor)

    def graph_shape(self, tensor: str) -> tuple[int, ...]:
        """The per-sample shape of the graph node computing ONNX tensor `tensor`."""
        source = self.data(tensor)
        return self.nodes[source].shape if source in self.nodes else self.input_shape

    def add(self, onnx_node: onnx.NodeProto, op, inputs: list[str], shape=None, suffix: str = "",
            reshaped_to: tuple[int, ...] | None = None) -> None:
        """Add a graph node computing `onnx_node`'s output (a second node for the same output takes a suffix);
        `reshaped_to`: the output's per-sample ONNX shape, from a converter that reads reshaped inputs itself."""
        base = _node_name(onnx_node.name, f"{onnx_node.op_type}_{len(self.nodes)}") + suffix
        name = _unique(base, self.nodes, self.input_name)
        sources = [self.data(t) for t in inputs]
        reshaped_to = self._reshape_carried(op, inputs) if reshaped_to is None else reshaped_to
        if shape is None:
            try:
                shape = infer_shape(op, [self.nodes[s].shape if s in self.nodes else self.input_shape for s in sources])
            except GraphError as err:
                raise _Unsupported(str(err))
        if min(shape, default=1) < 1:
            raise _Unsupported(f"gives an empty output of shape {tuple(shape)}; remove it or give its weights a size")
        if not _finite(op):
            raise _Unsupported("has NaN or infinite weights; check the trained model (e.g. for a diverged training run)")
        scope = _scope(onnx_node)
        self.nodes[name] = Node(name, op, sources, tuple(int(d) for d in shape), onnx_node.name, onnx_node.output[0],
                                scope + suffix if scope else "")
        self.tensor[onnx_node.output[0]] = name
        self.reshaped.pop(onnx_node.output[0], None)
        if reshaped_to is not None and tuple(reshaped_to) != self.nodes[name].shape:
            self.reshaped[onnx_node.output[0]] = tuple(reshaped_to)

    def _reshape_carried(self, op, inputs: list[str]) -> tuple[int, ...] | None:
        """The per-sample ONNX shape of an elementwise op's output where its inputs are reshaped (the same for all);
        refuses a reshaped input to any other op, which would read it in the graph node's shape."""
        reshaped = [t for t in inputs if t in self.reshaped]
        if not reshaped:
            return None
        if not isinstance(op, ELEMENTWISE_OPS):
            raise _Unsupported(f"input '{reshaped[0]}' is a tensor reshaped to {self.reshaped[reshaped[0]]} per sample; "
                               "snnc reads such a reshape only in elementwise ops, a MatMul, a Conv on a 1×1 map or a "
                               "reshape; reshape it back or flatten it before this op")
        if len({self.shape(t) for t in inputs}) > 1:
            raise _Unsupported(f"broadcasts inputs of per-sample shapes {[self.shape(t) for t in inputs]}; snnc needs "
                               "one shape here")
        return self.reshaped[reshaped[0]]

    def alias(self, onnx_node: onnx.NodeProto, tensor: str, reshaped_to: tuple[int, ...] | None = None) -> None:
        """The output is `tensor`'s graph node, reshaped to `reshaped_to` per sample (by default as `tensor` is)."""
        self.tensor[onnx_node.output[0]] = self.data(tensor)
        shape = self.shape(tensor) if reshaped_to is None else tuple(reshaped_to)
        self.reshaped.pop(onnx_node.output[0], None)
        if shape != self.graph_shape(tensor):
            self.reshaped[onnx_node.output[0]] = shape

    # -- the walk ----------------------------------------------------------------------------------------
    def run(self, model: onnx.ModelProto) -> AnnGraph:
        # Broken weights make numpy warn on stderr (overflow, 0/0); add() refuses the non-finite results itself.
        with np.errstate(all="ignore"):
            for onnx_node in model.graph.node:
                self._convert(onnx_node)
        if len(model.graph.output) != 1:
            raise SnncError(f"{self.source}: the model has {len(model.graph.output)} outputs; snnc compiles models with one")
        output = self.tensor.get(model.graph.output[0].name)
        if output is None or output == self.input_name:
            raise SnncError(f"{self.source}: the model output is not computed from its input")
        graph = AnnGraph(self.source, self.input_name, self.input_shape, self.nodes, output, self.notes)
        _drop_unused(graph)
        return verify(graph)

    def _convert(self, onnx_node: onnx.NodeProto) -> None:
        where = f"{self.source}: node '{onnx_node.name or '(unnamed)'}' ({onnx_node.op_type})"
        if onnx_node.domain not in ("", "ai.onnx"):
            raise SnncError(f"{where} is from the custom domain '{onnx_node.domain}'; {_supported_hint()}")
        if all(self.is_const(i) for i in onnx_node.input if i):
            self._fold_constant(onnx_node, where)
            return
        convert = SUPPORTED_OPS.get(onnx_node.op_type)
        if convert is None:
            if onnx_node.op_type in NO_SPIKING_EQUIVALENT:
                hint = NO_SPIKING_EQUIVALENT[onnx_node.op_type]
                raise SnncError(
                    f"{where} has no spiking equivalent (a rate-coded neuron computes ReLU-like functions only"
                    f"{'; ' + hint if hint else ''}); replace it with ReLU (or a clipped ReLU) and retrain; {_supported_hint()}"
                )
            raise SnncError(f"{where} is not supported; {_supported_hint()}")
        try:
            convert(self, onnx_node, _attributes(onnx_node))
        except _Unsupported as err:
            raise SnncError(f"{where}: {err}")

    def _fold_constant(self, onnx_node: onnx.NodeProto, where: str) -> None:
        """Evaluate a node whose inputs are all constants (Constant, Shape arithmetic, casts) once, here."""
        attrs = _attributes(onnx_node)
        if onnx_node.op_type == "Unsqueeze" and "axes" in attrs:
            # onnx's reference Unsqueeze (opset 11) fails on the `axes` attribute; it is one numpy call.
            self.consts[onnx_node.output[0]] = np.expand_dims(self.consts[onnx_node.input[0]], tuple(attrs["axes"]))
            return
        try:
            outputs = ReferenceEvaluator(onnx_node, opsets=self.opsets).run(None, {i: self.consts[i] for i in onnx_node.input if i})
        except Exception as err:  # the reference evaluator raises many types for bad constant nodes
            raise SnncError(f"{where}: cannot evaluate this constant expression ({err}); simplify the model (onnxsim)")
        for name, value in zip(onnx_node.output, outputs):
            self.consts[name] = np.asarray(value)


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
            raise _Unsupported(f"{what} a flattened gathered feature map; snnc folds that only into a Gemm or MatMul")
        found = sorted(int(a) % self.rank for a in axes)
        if self.batch_axis in found:
            raise _Unsupported(f"{what} the batch axis")
        if self.channel_axis in found:
            raise _Unsupported(f"{what} the channel axis of a gathered feature map, which snnc folds only where every "
                               "channel's positions move alike")
        return found

    def derived(self, coefficients: np.ndarray, place) -> LinearView:
        """A view of the same source with new coefficients, in which `place(axis)` is where an axis now is."""
        channel_axis = None if self.channel_axis is None else place(self.channel_axis)
        return LinearView(self.source, coefficients, place(self.batch_axis), channel_axis, self.channels)


LINEAR_VIEW_LIMIT = 2**24  # coefficients (64 MiB): a linear view is for the maps before a classifier


def _check_linear_view_size(size: int) -> None:
    if size > LINEAR_VIEW_LIMIT:
        raise _Unsupported("a Transpose or gather of a feature map is supported only inside a channel shuffle (Reshape "
                           "to (g, C/g, H, W), Transpose of those two axes, Reshape back) or, on a small map, ahead of a "
                           f"flatten and a Gemm (this one would need {size} coefficients, more than {LINEAR_VIEW_LIMIT})")


def _linear_view_start(imp: Importer, node, perm: list[int]) -> None:
    """A Transpose of a feature map starts a linear view: an identity over the source's positions (of one channel of
    a (C, H, W) map, else over all its elements), transposed."""
    shape = imp.shape(node.input[0])
    imp.data(node.input[0])
    if sorted(perm) != list(range(len(shape) + 1)):
        raise _Unsupported(f"perm {perm} is not a permutation of the {len(shape) + 1} axes")
    is_map = len(shape) == 3 and node.input[0] not in imp.reshaped
    one_channel = (1, *shape[1:]) if is_map else shape
    _check_linear_view_size(math.prod(one_channel) ** 2)
    identity = np.eye(math.prod(one_channel), dtype=np.float32).reshape(1, *one_channel, -1)
    view = LinearView(node.input[0], identity, 0, 1 if is_map else None, shape[0] if is_map else 1)
    imp.linear_views[node.output[0]] = view.derived(identity.transpose([*perm, len(perm)]), perm.index)


def _gather_nd(imp: Importer, node, attrs):
    """With constant indices on positions moved to the front of a feature map (the default exporter's
    AdaptiveAvgPool2d to a larger size, ahead of a Gemm): exact, folded into the Gemm's weights."""
    view = imp.linear_views.get(node.input[0])
    if view is None:
        imp.data(node.input[0])
        raise _Unsupported("a GatherND of a feature map is supported only on positions moved to the front by a "
                           "Transpose, ahead of a flatten and a Gemm (the default exporter's AdaptiveAvgPool2d)")
    imp.const_ints(node, 1)  # refuses indices that are not integers
    indices = imp.const(node, 1).astype(np.int64)
    if attrs.get("batch_dims", 0) or indices.ndim < 1:
        raise _Unsupported("batch_dims != 0 is not supported")
    depth = indices.shape[-1]
    if depth > view.rank:
        raise _Unsupported(f"indexes {depth} axes of a tensor with {view.rank}")
    view.axes(range(depth), "gathers along")
    sizes = np.array(view.coefficients.shape[:depth])
    if np.any(indices >= sizes) or np.any(indices < -sizes):
        raise _Unsupported(f"an index is out of range for the leading axes of sizes {list(sizes)}")
    _check_linear_view_size(int(np.prod(indices.shape[:-1])) * view.coefficients[(0,) * depth].size)
    gathered = view.coefficients[tuple(np.moveaxis(indices, -1, 0))]
    imp.linear_views[node.output[0]] = view.derived(gathered, lambda axis: axis - depth + indices.ndim - 1)


def _gather(imp: Importer, node, attrs):
    """With constant indices, of positions of a feature map gathered ahead of a flatten and a Gemm (the default
    exporter's AdaptiveAvgPool2d with overlapping bins picks each bin's taps so): exact, folded into the Gemm's weights."""
    view = imp.linear_views.get(node.input[0])
    if view is None:
        imp.data(node.input[0])
        raise _Unsupported("a Gather of data is supported only on positions of a feature map gathered for a flatten "
                           "and a Gemm (the default exporter's AdaptiveAvgPool2d)")
    indices = np.asarray(imp.const_ints(node, 1), np.int64).reshape(imp.const(node, 1).shape)
    axis = view.axes([attrs.get("axis", 0)], "gathers along")[0]
    if np.any(indices >= view.coefficients.shape[axis]) or np.any(indices < -view.coefficients.shape[axis]):
        raise _Unsupported(f"an index is out of range for axis {axis} of size {view.coefficients.shape[axis]}")
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
        raise _Unsupported("a constant varies along the batch or the channel axis of a gathered feature map")
    return lifted, expanded


def _check_broadcast(*shapes: tuple[int, ...]) -> None:
    """Refuses coefficients and constants (each with the axis of the source's elements last) that do not broadcast
    together, or whose broadcast is too large for a linear view."""
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        raise _Unsupported(f"operands of shapes {[s[:-1] for s in shapes]} do not broadcast together")
    _check_linear_view_size(math.prod(shape))


def _where(imp: Importer, node, attrs):
    """Choosing, by a constant condition, between zeros and positions of a feature map gathered ahead of a flatten and
    a Gemm (the default exporter masks the unused taps of AdaptiveAvgPool2d's overlapping bins so): exact, folded
    into the Gemm's weights."""
    condition, first, second = node.input
    views = [t for t in (first, second) if t in imp.linear_views]
    if len(views) != 1 or not imp.is_const(condition):
        raise _Unsupported("a Where is supported only choosing by a constant condition between zeros and positions of "
                           "a feature map gathered for a flatten and a Gemm (the default exporter's AdaptiveAvgPool2d)")
    zeros = imp.const(node, 2 if views[0] == first else 1)
    if np.any(zeros):
        raise _Unsupported("a Where chooses between a gathered feature map and constants other than 0; snnc folds "
                           "only the masking of AdaptiveAvgPool2d's taps")
    view, (chosen, zeros) = _aligned(imp.linear_views[views[0]], imp.const(node, 0).astype(bool), zeros.astype(np.float32))
    _check_broadcast(chosen.shape, view.coefficients.shape, zeros.shape)
    chosen_or_not = (view.coefficients, zeros) if views[0] == first else (zeros, view.coefficients)
    imp.linear_views[node.output[0]] = view.derived(np.where(chosen, *chosen_or_not), lambda axis: axis)


def _binary_linear_view(imp: Importer, node) -> None:
    """The sum of two linear views of one feature map, or one scaled by a constant (Mul, Div): the default exporter
    sums and averages AdaptiveAvgPool2d's overlapping bins so; exact, folded into the following Gemm's weights."""
    a, b = node.input
    if a in imp.linear_views and b in imp.linear_views:
        first, second = imp.linear_views[a], imp.linear_views[b]
        if node.op_type != "Add" or first.source != second.source:
            raise _Unsupported(f"{node.op_type} of two gathered feature maps; snnc folds only the Add of two of one map")
        rank = max(first.rank, second.rank)
        view, other = _lifted(first, rank), _lifted(second, rank)
        if (view.batch_axis, view.channel_axis, view.channels) != (other.batch_axis, other.channel_axis, other.channels):
            raise _Unsupported("adds two gathered feature maps whose batch or channel axes differ")
        _check_broadcast(view.coefficients.shape, other.coefficients.shape)
        result = view.coefficients + other.coefficients
    else:
        view_input, constant_index = (a, 1) if a in imp.linear_views else (b, 0)
        constant = imp.const(node, constant_index).astype(np.float64)
        if node.op_type not in ("Mul", "Div") or (node.op_type, constant_index) == ("Div", 0):
            raise _Unsupported(f"{node.op_type} of a gathered feature map and a constant; snnc folds only scaling "
                               "(Mul, Div by a constant) into the following Gemm")
        view, (factor,) = _aligned(imp.linear_views[view_input], constant)
        _check_broadcast(view.coefficients.shape, factor.shape)
        result = view.coefficients * factor if node.op_type == "Mul" else view.coefficients / factor
    imp.linear_views[node.output[0]] = view.derived(result.astype(np.float32), lambda axis: axis)


def _transpose_linear_view(imp: Importer, node, perm: list[int]) -> None:
    view = imp.linear_views[node.input[0]]
    view.axes([], "transposes")  # refuses a flattened view
    if sorted(perm) != list(range(view.rank)):
        raise _Unsupported(f"perm {perm} is not a permutation of the {view.rank} axes")
    imp.linear_views[node.output[0]] = view.derived(view.coefficients.transpose([*perm, view.rank]), perm.index)


def _reduce_linear_view(imp: Importer, node, axes, keepdims: bool) -> None:
    view = imp.linear_views[node.input[0]]
    axes = view.axes(axes if axes else range(view.rank), "reduces over")
    reduce = np.mean if node.op_type == "ReduceMean" else np.sum
    reduced = reduce(view.coefficients, axis=tuple(axes), keepdims=keepdims)
    imp.linear_views[node.output[0]] = view.derived(reduced, lambda axis: axis if keepdims else axis - sum(a < axis for a in axes))


def _reshape_linear_view(imp: Importer, node, per_sample: tuple[int, ...]) -> None:
    """Any reshape of a view of all the source's elements; of a view of one channel's positions, a flatten (which
    puts each channel's values `block` features apart) or a no-op."""
    view = imp.linear_views[node.input[0]]
    if view.batch_axis != 0:
        raise _Unsupported("reshapes a tensor whose batch is not the first axis")
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
        raise _Unsupported(f"reshapes a gathered feature map of shape {tuple(shape)} per sample to {per_sample}; snnc "
                           "folds only a flatten of it into the following Gemm")


def _fold_linear_view(imp: Importer, node, weight: np.ndarray) -> tuple[str, np.ndarray]:
    """For a Gemm/MatMul whose data input is a linear view: a flatten of the view's source, added, and the (out,
    in) weight that reads it; the data input and `weight` unchanged where it is no linear view."""
    view = imp.linear_views.get(node.input[0])
    if view is None:
        return node.input[0], weight
    if view.batch_axis != 0 or view.rank != 2:
        raise _Unsupported("its data input is a gathered feature map that is not flattened to (batch, features)")
    if weight.shape[1] != view.size:
        raise _Unsupported(f"its weight takes {weight.shape[1]} features, its data input has {view.size}")
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


def _initializer(tensor: onnx.TensorProto, source: str) -> np.ndarray:
    try:
        return numpy_helper.to_array(tensor)
    except (ValueError, TypeError, KeyError) as err:  # data that does not fit the declared type and shape
        raise SnncError(f"{source}: initializer '{tensor.name}' cannot be read ({err}); re-export the model")


def _finite(op) -> bool:
    """No NaN or Inf in an op's weights; a scalar operand may be infinite (Clip(x, 0, inf) is a ReLU)."""
    arrays = [v for v in vars(op).values() if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
    scalars = [o for o in op.operands if o is not None] if isinstance(op, ScalarOp) else []
    return all(np.isfinite(a).all() for a in arrays) and not np.isnan(scalars).any()


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _node_name(onnx_name: str, fallback: str) -> str:
    """A graph-node name that NIR/HDF5 accept: ONNX's '/block/conv/Conv' becomes 'block.conv.Conv'."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", ".", onnx_name).strip(".")
    return cleaned or fallback


# The module path of a node, as torch's exporters record it (tests/test_layer_names.py exports real models):
# dynamo=True puts the modules' qualified names in the node's metadata, the last entry being the traced op
# (['', 'layer1', 'layer1.0', 'layer1.0.conv1', 'conv2d_3']), or in `namespace` (': ResNet/layer1: Sequential/...');
# the legacy exporter names the node by its scopes and op type ('/layer1/layer1.0/conv1/Conv').
SCOPES_KEY, NAMESPACE_KEY = "pkg.torch.onnx.name_scopes", "namespace"
# dynamo folds a BatchNorm into its convolution under the BatchNorm's scope; the weights keep the layer's name.
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _scope(onnx_node: onnx.NodeProto) -> str:
    """The module path the exporter recorded for the node ('layer1.0.conv1'), '' when it recorded none."""
    meta = {p.key: p.value for p in onnx_node.metadata_props}
    if SCOPES_KEY in meta or NAMESPACE_KEY in meta:
        try:
            parts = [str(p) for p in ast.literal_eval(meta[SCOPES_KEY])][1:-1]
        except (KeyError, ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
            parts = [p.split(":")[0].strip() for p in meta.get(NAMESPACE_KEY, "").split("/")][1:-1]
    elif onnx_node.name.startswith("/"):
        parts = onnx_node.name.strip("/").split("/")[:-1]
    else:
        return ""
    weight = onnx_node.input[1] if onnx_node.op_type in WEIGHTED_OPS and len(onnx_node.input) > 1 else ""
    if weight.endswith(".weight"):
        parts = [weight[: -len(".weight")]]
    path, previous = [], ""
    for part in parts:  # each level may repeat its parent's qualified name: 'layer1', 'layer1.0' -> 'layer1.0'
        if previous and part.startswith(previous + "."):
            path.append(part[len(previous) + 1:])
        elif part:
            path.append(part)
        previous = part or previous
    return _node_name(".".join(path), "")


def _unique(name: str, taken: dict, *reserved: str) -> str:
    candidate, k = name, 1
    while candidate in taken or candidate in reserved:
        candidate, k = f"{name}_{k}", k + 1
    return candidate


def _per_sample_shape(value_info: onnx.ValueInfoProto, source: str) -> tuple[int, ...]:
    tensor_type = value_info.type.tensor_type
    if tensor_type.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
        dtype = onnx.TensorProto.DataType.Name(tensor_type.elem_type)
        raise SnncError(f"{source}: input '{value_info.name}' has type {dtype}; snnc compiles models with a float input")
    dims = tensor_type.shape.dim
    sample = [d.dim_value if d.HasField("dim_value") else None for d in dims[1:]]
    if len(dims) not in (2, 4) or any(d is None or d <= 0 for d in sample):
        shown = [d.dim_param or d.dim_value for d in dims]
        raise SnncError(
            f"{source}: input '{value_info.name}' has shape {shown}; snnc needs (batch, features) or "
            "(batch, channels, height, width) with fixed sizes after the batch dimension"
        )
    return tuple(sample)


def _drop_unused(graph: AnnGraph) -> None:
    """Remove nodes nothing reads (e.g. a Shape branch's data side) so later passes see only the live graph."""
    live, stack = set(), [graph.output]
    while stack:
        name = stack.pop()
        if name in live or name not in graph.nodes:
            continue
        live.add(name)
        stack.extend(graph.nodes[name].inputs)
    for name in [n for n in graph.nodes if n not in live]:
        del graph.nodes[name]


def _supported_hint() -> str:
    return f"snnc supports {', '.join(sorted(SUPPORTED_OPS))}; replace this op in the model before exporting"


# -- converters ----------------------------------------------------------------------------------------------


def _pads(attrs: dict, hw, kernel, strides, dilations) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) from `pads` or `auto_pad` (SAME_UPPER puts an odd total's extra pad at the end)."""
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode(errors="replace") if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in AUTO_PADS:
        raise _Unsupported(f"auto_pad '{auto_pad}' is not one of ONNX's {', '.join(AUTO_PADS)}; re-export the model")
    if auto_pad == "VALID":
        return (0, 0, 0, 0)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        totals = [max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0) for n, k, s, d in zip(hw, kernel, strides, dilations)]
        small, large = [t // 2 for t in totals], [t - t // 2 for t in totals]
        return tuple(small + large) if auto_pad == "SAME_UPPER" else tuple(large + small)
    pads = tuple(int(p) for p in attrs.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4 or min(pads) < 0:
        raise _Unsupported(f"pads {list(pads)} are not four non-negative numbers for a 2-D window")
    return pads


def _symmetric_window(weight: np.ndarray, pads, dilations) -> tuple[np.ndarray, tuple[int, int]]:
    """A convolution weight (O, I, kh, kw) and symmetric padding that compute the same as `weight` with asymmetric
    `pads` (NIR pads symmetrically): pad both sides by the larger amount and add zero taps where the window then
    starts early (leading) or would run on past the last output (trailing). Exact."""
    before, after = pads[:2], pads[2:]
    if before == after:
        return weight, tuple(before)
    if any(d != 1 for d in dilations):
        raise _Unsupported(f"asymmetric padding {list(pads)} with dilation {list(dilations)} is not supported")
    padding = tuple(max(b, a) for b, a in zip(before, after))
    taps = [(p - b, p - a) for p, b, a in zip(padding, before, after)]
    return np.pad(weight, ((0, 0), (0, 0), *taps)), padding


def _conv(imp: Importer, node, attrs):
    """2-D only; stride, dilation, groups; pads or auto_pad (asymmetric ones as zero taps); constant weights; on a
    flat tensor reshaped to (C, 1, 1) (a classifier written as a 1×1 conv) an Affine."""
    weight = imp.const(node, 1).astype(np.float32)
    shape = imp.shape(node.input[0])
    if weight.ndim != 4 or len(shape) != 3:
        raise _Unsupported("only 2-D convolutions (NCHW input, OIHW weight) are supported")
    bias = imp.const(node, 2, default=np.zeros(weight.shape[0])).astype(np.float32)
    if bias.shape != weight.shape[:1]:
        raise _Unsupported(f"its bias has shape {bias.shape} for {weight.shape[0]} output channels")
    strides = tuple(attrs.get("strides", (1, 1)))
    dilations = tuple(attrs.get("dilations", (1, 1)))
    if node.input[0] in imp.reshaped:
        _conv_of_a_point(imp, node, weight, bias, _pads(attrs, shape[1:], weight.shape[2:], strides, dilations),
                         strides, dilations, int(attrs.get("group", 1)))
        return
    weight, pads = _symmetric_window(weight, _pads(attrs, shape[1:], weight.shape[2:], strides, dilations), dilations)
    op = nir.Conv2d(
        input_shape=shape[1:], weight=weight, stride=strides, padding=pads, dilation=dilations,
        groups=int(attrs.get("group", 1)), bias=bias,
    )
    imp.add(node, op, [node.input[0]])


def _conv_of_a_point(imp: Importer, node, weight, bias, pads, strides, dilations, groups: int) -> None:
    """A Conv of a flat tensor reshaped to (C, 1, 1): each output position sees at most one tap (the one on the
    single input position, the others on padding), so the conv is an Affine from (C,) to (O·H'·W',) (exact)."""
    channels = imp.shape(node.input[0])
    if channels[1:] != (1, 1) or len(imp.graph_shape(node.input[0])) != 1:
        raise _Unsupported(f"convolves a flat tensor reshaped to {channels}; snnc reads such a reshape as a feature "
                           "map only when it is 1×1; reshape before the last linear layer that makes it flat")
    if groups < 1 or weight.shape[1] * groups != channels[0] or weight.shape[0] % groups:
        raise _Unsupported(f"its weight of shape {weight.shape} in {groups} groups does not fit {channels[0]} input channels")
    if len(strides) != 2 or len(dilations) != 2 or min(*strides, *dilations) < 1:
        raise _Unsupported(f"strides {list(strides)} and dilations {list(dilations)} must be two positive numbers each")
    kernel = weight.shape[2:]
    out_hw = [(1 + before + after - d * (k - 1) - 1) // s + 1
              for before, after, k, s, d in zip(pads[:2], pads[2:], kernel, strides, dilations)]
    outputs, inputs_per_group = weight.shape[0], weight.shape[1]
    if min(out_hw) < 1 or outputs * math.prod(out_hw) * channels[0] > LINEAR_VIEW_LIMIT:
        raise _Unsupported(f"gives an output of {outputs}×{out_hw[0]}×{out_hw[1]} from a 1×1 map, which snnc does not "
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


def _gemm(imp: Importer, node, attrs):
    """transB, alpha, beta; transA=0 (transA=1 would contract over the batch); constant B and C."""
    if attrs.get("transA", 0):
        raise _Unsupported("transA=1 multiplies over the batch axis of the data, which mixes samples; the data must "
                           "be a (batch, features) input A with transA=0")
    if imp.is_const(node.input[0]):
        raise _Unsupported("the data is its B input, which Gemm multiplies over its batch axis (mixing samples); the "
                           "data must be the (batch, features) input A")
    b = imp.const(node, 1).astype(np.float32)
    b = b.T if attrs.get("transB", 0) else b
    weight = (attrs.get("alpha", 1.0) * b).T
    c = imp.const(node, 2, default=0.0)
    c = c[0] if c.ndim == 2 and c.shape[0] == 1 else c  # (1, N): one bias row for every sample
    if c.ndim > 1 or not _broadcasts(c.shape, (weight.shape[0],)):
        raise _Unsupported(f"the bias C of shape {c.shape} does not fit the {weight.shape[0]} outputs")
    bias = np.broadcast_to(attrs.get("beta", 1.0) * c, (weight.shape[0],))
    data, weight = _fold_linear_view(imp, node, weight)
    imp.add(node, nir.Affine(weight=np.ascontiguousarray(weight, np.float32), bias=bias.astype(np.float32)), [data],
            reshaped_to=(weight.shape[0],))


def _matmul(imp: Importer, node, attrs):
    """(batch, features) @ constant (features, out); with more axes, data (batch, ..., K) @ constant (K, M) or
    constant (M, K) @ data (batch, ..., K, S), a linear map of each sample (an Affine on it flattened, exact);
    a following bias Add is folded in."""
    if imp.is_const(node.input[0]):
        _batched_matmul(imp, node, data_index=1)
        return
    weight = imp.const(node, 1).astype(np.float32)
    if node.input[0] in imp.linear_views:
        data, folded = _fold_linear_view(imp, node, weight.T)
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
        raise _Unsupported(f"multiplies a constant of shape {constant.shape} with data of shape (batch, "
                           f"{', '.join(map(str, shape))}) over or along the batch axis, which mixes samples")

    def product(data_values: np.ndarray) -> np.ndarray:
        try:
            return data_values @ constant if data_index == 0 else constant @ data_values
        except ValueError as err:  # shapes numpy's matmul (as ONNX's) cannot multiply
            raise _Unsupported(f"cannot multiply shapes {(1, *shape)} and {constant.shape} ({err})")

    values = math.prod(shape)
    out_shape = product(np.zeros((1, *shape))).shape[1:]
    if values * math.prod(out_shape) > LINEAR_VIEW_LIMIT:
        raise _Unsupported(f"as one Affine on the flattened sample it would need {values * math.prod(out_shape)} "
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


def _batchnorm(imp: Importer, node, attrs):
    """Inference mode; folded into the preceding Conv/Gemm, else a depthwise 1×1 convolution."""
    if attrs.get("training_mode", 0):
        raise _Unsupported("training_mode=1; export the model in eval mode (model.eval())")
    gamma, beta, mean, var = (imp.const(node, i).astype(np.float64) for i in range(1, 5))
    if (var + attrs.get("epsilon", 1e-5) <= 0).any():
        raise _Unsupported("has a variance (plus epsilon) that is not positive; check the trained model's running_var")
    scale = gamma / np.sqrt(var + attrs.get("epsilon", 1e-5))
    imp.add(node, ChannelAffine(scale.astype(np.float32), (beta - mean * scale).astype(np.float32)), [node.input[0]])


def _pool_window(imp: Importer, node, attrs):
    shape = imp.shape(node.input[0])
    if len(shape) != 3:
        raise _Unsupported("only 2-D pooling is supported")
    kernel = tuple(attrs["kernel_shape"])
    strides = tuple(attrs.get("strides", (1, 1)))
    if any(d != 1 for d in attrs.get("dilations", (1, 1))):
        raise _Unsupported("dilated pooling is not supported")
    pads = _pads(attrs, shape[1:], kernel, strides, (1, 1))
    if attrs.get("ceil_mode", 0):  # the last, partial window: as much padding at the end as it overhangs
        spans = [n + b + a - k for n, k, b, a in zip(shape[1:], kernel, pads[:2], pads[2:])]
        overhang = [-span % s for span, s in zip(spans, strides)]
        pads = (*pads[:2], pads[2] + overhang[0], pads[3] + overhang[1])
    return shape, kernel, strides, pads


def _average(imp: Importer, node, shape, kernel, strides, pads, include_pad: bool):
    """Average pooling; with padding that the divisor excludes, a sum pool then a per-position scale. Asymmetric
    padding makes the pool a depthwise convolution with zero taps (`_symmetric_window`)."""
    if pads[:2] != pads[2:]:
        taps = np.full((shape[0], 1, *kernel), 1.0 / (kernel[0] * kernel[1]) if include_pad else 1.0, np.float32)
        weight, padding = _symmetric_window(taps, pads, (1, 1))
        pool = nir.Conv2d(input_shape=shape[1:], weight=weight, stride=strides, padding=padding, dilation=(1, 1),
                          groups=shape[0], bias=np.zeros(shape[0], np.float32))
    else:
        window = dict(kernel_size=np.array(kernel), stride=np.array(strides), padding=np.array(pads[:2]))
        pool = nir.AvgPool2d(**window) if include_pad or not any(pads) else nir.SumPool2d(**window)
    imp.add(node, pool, [node.input[0]])
    if include_pad or not any(pads):
        return
    counts = _window_sums(np.ones((1, *shape[1:])), kernel, strides, pads)[0]
    out_shape = imp.shape(node.output[0])
    scale = np.ascontiguousarray(np.broadcast_to(1.0 / counts, out_shape), dtype=np.float32)
    imp.add(node, nir.Scale(scale=scale), [node.output[0]], suffix=".divisor")


def _window_sums(x: np.ndarray, kernel, strides, pads) -> np.ndarray:
    """Sum of each pooling window over a (C, H, W) array with zero padding (for divisor maps)."""
    padded = np.pad(x, ((0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    out_h = (padded.shape[1] - kernel[0]) // strides[0] + 1
    out_w = (padded.shape[2] - kernel[1]) // strides[1] + 1
    out = np.zeros((x.shape[0], out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            out[:, i, j] = padded[:, i * strides[0]: i * strides[0] + kernel[0], j * strides[1]: j * strides[1] + kernel[1]].sum((1, 2))
    return out


def _averagepool(imp: Importer, node, attrs):
    """2-D; pads (asymmetric: a depthwise convolution); count_include_pad 0 or 1 (0 with pads: sum pool + per-position divisor); ceil_mode as padding at the end (with count_include_pad=1 only when it does not change the size)."""
    shape, kernel, strides, pads = _pool_window(imp, node, attrs)
    include_pad = bool(attrs.get("count_include_pad", 0))
    if include_pad and attrs.get("ceil_mode", 0) and _pool_window(imp, node, {**attrs, "ceil_mode": 0})[3] != pads:
        raise _Unsupported("ceil_mode=1 with count_include_pad=1 changes the output size here; export with ceil_mode=False")
    _average(imp, node, shape, kernel, strides, pads, include_pad=include_pad)


def _maxpool(imp: Importer, node, attrs):
    """Kept as max pooling (`--maxpool spiking`, the default; docs/maxpool.md), replaced by average pooling with
    `--maxpool avg` (the report says so), or refused with `--maxpool error`; any pads, ceil_mode as padding at the end."""
    if imp.maxpool == "error":
        raise _Unsupported("max pooling refused (--maxpool error); pass --maxpool spiking (the default) to keep it, "
                           "or --maxpool avg to replace it with average pooling (accuracy may drop)")
    if len(node.output) > 1 and node.output[1]:
        raise _Unsupported("MaxPool indices output is not supported")
    shape, kernel, strides, pads = _pool_window(imp, node, attrs)
    if imp.maxpool == "spiking":
        symmetric = pads[:2] == pads[2:]
        imp.add(node, MaxPool(kernel_size=tuple(kernel), stride=tuple(strides), padding=pads[:2] if symmetric else pads),
                [node.input[0]])
        return
    imp.notes.append(f"MaxPool '{node.name}' replaced by average pooling (--maxpool avg)")
    _average(imp, node, shape, kernel, strides, pads, include_pad=False)


def _lrn(imp: Importer, node, attrs):
    """Refused (no spiking equivalent); `--drop-lrn` removes it and says so in the report."""
    if not imp.drop_lrn:
        raise _Unsupported(
            "local response normalisation (LRN) has no spiking equivalent; retrain without LRN, "
            "or pass --drop-lrn to remove it (accuracy may drop)"
        )
    imp.notes.append(f"LRN '{node.name}' removed (--drop-lrn)")
    imp.alias(node, node.input[0])


def _global_average(imp: Importer, node, attrs):
    """Average over the whole feature map."""
    shape = imp.shape(node.input[0])
    if len(shape) != 3:
        raise _Unsupported("only 2-D global pooling is supported")
    hw = np.array(shape[1:])
    imp.add(node, nir.AvgPool2d(kernel_size=hw, stride=hw, padding=np.zeros(2, int)), [node.input[0]])


def _reduce(imp: Importer, node, attrs):
    """Over the two spatial axes of a feature map: a global average (ReduceMean) or sum (ReduceSum) pooling, then a
    flatten when keepdims=0 (the default exporter's `AdaptiveAvgPool2d((1, 1))` and `x.mean((2, 3))`)."""
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = imp.const_ints(node, 1)
    if not axes and attrs.get("noop_with_empty_axes", 0):
        if node.input[0] in imp.linear_views:
            imp.linear_views[node.output[0]] = imp.linear_views[node.input[0]]
        else:
            imp.alias(node, node.input[0])
        return
    if node.input[0] in imp.linear_views:
        _reduce_linear_view(imp, node, axes, bool(attrs.get("keepdims", 1)))
        return
    shape = imp.shape(node.input[0])
    rank = len(shape) + 1
    axes = sorted(int(a) % rank for a in axes) if axes else list(range(rank))
    if len(shape) != 3 or axes != [2, 3]:
        raise _Unsupported(f"reduces axes {axes} of a (batch, {', '.join(map(str, shape))}) tensor; snnc converts "
                           "reductions over the two spatial axes of a feature map only (global pooling)")
    hw = np.array(shape[1:])
    window = dict(kernel_size=hw, stride=hw, padding=np.zeros(2, int))
    imp.add(node, nir.AvgPool2d(**window) if node.op_type == "ReduceMean" else nir.SumPool2d(**window), [node.input[0]])
    if not attrs.get("keepdims", 1):
        flat = nir.Flatten(input_type={"input": np.array((shape[0], 1, 1))}, start_dim=0, end_dim=-1)
        imp.add(node, flat, [node.output[0]], suffix=".flatten")


def _reshape_to(imp: Importer, node, target: tuple[int, ...]) -> None:
    """A reshape that keeps the batch: a step of a channel shuffle (`_channel_shuffle_step`), a no-op, a flatten,
    or any other per-sample shape of the same values, kept on the graph node (`Importer.reshaped`): a feature map
    where only axes of size 1 come or go (so that reshaping back gives the map again), else flattened."""
    if _channel_shuffle_step(imp, node, target):
        return
    source, stored = imp.shape(node.input[0]), imp.graph_shape(node.input[0])
    if min(target, default=1) < 1 or math.prod(target) != math.prod(source):
        raise _Unsupported(f"reshapes {math.prod(source)} values per sample {source} to {target}, which would move "
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
            raise _Unsupported(f"reshapes a channel split to {target}; only a Reshape back to channels completes a shuffle")
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


def _transpose(imp: Importer, node, attrs):
    """Of the split channel axes of a channel shuffle (batch and the two spatial axes stay in place), or of a small
    feature map ahead of GatherND, ReduceMean, a flatten and a Gemm (the default exporter's AdaptiveAvgPool2d to a
    larger size before a classifier), folded exactly into the Gemm's weights."""
    if node.input[0] in imp.linear_views:
        _transpose_linear_view(imp, node, [int(p) for p in attrs.get("perm", range(imp.linear_views[node.input[0]].rank)[::-1])])
        return
    if node.input[0] not in imp.channel_views:
        rank = len(imp.shape(node.input[0])) + 1
        # a gather or a Gemm must follow to complete it; anything else is refused there, naming the Transpose's output
        _linear_view_start(imp, node, [int(p) for p in attrs.get("perm", range(rank)[::-1])])
        return
    source, channel_of = imp.channel_views[node.input[0]]
    rank = channel_of.ndim + 3
    perm = list(attrs.get("perm", range(rank)[::-1]))
    if sorted(perm) != list(range(rank)) or perm[0] != 0 or perm[-2:] != [rank - 2, rank - 1]:
        raise _Unsupported(f"perm {perm} moves the batch or the spatial axes; only the split channel axes may move")
    imp.channel_views[node.output[0]] = (source, channel_of.transpose([p - 1 for p in perm[1:-2]]))


def _flatten(imp: Importer, node, attrs):
    """axis=1, or any axis whose leading per-sample axes all have size 1 (the same result); of a transposed feature
    map (channels last) ahead of a Gemm, folded into its weights."""
    if node.input[0] in imp.linear_views:
        if int(attrs.get("axis", 1)) != 1:
            raise _Unsupported("flattens a transposed feature map from an axis other than 1")
        _reshape_linear_view(imp, node, (imp.linear_views[node.input[0]].size,))
        return
    source = imp.shape(node.input[0])
    axis = int(attrs.get("axis", 1)) % (len(source) + 1)
    if axis == 0 or any(d != 1 for d in source[: axis - 1]):
        raise _Unsupported(f"Flatten with axis {attrs.get('axis', 1)} of a (batch, {', '.join(map(str, source))}) tensor "
                           "would mix the batch into features; flatten from axis 1")
    _reshape_to(imp, node, (int(np.prod(source)),))


def _reshape(imp: Importer, node, attrs):
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
            raise _Unsupported(f"reshapes a gathered feature map of {size} values per sample to {tuple(per_sample)}")
        _reshape_linear_view(imp, node, tuple(per_sample))
        return
    source = imp.shape(node.input[0])
    per_sample = [source[i - 1] if d == 0 and 0 < i <= len(source) else d for i, d in enumerate(target)][1:]
    if per_sample.count(-1) == 1:
        known = int(np.prod([d for d in per_sample if d != -1]))
        per_sample[per_sample.index(-1)] = int(np.prod(source)) // max(known, 1)
    _reshape_to(imp, node, tuple(per_sample))


def _squeeze_like(imp: Importer, node, attrs):
    """Axes of size 1 after the batch dropped or added: a flatten, a no-op or a reshape (e.g. (C,) to (C, 1, 1)
    before a classifier written as a 1×1 conv, and back)."""
    source = imp.shape(node.input[0])
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = imp.const_ints(node, 1)
    rank = len(source) + 1 + (len(axes or ()) if node.op_type == "Unsqueeze" else 0)
    if any(not -rank <= int(a) < rank for a in axes or ()):
        raise _Unsupported(f"axes {list(axes)} are out of range for {rank} axes")
    if node.op_type == "Squeeze":
        drop = {int(a) % rank for a in axes} if axes else {i + 1 for i, d in enumerate(source) if d == 1}
        if 0 in drop or any(source[a - 1] != 1 for a in drop):
            raise _Unsupported(f"drops axes {sorted(drop)} of a (batch, {', '.join(map(str, source))}) tensor; only "
                               "axes of size 1 after the batch can be dropped")
        target = tuple(d for i, d in enumerate(source) if i + 1 not in drop)
    else:
        added = sorted(int(a) % rank for a in axes)
        if 0 in added or len(set(added)) != len(added):
            raise _Unsupported(f"adds axes {added}; snnc keeps the batch as the first axis")
        target = list(source)
        for a in added:
            target.insert(a - 1, 1)
        target = tuple(target)
    _reshape_to(imp, node, target)


def _concat(imp: Importer, node, attrs):
    """Along channels (axis 1)."""
    rank = len(imp.shape(node.input[0]))
    if attrs.get("axis") not in (1, 1 - (rank + 1)):
        raise _Unsupported("only concatenation along channels (axis 1) is supported")
    imp.add(node, Concat(), list(node.input))


def _sum(imp: Importer, node, attrs):
    """Of tensors of one shape: a residual merge (Mean: then scaled by 1/n per channel)."""
    if len(node.input) == 1:
        imp.alias(node, node.input[0])
        return
    imp.add(node, Add(), list(node.input))
    if node.op_type == "Mean":
        channels = imp.graph_shape(node.output[0])[0]
        scale = np.full(channels, 1.0 / len(node.input), np.float32)
        imp.add(node, ChannelAffine(scale, np.zeros(channels, np.float32)), [node.output[0]], suffix=".mean")


def _binary(imp: Importer, node, attrs):
    """Add of two tensors is a residual merge; with a scalar constant it is part of an activation; with a per-channel
    constant it is folded into the layer before; of positions gathered ahead of a Gemm (AdaptiveAvgPool2d's bins), a
    sum of two or a scaling, folded into the Gemm's weights."""
    a, b = node.input
    if a in imp.linear_views or b in imp.linear_views:
        _binary_linear_view(imp, node)
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
            raise _Unsupported(f"a constant of shape {value.shape} that does not broadcast to the data's {shape}")
    per_channel = _per_channel(value, stored)
    if per_channel is None:
        raise _Unsupported(f"a constant of shape {value.shape} that is not per channel for data of shape {shape}")
    ones, zeros = np.ones_like(per_channel), np.zeros_like(per_channel)
    scale, shift = {
        ("Add", 1): (ones, per_channel), ("Add", 0): (ones, per_channel),
        ("Sub", 1): (ones, -per_channel), ("Sub", 0): (-ones, per_channel),
        ("Mul", 1): (per_channel, zeros), ("Mul", 0): (per_channel, zeros),
        ("Div", 1): (1.0 / per_channel, zeros),
    }.get((node.op_type, const_index), (None, None))
    if scale is None:
        raise _Unsupported(f"{node.op_type} with a per-channel constant on this side is not supported")
    imp.add(node, ChannelAffine(scale.astype(np.float32), shift.astype(np.float32)), [tensor])


def _per_channel(value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """The per-channel vector of a constant broadcast over (C, ...) data, or None if it varies otherwise."""
    channels = shape[0]
    squeezed = value.reshape(value.shape[1:]) if value.ndim == len(shape) + 1 and value.shape[0] == 1 else value
    if squeezed.ndim > len(shape):
        return None
    full = np.broadcast_to(squeezed, shape) if _broadcasts(squeezed.shape, shape) else None
    if full is None:
        return None
    vector = full.reshape(channels, -1)[:, 0]
    return vector if np.array_equal(full, np.broadcast_to(vector.reshape((channels,) + (1,) * (len(shape) - 1)), shape)) else None


def _broadcasts(small: tuple, big: tuple) -> bool:
    return all(s in (1, b) for s, b in zip(small[::-1], big[::-1]))


def _scalar_unary(imp: Importer, node, attrs):
    """Part of an activation: runs of elementwise ops are recognised as ReLU, clip(0, λ) or QCFS(λ, L)."""
    operands = [None]
    omitted = {1: -math.inf, 2: math.inf} if node.op_type == "Clip" else {}  # an omitted Clip bound does not clip
    for i in range(1, len(node.input)):
        operands.append(_scalar(imp.const(node, i), i) if node.input[i] else omitted.get(i))
    if node.op_type in ("Max", "Min") and (len(node.input) != 2 or operands[1] is None):
        raise _Unsupported(f"{node.op_type} must have exactly one tensor and one scalar constant")
    imp.add(node, ScalarOp(node.op_type, tuple(operands), attrs), [node.input[0]])


def _scalar(value: np.ndarray, index: int) -> float:
    if value.size != 1:
        raise _Unsupported(f"input {index} has shape {value.shape}; snnc needs a scalar constant here")
    return float(value.reshape(()))


def _identity(reason: str):
    def convert(imp: Importer, node, attrs):
        imp.add(node, Identity(reason), [node.input[0]])

    convert.__doc__ = f"Removed ({reason})."
    return convert


def _softmax(imp: Importer, node, attrs):
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
        raise _Unsupported(f"normalises axes {axes} of a (batch, {', '.join(map(str, shape))}) tensor, not all values of "
                           "a sample together, so dropping it would change the argmax; end the model before it")
    imp.add(node, Identity(f"{node.op_type} at the output"), [node.input[0]])


def _cast(imp: Importer, node, attrs):
    """Float to float casts only (no-op)."""
    if attrs.get("to") not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
        raise _Unsupported("casting the data to a non-float type is not supported")
    imp.alias(node, node.input[0])


def _shape(imp: Importer, node, attrs):
    """Only as input to the shape arithmetic of a Reshape."""
    # Shape arithmetic only feeds Reshape; a batch of 1 stands for the (symbolic) batch, which Reshape skips.
    shape = np.array((1, *imp.shape(node.input[0])), dtype=np.int64)
    imp.consts[node.output[0]] = shape[attrs.get("start", 0): attrs.get("end", None)]


SUPPORTED_OPS = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "BatchNormalization": _batchnorm,
    "AveragePool": _averagepool,
    "GlobalAveragePool": _global_average,
    "ReduceMean": _reduce,
    "ReduceSum": _reduce,
    "MaxPool": _maxpool,
    "LRN": _lrn,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "GatherND": _gather_nd,
    "Gather": _gather,
    "Where": _where,
    "Squeeze": _squeeze_like,
    "Unsqueeze": _squeeze_like,
    "Concat": _concat,
    "Add": _binary,
    "Sum": _sum,
    "Mean": _sum,
    "Sub": _binary,
    "Mul": _binary,
    "Div": _binary,
    "Relu": _scalar_unary,
    "Clip": _scalar_unary,
    "Floor": _scalar_unary,
    "Ceil": _scalar_unary,
    "Round": _scalar_unary,
    "Neg": _scalar_unary,
    "Max": _scalar_unary,
    "Min": _scalar_unary,
    "Dropout": _identity("Dropout (inference)"),
    "Identity": _identity("Identity"),
    "Softmax": _softmax,
    "LogSoftmax": _softmax,
    "Cast": _cast,
    "Shape": _shape,
}


def import_onnx(
    path: str | Path, maxpool: str = "spiking", model: onnx.ModelProto | None = None, drop_lrn: bool = False
) -> AnnGraph:
    """Convert an ONNX model (loaded from `path` unless given) node by node into the raw ANN graph."""
    if maxpool not in MAXPOOL_MODES:
        raise SnncError(f"--maxpool must be one of {', '.join(MAXPOOL_MODES)} (got '{maxpool}')")
    model = load_onnx(path) if model is None else model
    return Importer(model, str(path), maxpool, drop_lrn).run(model)
