"""Pass: distribution-aware calibration for `parallel` neurons run with T steps ≠ the QCFS level count L, and for
plain-ReLU networks (Hao et al., ICML 2025; methods.md §6.2).

The SNN with parallel neurons computes, per layer and channel c, the DA-QCFS activation with T levels, a firing
threshold θ'_c and a spike amplitude a_c:

    y = a_c/T · clip(floor((x + ψ_c)·T/θ'_c + 1/2), 0, T)

and calibration chooses them so that the network follows a reference: the trained QCFS(L) for QCFS models,
clip(x, 0, θ_c) for ReLU models (θ_c being the per-channel maxima). Layer by layer, on calibration data, with the
layers before already calibrated, the input shift is the paper's

    ψ_c = mean over samples and positions of (x_ref − x_da)

(the fixed point of the official code's moving average ψ ← 0.99ψ + 0.01·mean(x_ref − x_da)). Then two rules:

- `paper`: θ'_c = θ_c and the amplitude correction φ_c = a_c − θ_c of the official code, the fixed point of
  φ ← 0.99φ + 0.01·mean(y_ref − y_da): φ_c = (mean(y_ref) − θ·m/T) / (1 + m/T), m the mean level count.
- `search` (default, snnc's extension): θ'_c is chosen from θ_c·{0.5, 0.55, …, 1.5} and a_c by least squares,
  together minimising mean((y_da − y_ref)²) per channel. Few levels leave the trained threshold far from the best
  quantiser: on fashion_vgg_qcfs8 (L=8, ANN 92.25 % on 10k) T=2 gives 70.0 % with `paper` and 89.9 % with
  `search`, T=4 91.2 % against 91.8 %; at T=16 both give 92.0 %.

Statistics are per channel for convolutional layers and per layer for flat ones, accumulated as sums over
batches of calibration samples. ψ is folded into the bias of the layer before; θ' and a become the neuron's
threshold and spike amplitude.
"""

from __future__ import annotations

import copy
from collections import defaultdict

import nir
import numpy as np
import torch

from toolchain.ir.evaluate import apply_activation, node_values
from toolchain.errors import SnncError
from toolchain.graph import Activation, Add, AnnGraph, verify
from toolchain.neurons import qcfs
from toolchain.neurons.parallel import CALIBRATIONS

RULES = CALIBRATIONS  # the parallel model declares them (its --parallel-calibration option)
THRESHOLD_SCALES = np.linspace(0.5, 1.5, 21)
CALIBRATION_BATCH = 64  # samples per pass: statistics are sums, so memory does not grow with the sample count


def by_channel(t: torch.Tensor) -> torch.Tensor:
    """(groups, values): one row per channel for (N, C, H, W), one row for a flat layer's (N, F)."""
    return t.transpose(0, 1).reshape(t.shape[1], -1) if t.ndim > 2 else t.reshape(1, -1)


def _channel_mean(t: torch.Tensor) -> torch.Tensor:
    return by_channel(t).double().mean(1)


def _per_neuron(values, shape: tuple[int, ...]) -> torch.Tensor:
    """Per-channel (or per-layer) values broadcast against a batch of the layer's outputs (N, *shape)."""
    flat = torch.from_numpy(np.array(values, np.float64))
    if len(shape) == 1:
        return flat.expand(shape[0]) if flat.numel() == 1 else flat
    return flat.expand(shape[0]).reshape(-1, *([1] * (len(shape) - 1)))


def reference_activation(node, x: torch.Tensor) -> torch.Tensor:
    op: Activation = node.op
    if op.kind == "qcfs":
        return apply_activation(node, x)
    return torch.minimum(torch.relu(x), _per_neuron(op.threshold, x.shape[1:]).to(x.dtype))


def _levels(x: torch.Tensor, threshold: torch.Tensor, timesteps: int) -> torch.Tensor:
    """The QCFS level 0..T of x: QCFS with a step of one."""
    return qcfs(x, threshold, timesteps, amplitude=timesteps)


def _batches(x: np.ndarray):
    for start in range(0, len(x), CALIBRATION_BATCH):
        yield x[start: start + CALIBRATION_BATCH]


def _level_sums(graph: AnnGraph, reference: AnnGraph, x: np.ndarray, node, threshold: torch.Tensor, timesteps: int,
                scales) -> dict:
    """Per-channel sums over the calibration samples, streamed in batches: count, Σy and Σy² of the reference's
    output y, and for each threshold scale s the levels q of the calibrated input: Σq, Σq², Σq·y."""
    sums: dict = defaultdict(int)
    for batch in _batches(x):
        mine = node_values(graph, batch, until=node.inputs[0])[node.inputs[0]].double()
        wanted = node_values(reference, batch, reference_activation, until=node.name)[node.name].double()
        sums["count"] += by_channel(wanted).shape[1]
        sums["y"] += by_channel(wanted).sum(1)
        sums["yy"] += by_channel(wanted ** 2).sum(1)
        for i, scale in enumerate(scales):
            levels = _levels(mine, threshold * scale, timesteps)
            sums["q", i] += by_channel(levels).sum(1)
            sums["qq", i] += by_channel(levels ** 2).sum(1)
            sums["qy", i] += by_channel(levels * wanted).sum(1)
    return sums


