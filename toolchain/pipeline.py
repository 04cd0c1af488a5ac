"""The pass order, written once: ONNX → canonical ANN graph → calibrated ANN graph → one NIR network per time step
count and precision. The CLI, the Python API, the benchmarks and the tests all build networks through here.

    frontend     load_onnx → import_onnx                       (toolchain/frontend/)
    canonicalise remove_identities → recognise_activations → fold_channel_affine
    calibrate    calibrate_thresholds (plain ReLU: percentile, or each channel's maximum for training-free models)
                 → calibrate_distribution per T (distribution-aware models whose levels differ from T)
    lower        lower_to_nir → calibrate_rates per T (plain-ReLU networks with causal neurons)
                 → compose_linear_chains → quantize_loihi (Loihi precision) → expand_group_neurons (binary targets)

Every pass ends by verifying its output (`toolchain.graph.verify`, `toolchain.ir.verify.verify_nir`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import nir
import numpy as np
import onnx

from toolchain.data import Dataset, check_labels, fit_to_input, load_dataset
from toolchain.errors import SnncError
from toolchain.frontend import import_onnx, load_onnx
from toolchain.graph import Activation, AnnGraph
from toolchain.options import CompileOptions
from targets import get_target
from toolchain.passes import (
    calibrate_distribution, calibrate_thresholds, canonicalise, compose_linear_chains, expand_group_neurons, lower_to_nir,
    quantize_loihi,
)
from toolchain.passes.calibrate_rates import ann_activation_means, calibrate_rates

DA_CALIBRATION_SAMPLES = 512  # enough for per-channel means; bounds the memory of the calibration passes
RATE_CALIBRATION_SAMPLES = 256  # each layer's correction is one SNN run on these


@dataclass
class Imported:
    """A model as the frontend read it: the ONNX model (for onnxruntime) and its canonical ANN graph."""

    path: Path
    model: onnx.ModelProto
    graph: AnnGraph


def import_model(path, maxpool: str = "spiking", drop_lrn: bool = False) -> Imported:
    """Load, check and import an ONNX file into its canonical ANN graph."""
    path = Path(path)
    model = load_onnx(path)
    return Imported(path, model, canonicalise(import_onnx(path, maxpool, model=model, drop_lrn=drop_lrn)))


def test_split(dataset: Dataset, data: str, input_shape, outputs: int, samples: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The test samples of `dataset` (named `data`) fitted to the model's input, the first `samples` of them, and
    their labels."""
    check_labels(dataset, outputs, data)
    x = fit_to_input(dataset.x_test, input_shape, data)
    y = dataset.y_test
    if samples:
        x, y = x[:samples], y[:samples]
    if not len(x):
        raise SnncError(f"dataset '{data}' has no test samples")
    return x, y


@dataclass
class Inputs:
    """What every compile of one model on one dataset shares: the imported model, the test split and the
    calibration samples (the first `calibration_samples` of the training split)."""

    imported: Imported
    x: np.ndarray
    y: np.ndarray
    calibration: np.ndarray


def load_inputs(model, options: CompileOptions) -> Inputs:
    """Import the model and load its data as `options` ask (model, data, samples, calibration, maxpool, LRN)."""
    imported = import_model(model, options.maxpool, options.drop_lrn)
    graph = imported.graph
    outputs = int(np.prod(graph.shape_of(graph.output)))
    dataset = load_dataset(options.data)
    x, y = test_split(dataset, options.data, graph.input_shape, outputs, options.samples)
    # a copy, so that the rest of the training split is freed with `dataset` (188 MB for Fashion-MNIST)
    calibration = fit_to_input(dataset.x_train[: options.calibration_samples], graph.input_shape, options.data).copy()
    return Inputs(imported, x, y, calibration)


def _has_relu(graph: AnnGraph) -> bool:
    return any(isinstance(n.op, Activation) and n.op.kind == "relu" for n in graph.nodes.values())


