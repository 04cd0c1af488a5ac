"""Does a network fit a chip that maps one layer per core (Speck; docs/resources.md).

layer per core (Speck): each spiking layer and the output layer take one core each (Conv → IAF → optional sum
pool on its output): one convolution per core (Affine as a convolution over its flattened input), kernel,
stride, padding, channel and feature-map limits, pools on a core's output only, at most two destination
cores, and the kernel and neuron memory formulas of sinabs matched against the nine cores' memories.
"""

from __future__ import annotations

import math

import nir
import numpy as np
import torch

from toolchain.chips import value
from toolchain.costs.operations import COUNT_DTYPE, WEIGHTED_NODES, Layer, StructuralKernels, analog_nodes, layers_of


def layer_per_core(chip: dict, graph: nir.NIRGraph) -> dict:
    """Speck-style mapping: one core per layer (module docstring)."""
    limits = {k: value(v) for k, v in chip["limits"].items()}
    kernels = StructuralKernels(graph)
    layers = layers_of(graph, kernels.order, kernels.shapes)
    analog = analog_nodes(graph, kernels)
    layer_of = {node: layer.name for layer in layers.values() for node in layer.nodes}
    problems, notes, rows, destinations = [], [], [], {}
    for layer in layers.values():
        reach, passed = kernels.paths_back({n: torch.ones((1, *layer.shape), dtype=COUNT_DTYPE) for n in layer.nodes})
        for source in reach:
            destinations.setdefault(layer_of.get(source, source), set()).add(layer.name)
        if any(source in analog for source in reach):
            notes.append(f"{layer.name} reads the analog input; Speck takes events (DVS or spike input), so the input "
                         "must be encoded as events, which is not the network snnc simulated")
        weighted = [n for n in passed if isinstance(graph.nodes[n], WEIGHTED_NODES)]
        if len(weighted) != 1:
            problems.append(f"{layer.name} is reached through {len(weighted)} weighted nodes "
                            f"({', '.join(weighted) or 'a shortcut or pool only'}); a Speck core has exactly one convolution")
            continue
        conv = weighted[0]
        if _bypasses(kernels, layer, conv):
            problems.append(f"{layer.name} also receives a shortcut that bypasses {conv}; a Speck core convolves every "
                            "input with its one kernel, so the shortcut needs a core of its own")
        row, row_problems = _speck_core(graph, kernels, layer, conv, passed, limits)
        rows.append(row)
        problems += row_problems
    for source, targets in destinations.items():
        if source in layer_of.values() and len(targets) > limits["destinations_per_core"]:
            problems.append(f"{source} sends to {len(targets)} layers ({', '.join(sorted(targets))}); a core has at most "
                            f"{limits['destinations_per_core']} destination cores")
    readouts = [layer for layer in layers.values() if layer.readout]
    if any(layer.units > limits["max_readout_classes"] for layer in readouts):
        problems.append(f"the readout has {max(l.units for l in readouts)} classes; Speck's readout layer takes at most "
                        f"{limits['max_readout_classes']}")
    if len(layers) > limits["cores"]:
        problems.append(f"{len(layers)} layers need {len(layers)} cores; Speck has {limits['cores']}")
    memories = list(zip(limits["kernel_memory_per_core"], limits["neuron_memory_per_core"]))
    for row in rows:
        if not any(row["kernel_memory"] <= kernel and row["neuron_memory"] <= neuron for kernel, neuron in memories):
            problems.append(f"{row['layer']} needs {row['kernel_memory']} kernel and {row['neuron_memory']} neuron entries "
                            f"({row['convolution']}); no Speck core holds both (largest: {max(k for k, _ in memories)} "
                            f"kernel, {max(n for _, n in memories)} neuron entries)")
    if rows and not problems:
        cores = _assign(rows, limits["kernel_memory_per_core"], limits["neuron_memory_per_core"])
        if cores is None:
            problems.append("no assignment of layers to cores meets every core's kernel and neuron memory: "
                            + ", ".join(f"{r['layer']} needs {r['kernel_memory']} kernel and {r['neuron_memory']} neuron entries" for r in rows))
        else:
            for row in rows:
                row["core"] = cores[row["layer"]]
    fits = not problems
    summary = (f"{chip['name']}: fits, {len(rows)} of {limits['cores']} cores" if fits
               else f"{chip['name']}: does not fit ({len(problems)} problem{'s' if len(problems) > 1 else ''})")
    return {"name": chip["name"], "mapping": "layer per core", "spikes": chip.get("spikes", "events"), "fits": fits,
            "cores": len(rows), "chips": 1 if fits else None, "layers": rows,
            "findings": [summary, *problems, *notes, *chip.get("notes", [])],
            "limits": {k: {"value": value(v), "source": v["source"]} for k, v in chip["limits"].items()}}


def _bypasses(kernels: StructuralKernels, layer: Layer, conv: str) -> bool:
    """Whether a source reaches the layer on a path that avoids its convolution."""
    stack = [p for node in layer.nodes for p in kernels.preds[node]]
    seen = set()
    while stack:
        name = stack.pop()
        if name == conv or name in seen:
            continue
        seen.add(name)
        if name not in kernels.kernels:  # a neuron or the input
            return True
        stack += kernels.preds[name]
    return False


