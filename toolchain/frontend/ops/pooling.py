"""Converters for pooling, in 2-D windows with any padding and ceil_mode as padding at the end: AveragePool (a
sum pool and a divisor where the padding does not count), MaxPool (kept, replaced by average pooling or refused, as
`--maxpool` says), GlobalAveragePool and ReduceMean/ReduceSum over the spatial axes (global pooling; of gathered
positions, linear_view.py), and LRN (refused, or removed with `--drop-lrn`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import nir
import numpy as np

from toolchain.frontend.ops.base import Unsupported, symmetric_window, window_pads
from toolchain.frontend.ops.linear_view import reduce_linear_view
from toolchain.graph import MaxPool

if TYPE_CHECKING:
    from toolchain.frontend import Importer


def _pool_window(imp: Importer, node, attrs):
    shape = imp.shape(node.input[0])
    if len(shape) != 3:
        raise Unsupported("only 2-D pooling is supported")
    kernel = tuple(attrs["kernel_shape"])
    strides = tuple(attrs.get("strides", (1, 1)))
    if any(d != 1 for d in attrs.get("dilations", (1, 1))):
        raise Unsupported("dilated pooling is not supported")
    pads = window_pads(attrs, shape[1:], kernel, strides, (1, 1))
    if attrs.get("ceil_mode", 0):  # the last, partial window: as much padding at the end as it overhangs
        spans = [n + b + a - k for n, k, b, a in zip(shape[1:], kernel, pads[:2], pads[2:])]
        overhang = [-span % s for span, s in zip(spans, strides)]
        pads = (*pads[:2], pads[2] + overhang[0], pads[3] + overhang[1])
    return shape, kernel, strides, pads


def _average(imp: Importer, node, shape, kernel, strides, pads, include_pad: bool):
    """Average pooling; with padding that the divisor excludes, a sum pool then a per-position scale. Asymmetric
    padding makes the pool a depthwise convolution with zero taps (`symmetric_window`)."""
    if pads[:2] != pads[2:]:
        taps = np.full((shape[0], 1, *kernel), 1.0 / (kernel[0] * kernel[1]) if include_pad else 1.0, np.float32)
        weight, padding = symmetric_window(taps, pads, (1, 1))
        pool = nir.Conv2d(input_shape=shape[1:], weight=weight, stride=strides, padding=padding, dilation=(1, 1),
                          groups=shape[0], bias=np.zeros(shape[0], np.float32))
    else:
        window = dict(kernel_size=np.array(kernel), stride=np.array(strides), padding=np.array(pads[:2]))
        pool = nir.AvgPool2d(**window) if include_pad or not any(pads) else nir.SumPool2d(**window)
    imp.add(node, pool, [node.input[0]])
    if include_pad or not any(pads):
        return
    counts = _window_sums(np.ones((1, *shape[1:])), kernel, strides, pads)[0]
    out_shape = imp.shape(node.output[0])
    scale = np.ascontiguousarray(np.broadcast_to(1.0 / counts, out_shape), dtype=np.float32)
    imp.add(node, nir.Scale(scale=scale), [node.output[0]], suffix=".divisor")


def _window_sums(x: np.ndarray, kernel, strides, pads) -> np.ndarray:
    """Sum of each pooling window over a (C, H, W) array with zero padding (for divisor maps)."""
    padded = np.pad(x, ((0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    out_h = (padded.shape[1] - kernel[0]) // strides[0] + 1
    out_w = (padded.shape[2] - kernel[1]) // strides[1] + 1
    out = np.zeros((x.shape[0], out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            out[:, i, j] = padded[:, i * strides[0]: i * strides[0] + kernel[0], j * strides[1]: j * strides[1] + kernel[1]].sum((1, 2))
    return out


def convert_averagepool(imp: Importer, node, attrs):
    """2-D; pads (asymmetric: a depthwise convolution); count_include_pad 0 or 1 (0 with pads: sum pool + per-position divisor); ceil_mode as padding at the end (with count_include_pad=1 only when it does not change the size)."""
    shape, kernel, strides, pads = _pool_window(imp, node, attrs)
    include_pad = bool(attrs.get("count_include_pad", 0))
    if include_pad and attrs.get("ceil_mode", 0) and _pool_window(imp, node, {**attrs, "ceil_mode": 0})[3] != pads:
        raise Unsupported("ceil_mode=1 with count_include_pad=1 changes the output size here; export with ceil_mode=False")
    _average(imp, node, shape, kernel, strides, pads, include_pad=include_pad)


def convert_maxpool(imp: Importer, node, attrs):
    """Kept as max pooling (`--maxpool spiking`, the default; docs/maxpool.md), replaced by average pooling with
    `--maxpool avg` (the report says so), or refused with `--maxpool error`; any pads, ceil_mode as padding at the end."""
    if imp.maxpool == "error":
        raise Unsupported("max pooling refused (--maxpool error); pass --maxpool spiking (the default) to keep it, "
                          "or --maxpool avg to replace it with average pooling (accuracy may drop)")
    if len(node.output) > 1 and node.output[1]:
        raise Unsupported("MaxPool indices output is not supported")
    shape, kernel, strides, pads = _pool_window(imp, node, attrs)
    if imp.maxpool == "spiking":
        symmetric = pads[:2] == pads[2:]
        imp.add(node, MaxPool(kernel_size=tuple(kernel), stride=tuple(strides), padding=pads[:2] if symmetric else pads),
                [node.input[0]])
        return
    imp.notes.append(f"MaxPool '{node.name}' replaced by average pooling (--maxpool avg)")
    _average(imp, node, shape, kernel, strides, pads, include_pad=False)


def convert_lrn(imp: Importer, node, attrs):
    """Refused (no spiking equivalent); `--drop-lrn` removes it and says so in the report."""
    if not imp.drop_lrn:
        raise Unsupported(
            "local response normalisation (LRN) has no spiking equivalent; retrain without LRN, "
            "or pass --drop-lrn to remove it (accuracy may drop)"
        )
    imp.notes.append(f"LRN '{node.name}' removed (--drop-lrn)")
    imp.alias(node, node.input[0])


def convert_global_average(imp: Importer, node, attrs):
    """Average over the whole feature map."""
    shape = imp.shape(node.input[0])
    if len(shape) != 3:
        raise Unsupported("only 2-D global pooling is supported")
    hw = np.array(shape[1:])
    imp.add(node, nir.AvgPool2d(kernel_size=hw, stride=hw, padding=np.zeros(2, int)), [node.input[0]])


def convert_reduce(imp: Importer, node, attrs):
    """Over the two spatial axes of a feature map: a global average (ReduceMean) or sum (ReduceSum) pooling, then a
    flatten when keepdims=0 (the default exporter's `AdaptiveAvgPool2d((1, 1))` and `x.mean((2, 3))`)."""
    axes = attrs.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = imp.const_ints(node, 1)
    if not axes and attrs.get("noop_with_empty_axes", 0):
        if node.input[0] in imp.linear_views:
            imp.linear_views[node.output[0]] = imp.linear_views[node.input[0]]
        else:
            imp.alias(node, node.input[0])
        return
    if node.input[0] in imp.linear_views:
        reduce_linear_view(imp, node, axes, bool(attrs.get("keepdims", 1)))
        return
    shape = imp.shape(node.input[0])
    rank = len(shape) + 1
    axes = sorted(int(a) % rank for a in axes) if axes else list(range(rank))
    if len(shape) != 3 or axes != [2, 3]:
        raise Unsupported(f"reduces axes {axes} of a (batch, {', '.join(map(str, shape))}) tensor; snnc converts "
                          "reductions over the two spatial axes of a feature map only (global pooling)")
    hw = np.array(shape[1:])
    window = dict(kernel_size=hw, stride=hw, padding=np.zeros(2, int))
    imp.add(node, nir.AvgPool2d(**window) if node.op_type == "ReduceMean" else nir.SumPool2d(**window), [node.input[0]])
    if not attrs.get("keepdims", 1):
        flat = nir.Flatten(input_type={"input": np.array((shape[0], 1, 1))}, start_dim=0, end_dim=-1)
        imp.add(node, flat, [node.output[0]], suffix=".flatten")
