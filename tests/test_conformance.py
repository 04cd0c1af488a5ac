"""Every registered neuron model on every target that runs it, against its family's numpy specification.

The reference runtime's family kernels are compared spike for spike with the spec on flat and channels-last layers
in float32 and float64 (Loihi precision, saturating); Lava runs each model in a small network at Loihi precision
and must equal the reference spike for spike. A new model is picked up from the registry without touching this file.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch

from targets.lava import run_lava
from targets.reference import ReferenceRuntime
from targets.reference.neurons import FAMILY_KERNELS, Signal, neuron_parameters
from toolchain.graph import Activation, AnnGraph, Node
from toolchain.ir.kernels import channels_last
from toolchain.ir.metadata import NodeMeta
from toolchain.neurons import permuted, registry, soft_reset, two_phase
from toolchain.neurons.model import NeuronParameters
from toolchain.passes import lower_to_nir, quantize_loihi
from toolchain.report import compare_runs

MODELS = list(registry())
STEPS, BATCH = 8, 3


def one_layer(model: str, shape: tuple[int, ...], threshold) -> nir.NIRGraph:
    """The NIR network of one activation layer lowered with `model` (its IF node is `model`1)."""
    graph = AnnGraph(source="conformance", input_name="x", input_shape=shape, output="act",
                     nodes={"act": Node("act", Activation("clip", threshold=threshold), ["x"], shape)})
    return lower_to_nir(graph, model)


def spec_spikes(node: nir.IF, layer: str, x: np.ndarray, first_sample: int) -> np.ndarray:
    """The family specification's spikes (T, B, ...) for inputs x (T, B, ...)."""
    meta = NodeMeta.of(node)
    threshold = np.asarray(node.v_threshold, x.dtype)
    v_init = np.broadcast_to(np.asarray(meta.v_init, x.dtype), threshold.shape)
    params = NeuronParameters(unit_threshold=threshold, max_spikes=meta.max_spikes_per_step, v_init=v_init)
    out = np.empty_like(x)
    for b in range(x.shape[1]):
        if meta.schedule == "":
            out[:, b] = soft_reset.simulate(x[:, b], params)
        elif meta.schedule == "two_phase":
            cycle = meta.cycle or len(x)
            u = two_phase.bernoulli_draws(meta.seed, layer, first_sample + b, len(x), cycle, threshold.shape)
            out[:, b] = two_phase.simulate(x[:, b], threshold, v_init, meta.fire_rule, cycle, u)
        else:
            order = permuted.permutation(meta.seed, layer, first_sample + b, len(x), threshold.shape)
            out[:, b] = permuted.simulate(x[:, b], params, order)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(6,), (3, 4, 2)], ids=["flat", "channels_last"])
@pytest.mark.parametrize("model", MODELS)
def test_reference_kernel_equals_the_family_spec(model, shape, dtype):
    rng = np.random.default_rng(len(model))
    threshold = rng.uniform(0.5, 2.0, shape[0]).astype(np.float32)
    graph = one_layer(model, shape, threshold)
    name = next(n for n, node in graph.nodes.items() if isinstance(node, nir.IF))
    node = graph.nodes[name]
    x = rng.normal(0.4, 1.0, (STEPS, BATCH, *shape)).astype(dtype)
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    params = neuron_parameters(node, name, torch_dtype, saturate=dtype == np.float64)
    data = torch.from_numpy(x)
    if len(shape) == 3:
        data = channels_last(data.reshape(-1, *shape)).view(STEPS, BATCH, *shape)
    ours = FAMILY_KERNELS[NodeMeta.of(node).schedule](params, Signal(data, temporal=True), STEPS, first_sample=5)
    np.testing.assert_array_equal(ours.numpy(), spec_spikes(node, name, x, first_sample=5))


@pytest.mark.parametrize("model", MODELS)
def test_lava_equals_the_reference_spike_for_spike(model):
    """A two-layer network of the model at Loihi precision: Lava (fixed_pt) against the reference runtime."""
    rng = np.random.default_rng(3)
    shape = (5,)
    graph = AnnGraph(source="conformance", input_name="x", input_shape=(4,), output="fc2", nodes={
        "fc1": Node("fc1", nir.Affine(weight=rng.normal(0, 1, (5, 4)).astype(np.float32), bias=np.zeros(5, np.float32)), ["x"], shape),
        "act": Node("act", Activation("clip", threshold=1.0), ["fc1"], shape),
        "fc2": Node("fc2", nir.Affine(weight=rng.normal(0, 1, (3, 5)).astype(np.float32), bias=np.zeros(3, np.float32)), ["act"], (3,)),
    })
    network = quantize_loihi(lower_to_nir(graph, model))
    x = rng.uniform(0, 1, (4, 4)).astype(np.float32)
    lava = run_lava(network, x, STEPS)
    reference = ReferenceRuntime(network).run(x, STEPS)
    check = compare_runs("lava", lava, reference, exact=True)
    assert check["passed"], check
    assert sum(reference.spikes.values()) > 0
