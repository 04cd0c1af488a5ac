"""Small ONNX models built node by node, for import tests against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def model(nodes, input_shape, output_shape, initializers=None, opset=17, path=None) -> onnx.ModelProto:
    """A one-input one-output model with a symbolic batch; `initializers` maps names to arrays."""
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()]
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *input_shape])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None if output_shape is None else ["batch", *output_shape])],
        inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8
    if output_shape is None:  # let shape inference write the output's shape
        del proto.graph.output[:]
        proto.graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, None))
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
        shape = next(v for v in inferred.graph.value_info if v.name == "y") if any(v.name == "y" for v in inferred.graph.value_info) else inferred.graph.output[0]
        del proto.graph.output[:]
        proto.graph.output.append(shape)
    if path is not None:
        onnx.save(proto, str(path))
    return proto


def rand(*shape, seed=0, low=-1.0, high=1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)
