"""The report's entries, computed from a run's results."""

from __future__ import annotations

import importlib.metadata

import nir
import numpy as np

from targets.reference import RunResult
from toolchain.nir_conventions import snnc_metadata


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
    for name in _names_in_order(graph):
        node = graph.nodes[name]
        if not isinstance(node, nir.IF):
            continue
        meta = snnc_metadata(node)
        layer = str(meta.get("group", name))
        neurons = int(np.prod(np.shape(node.v_threshold)))
        if layer in rows:
            rows[layer]["neurons"] += neurons
            continue
        rows[layer] = {
            "name": layer, "onnx_node": str(meta.get("onnx_node", "")), "neuron": str(meta.get("neuron", "nir-if")),
            "activation": str(meta.get("activation", "")), "threshold": _plain(meta.get("threshold", node.v_threshold)),
            "levels": int(meta.get("levels", 0)), "neurons": neurons,
        }
    return list(rows.values())


def _names_in_order(graph: nir.NIRGraph) -> list[str]:
    from targets.reference.runtime import _topological_order

    return _topological_order(graph)[0]


def target_entry(result: RunResult, labels: np.ndarray, timesteps: list[int], ann_predictions: np.ndarray) -> dict:
    """A target's report entry: accuracy and agreement with the ANN per T, spikes and firing rate per layer."""
    accuracy = result.accuracy(labels)
    agreement = (result.predictions == ann_predictions[None, :]).mean(axis=1)
    total_spikes = sum(result.spikes.values())
    return {
        "samples": int(result.samples),
        "accuracy": {str(t): float(accuracy[t - 1]) for t in timesteps},
        "agreement_with_ann": {str(t): float(agreement[t - 1]) for t in timesteps},
        "spikes_per_layer": {name: int(count) for name, count in result.spikes.items()},
        "firing_rate_per_layer": {
            name: float(count / (result.neurons[name] * result.timesteps * max(result.samples, 1)))
            for name, count in result.spikes.items()
        },
        "spikes_per_inference": float(total_spikes / max(result.samples, 1)),
        "simulated_timesteps": int(result.timesteps),
    }
