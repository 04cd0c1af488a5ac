"""ONNX nodes to ANN-graph nodes: the `Importer` walks the ONNX graph and hands each node to the converter for its op
type (`SUPPORTED_OPS`; the converters are in toolchain/frontend/ops/, one module per family of ops).

Each converter turns one ONNX node into one graph node (or a constant, or an alias of its input, or a view of a
node that only the ops after it resolve: a reshape, a channel split, positions gathered for a Gemm). Elementwise
ops with scalar constants become `ScalarOp`s that the `recognise_activations` pass later reads as ReLU, clip
or QCFS; per-channel constants become `ChannelAffine`s that `fold_channel_affine` folds into convolutions.
`SUPPORTED_OPS` is the op-support table that `snnc inspect` and docs/op-support.md are made from.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nir
import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from toolchain.errors import SnncError
from toolchain.frontend.onnx_load import UPGRADED_FROM_KEY, UPGRADE_TO, load_onnx
from toolchain.frontend.ops.base import Unsupported
from toolchain.frontend.ops.elementwise import (
    convert_binary,
    convert_scalar_unary,
    convert_softmax,
    convert_sum,
    identity_converter,
)
from toolchain.frontend.ops.linear_view import LinearView, convert_gather, convert_gather_nd, convert_where
from toolchain.frontend.ops.pooling import (
    convert_averagepool,
    convert_global_average,
    convert_lrn,
    convert_maxpool,
    convert_reduce,
)
from toolchain.frontend.ops.shape import (
    convert_cast,
    convert_concat,
    convert_flatten,
    convert_reshape,
    convert_shape,
    convert_squeeze_like,
    convert_transpose,
)
from toolchain.frontend.ops.weighted import convert_batchnorm, convert_conv, convert_gemm, convert_matmul
from toolchain.graph import Add, AnnGraph, ChannelAffine, GraphError, Identity, Node, ScalarOp, infer_shape, verify

MAXPOOL_MODES = ("spiking", "avg", "error")
# Nonlinearities a spiking rate cannot compute; named as such in the error rather than as merely unsupported, with
# the torch modules exported as the op where its name does not say so
NO_SPIKING_EQUIVALENT = {
    "Sigmoid": "torch's SiLU is exported as Sigmoid then Mul", "Tanh": "the legacy exporter writes Mish with Tanh",
    "Gelu": "", "Erf": "older exporters write GELU with Erf", "HardSigmoid": "", "HardSwish": "", "Elu": "",
    "Selu": "", "Celu": "", "Softplus": "the legacy exporter writes Mish with Softplus", "Mish": "",
    "LeakyRelu": "a spike count is never negative", "PRelu": "a spike count is never negative", "ThresholdedRelu": "",
}
# Graph ops that act on each value alone, so they read a reshaped tensor as its graph node (Importer.reshaped)
ELEMENTWISE_OPS = (ScalarOp, ChannelAffine, Add, Identity, nir.Scale)


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
                raise Unsupported(f"input {index} is missing")
            return np.asarray(default)
        if name not in self.consts:
            raise Unsupported(f"input {index} ('{name}') must be a constant (an initializer)")
        if self.consts[name].dtype.kind not in "biuf":
            raise Unsupported(f"input {index} ('{name}') holds {self.consts[name].dtype} values; snnc needs numbers here")
        return self.consts[name]

    def const_ints(self, node: onnx.NodeProto, index: int) -> list[int]:
        value = self.const(node, index)
        if value.dtype.kind not in "iu":
            raise Unsupported(f"input {index} ('{node.input[index]}') holds {value.dtype} values; ONNX needs int64 here")
        return [int(v) for v in value.reshape(-1)]

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def data(self, tensor: str) -> str:
        """The graph node computing ONNX tensor `tensor`, which must be data (computed from the model input)."""
        if tensor in self.linear_views:
            raise Unsupported(f"input '{tensor}' moves or gathers the positions of a feature map; snnc folds that only "
                              "into a following Gemm or MatMul after a flatten (AdaptiveAvgPool2d before a classifier)")
        if tensor in self.channel_views:
            raise Unsupported(f"input '{tensor}' splits the channels of a feature map; snnc folds such a split only "
                              "as a channel shuffle (Reshape, Transpose of the split axes, Reshape back)")
        if tensor not in self.tensor:
            what = "a constant" if self.is_const(tensor) else "not computed by any node snnc converts"
            raise Unsupported(f"input '{tensor}' is {what}; snnc needs data computed from the model input here")
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
                raise Unsupported(str(err))
        if min(shape, default=1) < 1:
            raise Unsupported(f"gives an empty output of shape {tuple(shape)}; remove it or give its weights a size")
        if not _finite(op):
            raise Unsupported("has NaN or infinite weights; check the trained model (e.g. for a diverged training run)")
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
            raise Unsupported(f"input '{reshaped[0]}' is a tensor reshaped to {self.reshaped[reshaped[0]]} per sample; "
                              "snnc reads such a reshape only in elementwise ops, a MatMul, a Conv on a 1×1 map or a "
                              "reshape; reshape it back or flatten it before this op")
        if len({self.shape(t) for t in inputs}) > 1:
            raise Unsupported(f"broadcasts inputs of per-sample shapes {[self.shape(t) for t in inputs]}; snnc needs "
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
        except Unsupported as err:
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


SUPPORTED_OPS = {
    "Conv": convert_conv,
    "Gemm": convert_gemm,
    "MatMul": convert_matmul,
    "BatchNormalization": convert_batchnorm,
    "AveragePool": convert_averagepool,
    "GlobalAveragePool": convert_global_average,
    "ReduceMean": convert_reduce,
    "ReduceSum": convert_reduce,
    "MaxPool": convert_maxpool,
    "LRN": convert_lrn,
    "Flatten": convert_flatten,
    "Reshape": convert_reshape,
    "Transpose": convert_transpose,
    "GatherND": convert_gather_nd,
    "Gather": convert_gather,
    "Where": convert_where,
    "Squeeze": convert_squeeze_like,
    "Unsqueeze": convert_squeeze_like,
    "Concat": convert_concat,
    "Add": convert_binary,
    "Sum": convert_sum,
    "Mean": convert_sum,
    "Sub": convert_binary,
    "Mul": convert_binary,
    "Div": convert_binary,
    "Relu": convert_scalar_unary,
    "Clip": convert_scalar_unary,
    "Floor": convert_scalar_unary,
    "Ceil": convert_scalar_unary,
    "Round": convert_scalar_unary,
    "Neg": convert_scalar_unary,
    "Max": convert_scalar_unary,
    "Min": convert_scalar_unary,
    "Dropout": identity_converter("Dropout (inference)"),
    "Identity": identity_converter("Identity"),
    "Softmax": convert_softmax,
    "LogSoftmax": convert_softmax,
    "Cast": convert_cast,
    "Shape": convert_shape,
}


def import_onnx(
    path: str | Path, maxpool: str = "spiking", model: onnx.ModelProto | None = None, drop_lrn: bool = False
) -> AnnGraph:
    """Convert an ONNX model (loaded from `path` unless given) node by node into the raw ANN graph."""
    if maxpool not in MAXPOOL_MODES:
        raise SnncError(f"--maxpool must be one of {', '.join(MAXPOOL_MODES)} (got '{maxpool}')")
    model = load_onnx(path) if model is None else model
    return Importer(model, str(path), maxpool, drop_lrn).run(model)
