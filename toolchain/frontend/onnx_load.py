"""Loading an ONNX file safely: parse, refuse what cannot be read, check, infer shapes.

Nothing is allocated from a size the file merely declares: every tensor's declared size is checked against
MAX_TENSOR_BYTES before its data is read or computed, and external data is read only from beside the model.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from toolchain.errors import MAX_TENSOR_BYTES, SnncError, error_summary

OPSETS = range(7, 22)
# Older graphs are upgraded to this opset with onnx.version_converter before anything else reads them.
UPGRADE_TO = 11
# The model metadata key under which load_onnx records an upgrade, so the importer can say so in the report.
UPGRADED_FROM_KEY = "snnc.upgraded_from_opset"
# Shape arithmetic (Shape → Gather → Concat → Reshape) handles one value per dimension; ONNX's data
# propagation turns every value of an integer tensor into a dimension proto, so a Range of 10^8 values
# costs gigabytes and minutes. It runs only when no integer tensor is larger than this.
SHAPE_TENSOR_MAX_VALUES = 64
_INTEGER_TYPES = {
    t for t in onnx.TensorProto.DataType.values()
    if t != onnx.TensorProto.UNDEFINED and onnx.helper.tensor_dtype_to_np_dtype(t).kind in "iu"
}


def _non_utf8_field(message) -> str | None:
    """The first text field whose bytes are not UTF-8 (protobuf then hands them over as bytes, not str)."""
    for field, value in message.ListFields():
        values = value if field.is_repeated else [value]
        if field.type == field.TYPE_STRING and any(isinstance(v, bytes) for v in values):
            return f"{message.DESCRIPTOR.name}.{field.name}"
        if field.type == field.TYPE_MESSAGE:
            found = next(filter(None, map(_non_utf8_field, values)), None)
            if found:
                return found
    return None


def _itemsize(elem_type: int) -> int:
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).itemsize
    except (KeyError, ValueError, TypeError):  # an undefined type: onnx.checker names it later
        return 1


def _declared_shapes(model: onnx.ModelProto):
    """(kind, name, dims, element type) of every tensor the model declares: constants, inputs, outputs, value_info."""
    for tensor in external_data_helper._get_all_tensors(model):
        yield "tensor", tensor.name, list(tensor.dims), tensor.data_type
    graph = model.graph
    for kind, infos in (("input", graph.input), ("output", graph.output), ("tensor", graph.value_info)):
        for info in infos:
            tensor_type = info.type.tensor_type
            # A symbolic or unknown dimension counts as 1: the batch, which snnc streams.
            yield kind, info.name, [d.dim_value if d.HasField("dim_value") else 1 for d in tensor_type.shape.dim], tensor_type.elem_type


def _refuse_huge_tensors(model: onnx.ModelProto, path: Path) -> None:
    for kind, name, dims, elem_type in _declared_shapes(model):
        if any(d < 0 for d in dims):
            raise SnncError(f"{path}: {kind} '{name}' declares a negative size in its shape {dims}; re-export the model")
        size = math.prod(dims) * _itemsize(elem_type)
        if size > MAX_TENSOR_BYTES:
            raise SnncError(
                f"{path}: {kind} '{name}' declares shape {dims} ({size / 2**30:.3g} GiB); snnc refuses tensors over "
                f"{MAX_TENSOR_BYTES // 2**30} GiB (per sample for data): check the shapes declared in the model"
            )


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Read tensors stored beside the model, refusing any location outside the model's folder."""
    folder = path.resolve().parent
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        where = f"{path}: tensor '{tensor.name}'"
        try:
            with warnings.catch_warnings():  # ONNX ignores unknown keys, as snnc does, but would warn on stderr
                warnings.simplefilter("ignore")
                info = external_data_helper.ExternalDataInfo(tensor)
            target = (folder / info.location).resolve()
        except (ValueError, OSError) as err:  # offset/length not integers, a NUL in the location
            raise SnncError(f"{where} has a malformed external data entry ({error_summary(err)}); save the model again")
        if folder not in target.parents:
            raise SnncError(
                f"{where} points to external data '{info.location}' outside the model's folder; snnc reads external "
                "data only from beside the model: move the data file next to it and save the model again"
            )
        if not target.is_file():
            raise SnncError(f"{where} needs external data file '{info.location}', which is missing: copy it next to the model")
        expected = math.prod(tensor.dims) * _itemsize(tensor.data_type)
        stored = info.length if info.length is not None else target.stat().st_size - (info.offset or 0)
        if stored != expected:
            raise SnncError(
                f"{where} declares shape {list(tensor.dims)} ({expected} bytes) but its external data holds {stored} "
                "bytes; save the model and its data again"
            )
    try:
        external_data_helper.load_external_data_for_model(model, str(folder))
    except (ValueError, OSError, onnx.checker.ValidationError) as err:
        raise SnncError(f"{path}: cannot read its external data ({error_summary(err)}); save the model and its data again")


