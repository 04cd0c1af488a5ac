"""Pass: fold per-channel affine maps (BatchNormalization, bias adds, scalings) into the layer before them.

y = s ⊙ (W x + b) + t  =  (s ⊙ W) x + (s ⊙ b + t), exactly; the BN bias is then injected every time step, as
the QCFS/GN code bases do with eval-mode BN. A map with no foldable producer (a standalone BN) becomes a
depthwise 1×1 Conv2d (or a diagonal Affine for flat features), which NIR expresses directly.
"""

import nir
import numpy as np

from toolchain.graph import AnnGraph, ChannelAffine, verify


def _fold(producer, scale: np.ndarray, shift: np.ndarray):
    if isinstance(producer, nir.Conv2d):
        return nir.Conv2d(
            input_shape=producer.input_shape, weight=producer.weight * scale[:, None, None, None],
            stride=producer.stride, padding=producer.padding, dilation=producer.dilation, groups=producer.groups,
            bias=producer.bias * scale + shift,
        )
    bias = producer.bias if isinstance(producer, nir.Affine) else np.zeros(producer.weight.shape[0], np.float32)
    return nir.Affine(weight=producer.weight * scale[:, None], bias=bias * scale + shift)


def _standalone(op: ChannelAffine, shape: tuple[int, ...]):
    if len(shape) == 1:
        return nir.Affine(weight=np.diag(op.scale).astype(np.float32), bias=op.shift)
    channels = shape[0]
    return nir.Conv2d(
        input_shape=shape[1:], weight=op.scale.reshape(channels, 1, 1, 1), stride=1, padding=0, dilation=1,
        groups=channels, bias=op.shift,
    )


def fold_channel_affine(graph: AnnGraph) -> AnnGraph:
    for name in [n for n, node in graph.nodes.items() if isinstance(node.op, ChannelAffine)]:
        node = graph.nodes[name]
        scale, shift = node.op.scale.astype(np.float64), node.op.shift.astype(np.float64)
        producer = graph.nodes.get(node.inputs[0])
        foldable = producer is not None and isinstance(producer.op, (nir.Conv2d, nir.Affine, nir.Linear))
        if foldable and graph.consumers(producer.name) == [name] and graph.output != producer.name:
            producer.op = _fold(producer.op, scale, shift)
            producer.op.weight = producer.op.weight.astype(np.float32)
            producer.op.bias = np.asarray(producer.op.bias, np.float32)
            producer.onnx_output = node.onnx_output
            graph.remove(name)
        else:
            node.op = _standalone(node.op, node.shape)
    return verify(graph)
