"""The report's entries, computed from a run's results."""

from __future__ import annotations

import importlib.metadata

import nir
import numpy as np

from targets.result import RunResult
from toolchain.costs import Structure, synaptic_operations
from toolchain.ir.metadata import NodeMeta
from toolchain.ir.order import topological_order


def versions() -> dict[str, str]:
    found = {}
    for package in ("snnc", "numpy", "onnx", "onnxruntime", "nir", "torch", "lava-nc"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _plain(value):
    """A threshold as the report shows it: one number, or a list when it varies per channel."""
    array = np.asarray(value, np.float64).reshape(-1)
    return float(array[0]) if np.all(array == array[0]) else [float(v) for v in array]


def layer_table(graph: nir.NIRGraph) -> list[dict]:
    """One row per spiking layer (a group neuron's members form one layer): origin, threshold λ, size."""
    rows = {}
    for name in topological_order(graph)[0]:
        node = graph.nodes[name]
        if not isinstance(node, nir.IF):
            continue
        meta = NodeMeta.of(node)
        layer = meta.group or name
        neurons = int(np.prod(np.shape(node.v_threshold)))
        if layer in rows:
            rows[layer]["neurons"] += neurons
            continue
        rows[layer] = {
            "name": layer, "onnx_node": meta.onnx_node, "neuron": meta.neuron or "nir-if",
            "activation": meta.activation, "threshold": _plain(node.v_threshold if meta.threshold is None else meta.threshold),
            "levels": meta.levels, "neurons": neurons,
        }
    return list(rows.values())


def target_entry(result: RunResult, labels: np.ndarray, timesteps: list[int], ann_predictions: np.ndarray) -> dict:
    """A target's report entry: accuracy and agreement with the ANN per T, spikes and firing rate per layer."""
    accuracy = result.accuracy(labels)
    agreement = (result.predictions == ann_predictions[None, :]).mean(axis=1)
    if result.spikes_per_step:
        spikes_by_prefix = np.cumsum(sum(result.spikes_per_step.values(), np.zeros(result.timesteps)))
        spike_steps = timesteps
    else:  # a target that counts spikes per sample window only (Lava)
        spikes_by_prefix = np.full(result.timesteps, float(sum(result.spikes.values())))
        spike_steps = [result.timesteps]
    return {
        "samples": int(result.samples),
        "accuracy": {str(t): float(accuracy[t - 1]) for t in timesteps},
        "agreement_with_ann": {str(t): float(agreement[t - 1]) for t in timesteps},
        "spikes_per_layer": {name: int(count) for name, count in result.spikes.items()},
        "firing_rate_per_layer": {
            name: float(count / (result.neurons[name] * result.timesteps * max(result.samples, 1)))
            for name, count in result.spikes.items()
        },
        "spikes_per_inference": {str(t): float(spikes_by_prefix[t - 1] / max(result.samples, 1)) for t in spike_steps},
        "simulated_timesteps": int(result.timesteps),
    }


def operations_entry(structure: Structure, result: RunResult, macs: dict[str, int]) -> dict:
    """A target's exact operation counts per layer (docs/energy.md), from a run with per-neuron spike totals.

    macs: the ANN's MACs per inference; synops: synaptic events over all samples after the run's T steps, a
    neuron emitting n spikes in a step counting n events per synapse (binary chips); graded_synops: one event per
    synapse for every step with n > 0 (a graded message on Loihi 2); input_macs_per_step: the SNN's input layer,
    computed at every step; neurons: updated every step (a group's binary members each); ann_units: the ANN's.
    """
    steps = len(result.counted_steps)
    synops = synaptic_operations(structure, result.spikes_per_neuron, steps)
    graded = synaptic_operations(structure, result.messages_per_neuron, steps)
    per_step = sum(synops.values(), np.zeros(steps, np.int64))
    samples = max(result.samples, 1)
    return {
        "macs": {layer: int(macs.get(layer, 0)) for layer in structure.layers},
        "synops": {layer: int(events[-1]) for layer, events in synops.items()},
        "graded_synops": {layer: int(events[-1]) for layer, events in graded.items()},
        "synops_per_inference": {str(t): float(per_step[k] / samples) for k, t in enumerate(result.counted_steps)},
        "synapses": {layer: structure.synapses(layer) for layer in structure.layers},
        "input_macs_per_step": {layer: int(structure.input_macs[layer]) for layer in structure.layers},
        "neurons": {name: layer.neurons for name, layer in structure.layers.items()},
        "ann_units": {name: layer.units for name, layer in structure.layers.items()},
    }


def compare_runs(target: str, run: RunResult, reference: RunResult, exact: bool) -> dict:
    """A cross-target check on the same samples: spikes per layer, predictions after every step, readout sums.

    exact (integer precision): everything must be identical. Otherwise (float) spikes per layer may differ by
    FLOAT_SPIKE_TOLERANCE of the reference's count and the readout by FLOAT_READOUT_TOLERANCE (relative), as
    float64 (Lava) and float32 (reference) round differently near thresholds.
    """
    layers = {}
    for layer, expected in reference.spikes.items():
        got = run.spikes.get(layer, -1)
        agree = got == expected if exact else abs(got - expected) <= FLOAT_SPIKE_TOLERANCE * max(expected, 1)
        layers[layer] = {"reference": int(expected), target: int(got), "agree": bool(agree)}
    predictions_agree = float((run.predictions == reference.predictions).mean())
    scale = max(float(np.abs(reference.readout).max()), 1e-12)
    readout_gap = float(np.abs(run.readout - reference.readout).max() / scale)
    passed = all(v["agree"] for v in layers.values()) and (
        predictions_agree == 1.0 and readout_gap == 0.0 if exact else readout_gap <= FLOAT_READOUT_TOLERANCE)
    return {
        "name": f"{target} vs reference", "mode": "exact" if exact else "tolerance", "samples": int(run.samples),
        "spikes_per_layer": layers, "predictions_agree": predictions_agree, "readout_max_relative_gap": readout_gap,
        "passed": bool(passed),
    }


FLOAT_SPIKE_TOLERANCE = 0.01
FLOAT_READOUT_TOLERANCE = 1e-3
