"""Pass: give every activation its threshold λ.

Clip and QCFS activations carry λ already (their clip bound). A plain ReLU gets λ from data, as in
Rueckauer et al. 2017: the p-th percentile (default 99.9) of its positive activations over a calibration
set, per layer or per channel, computed by running the original ONNX model in onnxruntime.
"""

from __future__ import annotations

import numpy as np
import onnx

from toolchain.graph import Activation, AnnGraph, verify
from toolchain.onnx_runtime import run_batches, session

FALLBACK_THRESHOLD = 1.0


def _percentile_of_positive(values: np.ndarray, percentile: float) -> float:
    positive = values[values > 0]
    return float(np.percentile(positive, percentile)) if positive.size else FALLBACK_THRESHOLD


def calibrate_thresholds(
    graph: AnnGraph, model: onnx.ModelProto, calibration_x: np.ndarray, percentile: float = 99.9,
    per_channel: bool = False, threads: int = 2, batch_size: int = 256,
) -> AnnGraph:
    relus = [n for n in graph.nodes.values() if isinstance(n.op, Activation) and n.op.kind == "relu"]
    if not relus:
        return verify(graph)
    sess = session(model, threads, [n.onnx_output for n in relus])
    names = [o.name for o in sess.get_outputs()]
    collected = {n.name: [] for n in relus}
    for outputs in run_batches(sess, calibration_x, batch_size, "calibrating thresholds"):
        by_name = dict(zip(names, outputs))
        for node in relus:
            collected[node.name].append(np.asarray(by_name[node.onnx_output], np.float32))
    for node in relus:
        acts = np.concatenate(collected[node.name])
        if per_channel:
            channels = np.moveaxis(acts, 1, 0).reshape(acts.shape[1], -1)
            node.op.threshold = np.array([_percentile_of_positive(c, percentile) for c in channels], np.float32)
        else:
            node.op.threshold = _percentile_of_positive(acts, percentile)
        dead = np.atleast_1d(node.op.threshold) == FALLBACK_THRESHOLD
        if dead.any() and not (acts > 0).any():
            graph.notes.append(f"ReLU '{node.onnx_node}' was never positive on the calibration data; threshold set to 1")
    return verify(graph)
