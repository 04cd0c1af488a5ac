"""Loading an ONNX file safely: parse, refuse what cannot be read, check, infer shapes."""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from toolchain.errors import SnncError

OPSETS = range(11, 22)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Read tensors stored beside the model, refusing any location outside the model's folder."""
    folder = path.resolve().parent
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = external_data_helper.ExternalDataInfo(tensor)
        target = (folder / info.location).resolve()
        if folder not in target.parents:
            raise SnncError(
                f"{path}: tensor '{tensor.name}' points to external data '{info.location}' outside the model's "
                "folder; snnc reads external data only from beside the model"
            )
        if not target.is_file():
            raise SnncError(f"{path}: tensor '{tensor.name}' needs external data file '{info.location}', which is missing")
    external_data_helper.load_external_data_for_model(model, str(folder))


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Parse, check and shape-infer an ONNX model, or raise SnncError with one line saying what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise SnncError(f"{path}: no such file; pass the path of an .onnx model")
    data = path.read_bytes()
    if not data:
        raise SnncError(f"{path}: the file is empty; export the model again")
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as err:
        raise SnncError(f"{path}: not an ONNX model ({_first_line(err)}); pass a .onnx file written by an ONNX exporter")
    if not model.HasField("graph") or not model.graph.node:
        raise SnncError(f"{path}: not an ONNX model (no graph nodes); pass a .onnx file written by an ONNX exporter")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset not in OPSETS:
        raise SnncError(
            f"{path}: ONNX opset {opset} is not supported (snnc reads opsets {OPSETS.start}-{OPSETS.stop - 1}); "
            "re-export with opset_version in that range"
        )
    _load_external_data(model, path)
    try:
        onnx.checker.check_model(model)
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, ValueError, RuntimeError) as err:
        raise SnncError(f"{path}: invalid ONNX model: {_first_line(err)}; re-export it or check it with onnx.checker")
