"""The canonical ANN graph evaluated with the shared linear kernels: the import check against onnxruntime, and the
networks that calibration compares."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from toolchain.graph import LINEAR_OPS, Activation, Add, AnnGraph, Concat, MaxPool, Node
from toolchain.ir.kernels import apply_linear, linear_parameters, max_pool
from toolchain.neurons import qcfs

ActivationFunction = Callable[[Node, torch.Tensor], torch.Tensor]


def per_channel(value, x: torch.Tensor) -> torch.Tensor:
    """A scalar or per-channel value shaped to broadcast over a batch x (B, C, ...)."""
    value = torch.as_tensor(np.asarray(value, np.float32))
    return value.reshape((-1,) + (1,) * (x.ndim - 2)) if value.ndim else value


def apply_activation(node: Node, x: torch.Tensor) -> torch.Tensor:
    """The activation as the graph defines it: relu, clip(0, λ), or QCFS (λ/L or amplitude/L per level)."""
    op: Activation = node.op
    if op.kind == "relu" and op.threshold is None:
        return torch.relu(x)
    threshold = per_channel(op.threshold, x)
    if op.kind == "qcfs":
        return qcfs(x, threshold, op.levels, None if op.amplitude is None else per_channel(op.amplitude, x))
    return torch.minimum(torch.relu(x), threshold)


def node_values(graph: AnnGraph, x: np.ndarray, activation: ActivationFunction = apply_activation,
                until: str | None = None) -> dict[str, torch.Tensor]:
    """Every node's output for a batch x (N, ...), with `activation` computing the Activation nodes; with
    `until`, the nodes up to and including that one."""
    values = {graph.input_name: torch.from_numpy(np.array(x, np.float32))}
    with torch.inference_mode():
        for node in graph.nodes.values():
            inputs = [values[i] for i in node.inputs]
            if isinstance(node.op, Activation):
                values[node.name] = activation(node, inputs[0])
            elif isinstance(node.op, Add):
                values[node.name] = sum(inputs)
            elif isinstance(node.op, Concat):
                values[node.name] = torch.cat(inputs, dim=1)
            elif isinstance(node.op, MaxPool):
                values[node.name] = max_pool(node.op, inputs[0])
            elif isinstance(node.op, LINEAR_OPS):
                values[node.name] = apply_linear(node.op, linear_parameters(node.op), inputs[0])
            else:
                raise TypeError(f"node {node.name} has non-canonical op {type(node.op).__name__}")
            if node.name == until:
                break
    return values


def evaluate_ann(graph: AnnGraph, x: np.ndarray) -> np.ndarray:
    """The graph's output for a batch x (N, ...): float32, as the canonical graph defines it."""
    return node_values(graph, x)[graph.output].numpy()
