"""Evaluate a canonical ANN graph with the reference runtime's kernels (the import check against onnxruntime)."""

from __future__ import annotations

import numpy as np
import torch

from targets.reference.runtime import ReferenceRuntime
from toolchain.graph import Activation, Add, AnnGraph, Concat, LINEAR_OPS


def _activation(op: Activation, x: torch.Tensor) -> torch.Tensor:
    threshold = torch.as_tensor(np.asarray(op.threshold if op.threshold is not None else np.inf, np.float32))
    if threshold.ndim:
        threshold = threshold.reshape((-1,) + (1,) * (x.ndim - 2))
    if op.kind == "relu" and op.threshold is None:
        return torch.relu(x)
    if op.kind == "qcfs":
        return threshold / op.levels * torch.clamp(torch.floor(x * op.levels / threshold + 0.5), 0, op.levels)
    return torch.minimum(torch.relu(x), threshold)


def evaluate_ann(graph: AnnGraph, x: np.ndarray) -> np.ndarray:
    """The graph's output for a batch x (N, ...): float32, as the canonical graph defines it."""
    values = {graph.input_name: torch.from_numpy(np.array(x, np.float32))}
    with torch.inference_mode():
        for node in graph.nodes.values():
            inputs = [values[i] for i in node.inputs]
            if isinstance(node.op, Activation):
                values[node.name] = _activation(node.op, inputs[0])
            elif isinstance(node.op, Add):
                values[node.name] = sum(inputs)
            elif isinstance(node.op, Concat):
                values[node.name] = torch.cat(inputs, dim=1)
            elif isinstance(node.op, LINEAR_OPS):
                params = ReferenceRuntime._tensors_of(node.op)
                values[node.name] = ReferenceRuntime._linear(node.op, params, inputs[0])
            else:
                raise TypeError(f"node {node.name} has non-canonical op {type(node.op).__name__}")
    return values[graph.output].numpy()
