"""When a NIR graph's answer is complete: windowed layers and the latency of a streaming target."""

from __future__ import annotations

import nir

from toolchain.ir.metadata import NodeMeta
from toolchain.ir.order import topological_order


def windowed_layers(graph: nir.NIRGraph) -> list[str]:
    """Layers that need their whole window (or cycle) of input before they emit: T is part of such a neuron."""
    return [name for name, node in graph.nodes.items() if NodeMeta.of(node).windowed]


def latency_steps(graph: nir.NIRGraph, timesteps: int) -> int:
    """Steps from presenting a sample until its answer after T steps is complete on a streaming target:
    T, plus one cycle (or window) for every windowed layer on the longest path: each emits only after it."""
    order, preds = topological_order(graph)
    delay = {}
    for name in order:
        meta = NodeMeta.of(graph.nodes[name])
        own = (meta.cycle or timesteps) if meta.windowed else 0
        delay[name] = max((delay[p] for p in preds[name]), default=0) + own
    return timesteps + max(delay.values())
