"""The ANN graph: the checked, canonical form the frontend produces and the passes transform.

Linear operations are NIR nodes from the start (`nir.Affine`, `nir.Conv2d`, `nir.AvgPool2d`, `nir.SumPool2d`,
`nir.Scale`, `nir.Flatten`), so the ANN and the SNN share one definition and one kernel per operation.
What NIR has no node for is one of the dataclasses below, each with its equation. Shapes are per sample
(no batch dimension), as in NIR.

`verify` is the executable specification of a graph between passes: every pass ends with it, so a pass that
breaks an invariant fails at that pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import nir
import numpy as np

from toolchain.ir.shapes import output_shape, pool_output_shape
from toolchain.ir.verify import GraphError


@dataclass(eq=False)
class Activation:
    """A rectifying activation the SNN replaces with spiking neurons.

    relu:  y = max(x, 0)                                   threshold λ from calibration
    clip:  y = clip(x, 0, λ)                               threshold λ = the clip bound
    qcfs:  y = (λ/L) · clip(floor(x·L/λ + 1/2), 0, L)      threshold λ, L levels (Bu et al., ICLR 2022)

    `threshold` is a scalar or one value per channel (axis 0 of the per-sample shape); None until
    calibration sets it for relu. `amplitude` (per channel), when set, is the value one spike carries instead
    of the threshold (distribution-aware calibration's θ + φ).
    """

    kind: str
    threshold: Union[float, np.ndarray, None] = None
    levels: Union[int, None] = None
    amplitude: Union[np.ndarray, None] = None


@dataclass(eq=False)
class MaxPool:
    """y[c, i, j] = max of x[c] over the window at (i, j); padding never wins (it is −∞).

    Its spiking form (docs/maxpool.md) keeps this for the counts: after t steps the pool has emitted, per output,
    the largest of its inputs' counts so far, max_w C_w(t), C_w(t) = Σ_{s≤t} x_w[s]."""

    kernel_size: tuple
    stride: tuple
    padding: tuple


@dataclass(eq=False)
class ChannelAffine:
    """y[c] = scale[c] · x[c] + shift[c] over axis 0 of the per-sample shape (BatchNormalization, bias adds).

    Folded into the preceding Conv2d/Affine when it is that node's only consumer.
    """

    scale: np.ndarray
    shift: np.ndarray


@dataclass(eq=False)
class ScalarOp:
    """One elementwise ONNX op whose other operands are scalar constants (Mul, Add, Floor, Clip, Relu, ...).

    `operands` lists, per ONNX input, either the float constant or None for a tensor input. Runs of ScalarOps
    are recognised as one Activation (or an affine map) by the `recognise_activations` pass.
    """

    op_type: str
    operands: tuple
    attributes: dict = field(default_factory=dict)


@dataclass(eq=False)
class Add:
    """y = Σ inputs (residual merge; all inputs have the same shape)."""


@dataclass(eq=False)
class Concat:
    """y = concatenation of the inputs along the channel axis (axis 0 per sample)."""


@dataclass(eq=False)
class Identity:
    """y = x (Dropout at inference, Identity, output Softmax); removed by `remove_identities`."""

    reason: str


LINEAR_OPS = (nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d, nir.Scale, nir.Flatten)
CANONICAL_OPS = LINEAR_OPS + (MaxPool, Activation, Add, Concat)


@dataclass(eq=False)
class Node:
    """One operation: its op, the names of the nodes it reads, its per-sample output shape, and where it came from:
    the ONNX node and output, and `scope`, the module path the exporter recorded for it ('layer1.0.conv1'; a
    second node made from the same ONNX node adds a tail, 'fc.flatten'), empty when the exporter kept none."""

    name: str
    op: object
    inputs: list[str]
    shape: tuple[int, ...]
    onnx_node: str = ""
    onnx_output: str = ""
    scope: str = ""


@dataclass(eq=False)
class AnnGraph:
    """A feed-forward graph with one input and one output; `nodes` is in topological order."""

    source: str
    input_name: str
    input_shape: tuple[int, ...]
    nodes: dict[str, Node]
    output: str
    notes: list[str] = field(default_factory=list)

    def consumers(self, name: str) -> list[str]:
        return [n.name for n in self.nodes.values() if name in n.inputs]

    def shape_of(self, name: str) -> tuple[int, ...]:
        return self.input_shape if name == self.input_name else self.nodes[name].shape

    def replace_input(self, old: str, new: str) -> None:
        """Make every reader of `old` (and the graph output) read `new` instead."""
        for node in self.nodes.values():
            node.inputs = [new if i == old else i for i in node.inputs]
        if self.output == old:
            self.output = new

    def remove(self, name: str) -> None:
        """Drop a single-input node, wiring its readers to its input."""
        node = self.nodes.pop(name)
        self.replace_input(name, node.inputs[0])


def verify(graph: AnnGraph, allowed_ops: tuple = CANONICAL_OPS + (ChannelAffine, ScalarOp, Identity)) -> AnnGraph:
    """Check the graph's invariants; return it unchanged so passes can end with `return verify(graph)`."""
    seen = {graph.input_name}
    for name, node in graph.nodes.items():
        if node.name != name:
            raise GraphError(f"node stored as {name!r} is named {node.name!r}")
        if not isinstance(node.op, allowed_ops):
            raise GraphError(f"node {name!r} has op {type(node.op).__name__}, not allowed at this stage")
        missing = [i for i in node.inputs if i not in seen]
        if missing or not node.inputs:
            raise GraphError(f"node {name!r} reads {missing or 'nothing'}, which is not an earlier node")
        if not all(isinstance(d, int) and d > 0 for d in node.shape):
            raise GraphError(f"node {name!r} has an invalid shape {node.shape}")
        expected = infer_shape(node.op, [graph.shape_of(i) for i in node.inputs])
        if expected is not None and expected != node.shape:
            raise GraphError(f"node {name!r} has shape {node.shape} but its op gives {expected}")
        seen.add(name)
    if graph.output not in seen:
        raise GraphError(f"graph output {graph.output!r} is not a node")
    return graph


def infer_shape(op, input_shapes: list[tuple[int, ...]]) -> tuple[int, ...] | None:
    """The per-sample output shape an op gives for its input shapes (None for ops the frontend still resolves)."""
    first = input_shapes[0]
    if isinstance(op, (*LINEAR_OPS, MaxPool)):
        try:
            return pool_output_shape(op, first) if isinstance(op, MaxPool) else output_shape(op, first)
        except ValueError as err:
            raise GraphError(f"a {type(op).__name__} {err}") from None
    if isinstance(op, (Add, Concat)) and any(s[int(isinstance(op, Concat)):] != first[int(isinstance(op, Concat)):] for s in input_shapes):
        raise GraphError(f"{type(op).__name__} of mismatched shapes {input_shapes}")
    if isinstance(op, Concat):
        return (sum(s[0] for s in input_shapes), *first[1:])
    if isinstance(op, (nir.Scale, Activation, ChannelAffine, ScalarOp, Add, Identity)):
        return first
    return None
