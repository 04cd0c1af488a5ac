"""SANA-FE's arithmetic: a binary-spike SNN graph rewritten as SANA-FE runs it (graph precision `sanafe`).

SANA-FE (Boyle et al., IEEE TCAD 2025) runs a neuron group with its `leaky_integrate_fire` soma; measured with
sanafe 2.2.9 (tests/test_sanafe.py keeps these facts checked against it), every step it

- truncates the potential toward zero to a multiple of 1/64,
- adds the neuron's bias (a float32 attribute) and the synaptic input (float32 weights summed in float64),
- fires when the potential is above the threshold (v > θ, float32) and then subtracts θ (reset_mode soft),

and a spike sent in step t reaches the next layer's potential in step t + 1. The initial potential (float32) is
truncated like any other in the first step.

This pass writes the graph SANA-FE runs: the biases of the linear nodes between two spiking layers move to the
target neurons (metadata `bias`, float32, the current they receive when no source spikes), because SANA-FE adds
them every step while spikes arrive one step late; layers reading the analog input get their whole input current
from the host as a float32 bias each step, without delay (metadata `delayed` 0). The reference runtime runs the
result with `targets.reference.neurons.sanafe_soft_reset`, spike for spike as SANA-FE does.
"""

from __future__ import annotations

import copy
import dataclasses

import nir
import numpy as np

from targets.sanafe.segments import SegmentEvaluator, readout_segment, spiking_segments
from toolchain.errors import SnncError
from toolchain.ir.metadata import GraphMeta, NodeMeta, with_meta
from toolchain.ir.verify import verify_nir

BIASED = (nir.Affine, nir.Conv2d)


def check_neuron(name: str, node: nir.IF) -> None:
    """SANA-FE's soma runs binary, causal, soft-reset IF neurons; anything else is one clear line."""
    meta = NodeMeta.of(node)
    if meta.max_spikes_per_step > 1:
        raise SnncError(f"layer '{name}' emits up to {meta.max_spikes_per_step} spikes per step; SANA-FE's Loihi has binary "
                        "spikes: run group neurons expanded (--gn-form expanded)")
    if meta.windowed:
        raise SnncError(f"layer '{name}' is a windowed neuron ({meta.schedule}), which fires only after its whole window; "
                        "SANA-FE's soma fires step by step: use --neuron if or gn")
    if not meta.subtracts or not np.all(np.asarray(node.r) == 1):
        raise SnncError(f"layer '{name}' is not a soft-reset IF neuron with r = 1; SANA-FE runs snnc's soft-reset neurons only")


def quantize_sanafe(graph: nir.NIRGraph) -> nir.NIRGraph:
    graph = copy.deepcopy(graph)
    if GraphMeta.of(graph).precision != "float":
        raise SnncError("quantize_sanafe takes a float graph (SANA-FE runs float32 parameters)")
    pooled = [name for name, node in graph.nodes.items() if NodeMeta.of(node).pool == "max"]
    if pooled:
        raise SnncError(f"node '{pooled[0]}' is a max pooling, which SANA-FE's synapses cannot compute; compile with "
                        "--maxpool avg for the sanafe target")
    evaluator = SegmentEvaluator(graph)
    segments = spiking_segments(graph)
    currents = {}
    for segment in segments:
        check_neuron(segment.target, graph.nodes[segment.target])
        if segment.reads_input(graph):
            if len(segment.sources) > 1:
                raise SnncError(f"layer '{segment.target}' reads both the input and spikes; SANA-FE gets the input as a host "
                                "current of the first layers only")
            continue
        currents[segment.target] = evaluator.constant_current(segment)
    readout = set(readout_segment(graph)[0].between)
    for segment in segments:
        shared = readout.intersection(segment.between) if segment.target in currents else set()
        if shared:
            raise SnncError(f"node '{sorted(shared)[0]}' feeds both layer '{segment.target}' and the readout; SANA-FE needs the "
                            "biases between spiking layers in the neurons, which the readout would then miss")
        target = graph.nodes[segment.target]
        shape = np.shape(target.v_threshold)
        bias = currents.get(segment.target, np.zeros(shape))
        target.metadata = dataclasses.replace(NodeMeta.of(target), bias=np.asarray(bias, np.float32).reshape(shape)).as_metadata()
        if segment.target in currents:
            for name in segment.between:
                node = graph.nodes[name]
                if isinstance(node, BIASED):
                    node.bias = np.zeros_like(node.bias)
    graph.metadata = with_meta(graph, precision="sanafe")
    return verify_nir(graph)
