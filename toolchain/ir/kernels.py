"""The linear operations of NIR graphs as torch kernels, shared by everything that computes them: the reference
runtime, ANN evaluation and calibration, the Lava target's host part and the cost counting.

Image tensors are kept channels-last: oneDNN's convolutions and pooling run 1.5–4× faster on it than on NCHW here.
"""

from __future__ import annotations

import nir
import numpy as np
import torch
import torch.nn.functional as F

from toolchain.errors import SnncError
from toolchain.ir.metadata import NodeMeta
from toolchain.ir.shapes import pair, window_pads

LINEAR_NODES = (nir.Affine, nir.Linear, nir.Conv2d, nir.AvgPool2d, nir.SumPool2d, nir.Scale, nir.Flatten)
WEIGHTED_NODES = (nir.Affine, nir.Linear, nir.Conv2d)


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """An image batch or conv weight (N, C, H, W) in channels-last layout; other tensors as they are.

    With one channel both layouts are the same memory, and torch keeps NCHW strides; a convolution given such a
    weight returns NCHW. Stride 1 on C marks it channels-last, so the convolution returns channels-last directly
    (copying conv1's output of fashion_vgg_qcfs8 cost more than the convolution).
    """
    if t.ndim != 4:
        return t
    t = t.contiguous(memory_format=torch.channels_last)
    return t.as_strided(t.shape, (t.stride(0), 1, *t.stride()[2:])) if t.shape[1] == 1 else t


def as_tensor(array, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A writable torch copy of an array in `dtype`."""
    return torch.from_numpy(np.array(array, np.float64 if dtype == torch.float64 else np.float32))


def linear_parameters(node: nir.NIRNode, dtype: torch.dtype = torch.float32) -> dict:
    """A linear node's arrays as tensors, converted once: weights carry their 2^weight_exp (Loihi precision), and
    `round_output` marks nodes computed on the host whose output Loihi receives as integer currents."""
    meta = NodeMeta.of(node)
    gain = 2.0 ** meta.weight_exp
    rounded = {"round_output": meta.host}
    if isinstance(node, (nir.Affine, nir.Linear)):
        bias = as_tensor(node.bias, dtype) if isinstance(node, nir.Affine) else None
        return {"weight": as_tensor(np.asarray(node.weight) * gain, dtype), "bias": bias, **rounded}
    if isinstance(node, nir.Conv2d):
        return {"weight": channels_last(as_tensor(np.asarray(node.weight) * gain, dtype)), "bias": as_tensor(node.bias, dtype), **rounded}
    if isinstance(node, nir.Scale):
        return {"scale": as_tensor(np.asarray(node.scale) * gain, dtype), **rounded}
    return {}


def _padded_for_window(node, x: torch.Tensor, value: float) -> tuple[torch.Tensor, tuple[int, int]]:
    """x and the symmetric padding torch's pooling takes: asymmetric `window_pads` are applied here with `value`."""
    top, left, bottom, right = window_pads(node)
    if (top, left) == (bottom, right):
        return x, (top, left)
    return F.pad(x, (left, right, top, bottom), value=value), (0, 0)


def max_pool(node, x: torch.Tensor) -> torch.Tensor:
    """The window maximum of a batch x (B, C, H, W) for a node with kernel_size, stride and padding (padding −∞,
    also when asymmetric: `window_pads`)."""
    x, padding = _padded_for_window(node, x, -torch.inf)
    return channels_last(F.max_pool2d(x, pair(node.kernel_size), pair(node.stride), padding))


def apply_linear(node: nir.NIRNode, params: dict, x: torch.Tensor) -> torch.Tensor:
    """The node's output for a batch x (B, ...) given its `linear_parameters`."""
    if isinstance(node, (nir.Affine, nir.Linear)):
        return F.linear(x, params["weight"], params["bias"])
    if isinstance(node, nir.Conv2d):
        return channels_last(F.conv2d(x, params["weight"], params["bias"], tuple(node.stride), tuple(node.padding),
                                      tuple(node.dilation), int(node.groups)))
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        kernel, stride = pair(node.kernel_size), pair(node.stride)
        x, padding = _padded_for_window(node, x, 0.0)  # asymmetric only on a max pooling counted as a sum (costs)
        pooled = F.avg_pool2d(x, kernel, stride, padding, count_include_pad=True)
        return pooled * (kernel[0] * kernel[1]) if isinstance(node, nir.SumPool2d) else pooled
    if isinstance(node, nir.Scale):
        return x * params["scale"]
    if isinstance(node, nir.Flatten):
        per_sample = np.asarray(node.input_type["input"]).reshape(-1)
        start = node.start_dim % len(per_sample) + 1
        end = node.end_dim % len(per_sample) + 1
        return x.flatten(start, end)
    raise SnncError(f"NIR node type {type(node).__name__} is not a linear operation snnc runs")
