"""Pass: correct each spiking layer's mean output towards the ANN's, layer by layer, on calibration data.

A plain-ReLU network converted with thresholds from activation percentiles fires too little at small T: the
residual potential at the end of the window, the v_init offset and the clipped tail of every layer add up
(the conversion error of Li et al., "A Free Lunch From ANN: Towards Efficient, Accurate Spiking Neural Networks
Calibration", ICML 2021). Their bias correction, training-free and per T:

    for each spiking layer l in graph order, on N calibration samples:
        e_c = mean_ANN,c − mean_SNN,c        per channel c: the clipped ANN activation clip(a, 0, λ) against the SNN's
                                             mean output Σ_t n[t]·θ_u / T, averaged over samples and positions
        b_c ← b_c + e_c                      in the bias of the weighted node that feeds the layer

The SNN is run again after every layer, so each correction sees the corrected layers before it. A layer fed by
anything else than one Affine or Conv2d (a pool, a residual sum) is left as it is. The SNN's means come from the
`measure` the pipeline hands in (a run of the reference runtime); the pass itself only edits the graph.
"""

from __future__ import annotations

import copy
from typing import Callable

import nir
import numpy as np
import torch

from toolchain.graph import Activation, AnnGraph
from toolchain.ir.evaluate import node_values
from toolchain.ir.metadata import NodeMeta
from toolchain.ir.order import topological_order
from toolchain.ir.verify import verify_nir
from toolchain.passes.calibrate_distribution import reference_activation

BATCH = 64

# measure(graph) → {IF node name: the per-neuron mean output of the layer (value units, shape of the layer)}
Measure = Callable[[nir.NIRGraph], dict[str, np.ndarray]]


def per_channel_mean(values: np.ndarray) -> np.ndarray:
    """(C,) means over the positions of a (C, ...) array; a flat layer's neurons are its channels."""
    return values.reshape(values.shape[0], -1).mean(1) if values.ndim > 1 else values


def ann_activation_means(graph: AnnGraph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Per ONNX activation node, the per-channel mean over x of the clipped activation clip(a, 0, λ)."""
    activations = [n for n in graph.nodes.values() if isinstance(n.op, Activation)]
    sums = {n.onnx_node: 0.0 for n in activations}
    for start in range(0, len(x), BATCH):
        values = node_values(graph, x[start: start + BATCH], reference_activation)
        for node in activations:
            value = values[node.name].double()
            sums[node.onnx_node] = sums[node.onnx_node] + value.transpose(0, 1).reshape(value.shape[1], -1).sum(1)
    positions = {n.onnx_node: int(np.prod(n.shape[1:])) if len(n.shape) > 1 else 1 for n in activations}
    return {k: (v / (len(x) * positions[k])).numpy() if isinstance(v, torch.Tensor) else v for k, v in sums.items()}


def calibrate_rates(graph: nir.NIRGraph, ann_means: dict[str, np.ndarray], measure: Measure) -> nir.NIRGraph:
    """The graph with the bias of every correctable spiking layer's input shifted by e_c (module docstring).
    ann_means: per ONNX activation node, the per-channel mean of the clipped ANN activation."""
    graph = copy.deepcopy(graph)
    order, preds = topological_order(graph)
    for name in order:
        node = graph.nodes[name]
        if not isinstance(node, nir.IF):
            continue
        target = ann_means.get(NodeMeta.of(node).onnx_node)
        source = preds[name][0] if len(preds[name]) == 1 else None
        if target is None or source is None or not isinstance(graph.nodes[source], (nir.Affine, nir.Conv2d)):
            continue
        error = np.asarray(target, np.float64) - per_channel_mean(measure(graph)[name])
        weighted = graph.nodes[source]
        weighted.bias = (np.asarray(weighted.bias, np.float64) + error).astype(np.float32)
    return verify_nir(graph)
