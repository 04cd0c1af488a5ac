"""Pass: fold per-channel affine maps (BatchNormalization, bias adds, scalings) into the layer before or after them.

y = s ⊙ (W x + b) + t  =  (s ⊙ W) x + (s ⊙ b + t), exactly; the BN bias is then injected every time step, as
the QCFS/GN code bases do with eval-mode BN. A map with no foldable producer (one after an activation) goes into
the weights that read it where that is exact; otherwise it becomes a depthwise 1×1 Conv2d (or a diagonal Affine
for flat features), which NIR expresses directly.
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
        elif not _fold_into_consumer(graph, name, scale, shift):
            node.op = _standalone(node.op, node.shape)
    return verify(graph)


def _fold_into_consumer(graph: AnnGraph, name: str, scale: np.ndarray, shift: np.ndarray) -> bool:
    """Fold a map after an activation (BatchNormalization after ReLU, a scaled or shifted activation) into the
    weights that read it, where that is exact: W' = W·diag(s), b' = b + W·t on an Affine (also through a Flatten of
    the map); a Conv2d takes the scale, and the shift only without padding (padding zeros are not shifted)."""
    consumers = graph.consumers(name)
    if len(consumers) != 1 or graph.output == name:
        return False
    reader = graph.nodes[consumers[0]]
    per_feature = 1
    if isinstance(reader.op, nir.Flatten):
        readers = graph.consumers(reader.name)
        if len(readers) != 1 or graph.output == reader.name:
            return False
        per_feature = int(np.prod(graph.nodes[name].shape[1:]))
        reader = graph.nodes[readers[0]]
    op = reader.op
    if isinstance(op, (nir.Affine, nir.Linear)):
        scale, shift = np.repeat(scale, per_feature), np.repeat(shift, per_feature)
        weight = np.asarray(op.weight, np.float64)
        bias = np.asarray(getattr(op, "bias", np.zeros(weight.shape[0])), np.float64)
        reader.op = nir.Affine(weight=(weight * scale).astype(np.float32), bias=(bias + weight @ shift).astype(np.float32))
    elif isinstance(op, nir.Conv2d) and per_feature == 1 and op.groups == 1 and (not shift.any() or not np.any(op.padding)):
        weight = np.asarray(op.weight, np.float64)
        bias = np.asarray(op.bias, np.float64) + np.einsum("ocij,c->o", weight, shift)
        reader.op = nir.Conv2d(input_shape=op.input_shape, weight=(weight * scale[None, :, None, None]).astype(np.float32),
                               stride=op.stride, padding=op.padding, dilation=op.dilation, groups=1, bias=bias.astype(np.float32))
    else:
        return False
    graph.remove(name)
    return True