def _infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Strict shape inference, propagating values only through shape arithmetic (see SHAPE_TENSOR_MAX_VALUES)."""
    plain = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    integer_sizes = [
        math.prod(d.dim_value if d.HasField("dim_value") else math.inf for d in info.type.tensor_type.shape.dim)
        for info in [*plain.graph.value_info, *plain.graph.output]
        if info.type.tensor_type.elem_type in _INTEGER_TYPES
    ]
    if all(size <= SHAPE_TENSOR_MAX_VALUES for size in integer_sizes):
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    return plain


def _upgrade(model: onnx.ModelProto, opset: int, path: Path) -> onnx.ModelProto:
    """Rewrite an opset-7..10 graph at UPGRADE_TO, noting the original opset in the model's metadata."""
    try:
        upgraded = onnx.version_converter.convert_version(model, UPGRADE_TO)
    except Exception as err:  # the converter raises RuntimeError, ValueError or its own C++ errors
        raise SnncError(
            f"{path}: cannot upgrade ONNX opset {opset} to {UPGRADE_TO} ({error_summary(err)}); "
            f"re-export the model with opset_version {UPGRADE_TO} or newer"
        )
    upgraded.metadata_props.add(key=UPGRADED_FROM_KEY, value=str(opset))
    return upgraded


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Parse, check and shape-infer an ONNX model, or raise SnncError with one line saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise SnncError(f"{path}: {'not a file' if path.exists() else 'no such file'}; pass the path of an .onnx model")
    data = path.read_bytes()
    if not data:
        raise SnncError(f"{path}: the file is empty; export the model again")
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as err:
        raise SnncError(f"{path}: not an ONNX model ({error_summary(err)}); pass a .onnx file written by an ONNX exporter")
    broken_text = _non_utf8_field(model)
    if broken_text:
        raise SnncError(f"{path}: not an ONNX model (a {broken_text} is not UTF-8 text); pass a .onnx file written by an ONNX exporter")
    if not model.HasField("graph") or not model.graph.node:
        raise SnncError(f"{path}: not an ONNX model (no graph nodes); pass a .onnx file written by an ONNX exporter")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise SnncError(f"{path}: the model imports no opset of the standard ONNX domain; re-export it with opset_version set")
    if opset not in OPSETS:
        raise SnncError(
            f"{path}: ONNX opset {opset} is not supported (snnc reads opsets {OPSETS.start}-{OPSETS.stop - 1}); "
            "re-export with opset_version in that range"
        )
    _refuse_huge_tensors(model, path)
    _load_external_data(model, path)
    if opset < UPGRADE_TO:
        model = _upgrade(model, opset, path)
    try:
        onnx.checker.check_model(model)
        model = _infer_shapes(model)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError, RuntimeError) as err:
        raise SnncError(f"{path}: invalid ONNX model: {error_summary(err)}; re-export it or check it with onnx.checker")
    _refuse_huge_tensors(model, path)  # now with the shapes inference found, before any constant is computed
    return model