def _paper_amplitude(sums: dict, threshold: torch.Tensor, timesteps: int, shape) -> tuple[torch.Tensor, torch.Tensor]:
    mean_levels, mean_wanted = sums[("q", 0)] / sums["count"], sums["y"] / sums["count"]
    per_channel = _channel_mean(threshold.expand(shape).unsqueeze(0))
    amplitude = per_channel + (mean_wanted - per_channel * mean_levels / timesteps) / (1 + mean_levels / timesteps)
    return threshold, _per_neuron(amplitude, shape)


def _searched_threshold(sums: dict, threshold: torch.Tensor, timesteps: int, shape) -> tuple[torch.Tensor, torch.Tensor]:
    per_channel = _channel_mean(threshold.expand(shape).unsqueeze(0))
    best_error = best_scale = best_amplitude = None
    for i, scale in enumerate(THRESHOLD_SCALES):
        level_sq, level_wanted = sums[("qq", i)] / sums["count"], sums[("qy", i)] / sums["count"]
        # least-squares amplitude a = T·E[q·y]/E[q²]; a channel that never fires keeps its threshold
        amplitude = torch.where(level_sq > 0, timesteps * level_wanted / level_sq.clamp_min(1e-30), per_channel * scale)
        error = sums["yy"] / sums["count"] - 2 * amplitude / timesteps * level_wanted + (amplitude / timesteps) ** 2 * level_sq
        if best_error is None:
            best_error, best_scale, best_amplitude = error, torch.full_like(error, scale), amplitude
        else:
            better = error < best_error
            best_error = torch.where(better, error, best_error)
            best_scale = torch.where(better, torch.full_like(error, scale), best_scale)
            best_amplitude = torch.where(better, amplitude, best_amplitude)
    return threshold * _per_neuron(best_scale, shape), _per_neuron(best_amplitude, shape)


def _shift(graph: AnnGraph, reference: AnnGraph, x: np.ndarray, producer: str) -> torch.Tensor:
    """ψ per channel: the mean of (reference − calibrated) input over the calibration samples, streamed in batches."""
    total = count = 0
    for batch in _batches(x):
        mine = node_values(graph, batch, until=producer)[producer]
        wanted = node_values(reference, batch, reference_activation, until=producer)[producer]
        difference = by_channel(wanted.double() - mine.double())
        total, count = total + difference.sum(1), count + difference.shape[1]
    return total / count


def _shift_carrier(graph: AnnGraph, activation):
    """The Conv or Gemm whose bias takes the activation's input shift ψ: the layer the activation follows, or, after a
    residual Add, a weighted branch of that Add (adding ψ to one summand shifts the sum by ψ)."""
    def own(name: str, consumer: str):
        node = graph.nodes.get(name)
        return node if node is not None and isinstance(node.op, (nir.Conv2d, nir.Affine)) and graph.consumers(name) == [consumer] else None

    producer = graph.nodes.get(activation.inputs[0])
    carrier = own(activation.inputs[0], activation.name)
    if carrier is None and producer is not None and isinstance(producer.op, Add) and graph.consumers(producer.name) == [activation.name]:
        carrier = next((c for c in (own(i, producer.name) for i in producer.inputs) if c is not None), None)
    if carrier is None:
        raise SnncError(f"{graph.source}: activation '{activation.onnx_node}' follows neither its own Conv or Gemm nor a "
                        "residual Add with one; distribution-aware calibration folds its shift into such a layer's bias")
    return carrier


def calibrate_distribution(graph: AnnGraph, calibration_x: np.ndarray, timesteps: int, rule: str = "search") -> AnnGraph:
    """Set, for every activation, T levels, the shift ψ (into the preceding bias), the threshold and the amplitude."""
    if rule not in RULES:
        raise SnncError(f"unknown distribution-aware calibration rule '{rule}'; choose one of {', '.join(RULES)}")
    choose, scales = (_searched_threshold, THRESHOLD_SCALES) if rule == "search" else (_paper_amplitude, (1.0,))
    reference = copy.deepcopy(graph)  # the network to follow, unchanged while `graph` is calibrated layer by layer
    for node in [n for n in graph.nodes.values() if isinstance(n.op, Activation)]:
        carrier = _shift_carrier(graph, node)
        shift = _per_neuron(_shift(graph, reference, calibration_x, node.inputs[0]), node.shape)
        carrier.op.bias = (np.asarray(carrier.op.bias, np.float64) + shift.reshape(-1).numpy()).astype(np.float32)
        threshold = _per_neuron(np.broadcast_to(np.asarray(node.op.threshold, np.float64), (node.shape[0],)), node.shape)
        sums = _level_sums(graph, reference, calibration_x, node, threshold, timesteps, scales)
        new_threshold, amplitude = choose(sums, threshold, timesteps, node.shape)
        node.op.kind, node.op.levels = "qcfs", timesteps
        node.op.threshold = new_threshold.reshape(-1).numpy().astype(np.float32)
        node.op.amplitude = amplitude.reshape(-1).numpy().astype(np.float32)
    graph.notes.append(f"distribution-aware calibration ({rule}) for T={timesteps} on {len(calibration_x)} samples "
                       "(shift ψ, threshold and amplitude per channel)")
    return verify(graph)