def calibrate(imported: Imported, calibration: np.ndarray, options: CompileOptions) -> AnnGraph:
    """Thresholds for every activation. Distribution-aware models on plain-ReLU networks take the training-free
    path: per-channel maxima as thresholds, then distribution-aware calibration for every T (methods.md §6.2)."""
    graph = copy.deepcopy(imported.graph)
    if options.model.distribution_aware and _has_relu(graph):
        graph = calibrate_thresholds(graph, imported.model, calibration, 100.0, True, options.threads)
        graph.notes.append(f"plain-ReLU model with {options.neuron} neurons: per-channel maximum thresholds, "
                           "then distribution-aware calibration")
        return graph
    return calibrate_thresholds(graph, imported.model, calibration, options.percentile, options.per_channel, options.threads)


def calibrated_steps(graph: AnnGraph, options: CompileOptions) -> list[int]:
    """The T's that need their own distribution-aware calibration: every T on the training-free path (a plain-ReLU
    network), else the T's that differ from a layer's QCFS level count."""
    if not options.model.distribution_aware:
        return []
    return [t for t in options.timesteps if _has_relu(graph) or any(
        isinstance(n.op, Activation) and n.op.levels != t for n in graph.nodes.values())]


def rate_calibrated(graph: AnnGraph, options: CompileOptions) -> bool:
    """Bias correction applies to plain-ReLU networks run by causal (soft-reset) neurons, unless turned off."""
    return options.snn_calibration and options.model.family == "soft_reset" and _has_relu(graph)


def _snn_means(x: np.ndarray, timesteps: int, threads: int):
    """The `measure` of calibrate_rates: each layer's per-neuron mean output over x after T steps, on the reference."""
    def measure(graph: nir.NIRGraph) -> dict[str, np.ndarray]:
        result = get_target("reference").run(graph, x, timesteps, {}, threads, counted_steps=(timesteps,))
        return {name: result.spikes_per_neuron[name][0] * np.asarray(node.v_threshold, np.float64) / (timesteps * len(x))
                for name, node in graph.nodes.items() if isinstance(node, nir.IF)}
    return measure


def lower(graph: AnnGraph, options: CompileOptions, adjust=None) -> dict[str, nir.NIRGraph]:
    """The SNN at every precision the targets run, after `adjust` (a pass on the compact float network); graded
    neurons as binary members when the form is expanded."""
    compact = lower_to_nir(graph, options.neuron, options.neuron_options)
    compact = adjust(compact) if adjust else compact
    finish = expand_group_neurons if options.group_form() == "expanded" else (lambda g: g)
    return {precision: finish(quantize_loihi(compose_linear_chains(compact)) if precision == "loihi" else compact)
            for precision in options.precisions()}


def build_networks(graph: AnnGraph, calibration: np.ndarray, options: CompileOptions) -> dict[int, dict[str, nir.NIRGraph]]:
    """networks[T][precision]: one network shared by every T, except where T is part of the calibration."""
    if rate_calibrated(graph, options):
        x = calibration[:RATE_CALIBRATION_SAMPLES]
        means = ann_activation_means(graph, x)
        graph.notes.append(f"SNN calibration (bias correction, Li et al. 2021) for every T on {len(x)} samples; "
                           "--no-snn-calibration turns it off")
        return {t: lower(graph, options, lambda snn, t=t: calibrate_rates(snn, means, _snn_means(x, t, options.threads)))
                for t in options.timesteps}
    steps = calibrated_steps(graph, options)
    shared = lower(graph, options) if len(steps) < len(options.timesteps) else None
    rule = options.neuron_options.get("parallel_calibration", "search")
    networks = {t: lower(calibrate_distribution(copy.deepcopy(graph), calibration[:DA_CALIBRATION_SAMPLES], t, rule), options)
                if t in steps else shared for t in options.timesteps}
    if steps:
        graph.notes.append(f"{options.neuron} neurons with distribution-aware calibration for T = {', '.join(map(str, steps))}"
                           f" (model.nir is the network for T={max(options.timesteps)}; model.t<T>.nir for the others)")
    return networks
