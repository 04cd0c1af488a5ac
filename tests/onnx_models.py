"""Small ONNX models built node by node, for import tests against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import torch
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


def qcfs_chain(source: str, out: str, lam: float, levels: int, tag: str) -> list:
    """The QCFS activation as ONNX nodes: λ/L · clip(floor(x·L/λ + 1/2), 0, L)."""
    return [
        helper.make_node("Mul", [source, f"{tag}_a"], [f"{tag}_1"]),
        helper.make_node("Add", [f"{tag}_1", "half"], [f"{tag}_2"]),
        helper.make_node("Floor", [f"{tag}_2"], [f"{tag}_3"]),
        helper.make_node("Clip", [f"{tag}_3", "zero", f"{tag}_L"], [f"{tag}_4"]),
        helper.make_node("Mul", [f"{tag}_4", f"{tag}_b"], [out]),
    ], {f"{tag}_a": np.float32(levels / lam), f"{tag}_L": np.float32(levels), f"{tag}_b": np.float32(lam / levels)}


def residual_cnn(path, levels: int = 8):
    """conv → QCFS → avgpool → [conv → (+ identity shortcut) → QCFS] → flatten → fc: pooling and a residual add."""
    nodes, inits = [], {"half": np.float32(0.5), "zero": np.float32(0.0)}
    nodes.append(helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]))
    chain, consts = qcfs_chain("c1", "a1", 1.2, levels, "a")
    nodes += chain + [helper.make_node("AveragePool", ["a1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2])]
    inits.update(consts)
    nodes += [helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]), helper.make_node("Add", ["c2", "p1"], ["s"])]
    chain, consts = qcfs_chain("s", "a2", 0.9, levels, "b")
    nodes += chain + [helper.make_node("Flatten", ["a2"], ["f"]), helper.make_node("Gemm", ["f", "wo", "bo"], ["y"], transB=1)]
    inits.update(consts)
    inits.update(w1=rand(4, 1, 3, 3, seed=1), b1=rand(4, seed=2, low=0, high=0.3), w2=rand(4, 4, 3, 3, seed=3) / 2,
                 b2=rand(4, seed=4, low=0, high=0.2), wo=rand(10, 4 * 4 * 4, seed=5), bo=rand(10, seed=6))
    return model(nodes, (1, 8, 8), (10,), inits, path=path)


LEVELS = 4


class Qcfs(torch.nn.Module):
    def __init__(self, lam: float):
        super().__init__()
        self.lam = torch.nn.Parameter(torch.tensor(lam))

    def forward(self, x):
        return torch.clamp(torch.floor(x / self.lam * LEVELS + 0.5) / LEVELS, 0, 1) * self.lam


def qcfs_maxpool_model(tmp_path):
    """conv → QCFS → MaxPool(3, s2, p1, ceil mode: padded asymmetrically) → conv → QCFS → MaxPool(2) → linear, legacy
    exporter at opset 13."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3, padding=1), Qcfs(1.0), torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        torch.nn.Conv2d(6, 8, 3, padding=1), Qcfs(1.5), torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(8 * 2 * 2, 5))
    path = tmp_path / "qcfs_maxpool.onnx"
    torch.onnx.export(net.eval(), (torch.rand(1, 1, 8, 8),), str(path), dynamo=False, opset_version=13,
                      input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    return path