def _speck_core(graph, kernels: StructuralKernels, layer: Layer, conv: str, passed: list[str], limits: dict):
    """The core for `layer` (its convolution's geometry and memory) and what breaks Speck's limits."""
    node, shapes = graph.nodes[conv], kernels.shapes
    upstream = _ancestors(kernels, conv, set(passed))
    flatten = [n for n in upstream if isinstance(graph.nodes[n], nir.Flatten)]
    problems = []
    if isinstance(node, nir.Conv2d):
        channels, (ky, kx) = int(node.weight.shape[1]) * int(node.groups), node.weight.shape[2:]
        in_hw, out_hw = shapes[kernels.preds[conv][0]][1:], shapes[conv][1:]
        stride, padding = tuple(int(s) for s in node.stride), tuple(int(p) for p in node.padding)
        if int(node.groups) != 1 or any(int(d) != 1 for d in node.dilation):
            problems.append(f"{layer.name}: {conv} has groups {int(node.groups)} / dilation {tuple(node.dilation)}; a Speck "
                            "core's convolution has kernel, stride and padding only (sinabs chips/dynapcnn.py)")
        if kx != ky:
            problems.append(f"{layer.name}: {conv} has a {ky}x{kx} kernel; Speck's kernels are square")
        if any(s not in limits["strides"] for s in stride):
            problems.append(f"{layer.name}: {conv} has stride {stride}; Speck allows {limits['strides']}")
        if max(padding) > limits["max_padding"]:
            problems.append(f"{layer.name}: {conv} pads {padding}; Speck pads at most {limits['max_padding']}")
    else:  # Affine/Linear: a convolution over the (flattened) input, as sinabs converts it
        flat_input = shapes[kernels.preds[flatten[0]][0]] if flatten else (int(node.weight.shape[1]), 1, 1)
        channels, (ky, kx), in_hw, out_hw = flat_input[0], flat_input[1:], flat_input[1:], (1, 1)
    features = int(node.weight.shape[0])
    if max(kx, ky) > limits["max_kernel_size"]:
        problems.append(f"{layer.name}: {conv} needs a {ky}x{kx} kernel; Speck's largest is {limits['max_kernel_size']}")
    if max(channels, features) > limits["max_channels"]:
        problems.append(f"{layer.name}: {conv} has {channels} → {features} channels; Speck takes at most {limits['max_channels']}")
    if max(in_hw) > limits["max_input_size"] or max(out_hw) > limits["max_output_size"]:
        problems.append(f"{layer.name}: {conv} maps {tuple(in_hw)} to {tuple(out_hw)}; Speck takes inputs up to "
                        f"{limits['max_input_size']} and feature maps up to {limits['max_output_size']} on a side")
    for pool in [n for n in passed if isinstance(graph.nodes[n], (nir.AvgPool2d, nir.SumPool2d))]:
        p = graph.nodes[pool]
        kernel, stride = tuple(np.broadcast_to(p.kernel_size, 2)), tuple(np.broadcast_to(p.stride, 2))
        if pool not in upstream:
            problems.append(f"{layer.name}: {pool} pools before the neurons; a Speck core pools only its output")
        elif kernel != stride or kernel[0] != kernel[1] or kernel[0] not in limits["pool_sizes"] or np.any(p.padding):
            problems.append(f"{layer.name}: {pool} pools {kernel} with stride {stride}; Speck sum-pools "
                            f"{limits['pool_sizes']} with stride = kernel and no padding")
    log2 = lambda v: math.ceil(math.log2(v))
    kernel_memory = channels * 2 ** (log2(kx * ky) + log2(features))
    neuron_memory = features * 2 ** (log2(out_hw[0]) + log2(out_hw[1]))
    if features > limits["bias_memory_per_core"]:
        problems.append(f"{layer.name}: {features} biases; a core holds {limits['bias_memory_per_core']}")
    row = {"layer": layer.name, "convolution": conv, "kernel_memory": kernel_memory, "neuron_memory": neuron_memory, "core": None}
    return row, problems


def _ancestors(kernels: StructuralKernels, name: str, within: set[str]) -> set[str]:
    found, stack = set(), list(kernels.preds[name])
    while stack:
        node = stack.pop()
        if node in within and node not in found:
            found.add(node)
            stack += kernels.preds[node]
    return found


def _assign(rows: list[dict], kernel_memory: list[int], neuron_memory: list[int]) -> dict[str, int] | None:
    """A core for every layer whose kernel and neuron memory hold it (bipartite matching), or None."""
    owner: dict[int, int] = {}

    def place(i: int, tried: set[int]) -> bool:
        for core, (kernel, neuron) in enumerate(zip(kernel_memory, neuron_memory)):
            if core in tried or rows[i]["kernel_memory"] > kernel or rows[i]["neuron_memory"] > neuron:
                continue
            tried.add(core)
            if core not in owner or place(owner[core], tried):
                owner[core] = i
                return True
        return False

    if not all(place(i, set()) for i in range(len(rows))):
        return None
    return {rows[i]["layer"]: core for core, i in owner.items()}
