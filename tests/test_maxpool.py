"""Max pooling kept through the conversion (docs/maxpool.md): exact for parallel neurons at T = L against the QCFS
network with max pooling, the running-max rule against a numpy reference, within a point of the trained MaxPool
ANN on the zoo's LeNet, and one clear line where a target or the portable file cannot run it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from targets.reference import ReferenceRuntime
from targets.reference.neurons import Signal
from toolchain.errors import SnncError
from toolchain.frontend import import_onnx
from toolchain.graph import MaxPool
from toolchain.ir.evaluate import evaluate_ann
from toolchain.passes import canonicalise, lower_to_nir
from toolchain.ir.files import write_graph
from toolchain.passes.portable_nir import portable_nir

from targets.sanafe.arithmetic import quantize_sanafe
from tests.onnx_models import LEVELS, qcfs_maxpool_model

def test_parallel_neurons_at_t_equal_l_reproduce_the_qcfs_network_with_max_pooling(tmp_path):
    """The first pool is in ceil mode, so padded asymmetrically; the NIR file keeps that through snnc's reader."""
    graph = canonicalise(import_onnx(qcfs_maxpool_model(tmp_path)))
    assert [n.op.padding for n in graph.nodes.values() if isinstance(n.op, MaxPool)] == [(1, 1, 2, 2), (0, 0)]
    x = np.random.default_rng(1).uniform(0, 1.5, (200, 1, 8, 8)).astype(np.float32)
    logits = evaluate_ann(graph, x)
    snn = write_graph(lower_to_nir(graph, "parallel"), tmp_path / "maxpool.nir")
    for runtime_path in ("window sums", "step by step"):
        runtime = ReferenceRuntime(snn)
        if runtime_path == "step by step":  # the two-phase kernel's spike trains through the running-max rule
            runtime.runs_on_window_sums = lambda timesteps: False
        result = runtime.run(x, LEVELS)
        np.testing.assert_allclose(result.readout / LEVELS, logits, rtol=1e-4, atol=1e-4)
        assert np.array_equal(result.predictions[-1], logits.argmax(1))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**16), steps=st.integers(1, 12), most=st.integers(1, 4))
def test_running_max_rule_emits_the_largest_count_so_far(seed, steps, most):
    """Σ_{s≤t} out[s] = max over the window of Σ_{s≤t} in[s], at every t, for graded spike counts."""
    rng = np.random.default_rng(seed)
    spikes = rng.integers(0, most + 1, (steps, 2, 3, 4, 4)).astype(np.float32)
    node = MaxPool(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))
    out = ReferenceRuntime._max_pool(node, Signal(torch.from_numpy(spikes), temporal=True)).numpy()
    running = spikes.cumsum(0).reshape(steps, 2, 3, 2, 2, 2, 2).max(axis=(4, 6))
    np.testing.assert_array_equal(out.cumsum(0), running)
    assert out.min() >= 0 and out.max() <= most


@pytest.mark.parametrize("neuron,timesteps", [("if", 64), ("gn", 16)])
def test_lenet_with_max_pooling_stays_within_a_point_of_its_ann(zoo, neuron, timesteps, tmp_path):
    import snnc

    net = snnc.compile(zoo / "mnist5k_lenet_maxpool.onnx", neuron=neuron, data="mnist5k", timesteps=(timesteps,))
    report = net.report
    snn = report["targets"]["reference"]["accuracy"][str(timesteps)]
    assert abs(snn - report["ann"]["accuracy"]) <= 0.01, (snn, report["ann"]["accuracy"])


def test_targets_without_max_pooling_say_so(zoo):
    graph = canonicalise(import_onnx(zoo / "mnist5k_lenet_maxpool.onnx"))
    for node in graph.nodes.values():
        if node.op.__class__.__name__ == "Activation" and node.op.threshold is None:
            node.op.threshold = 1.0
    snn = lower_to_nir(graph, "if")
    with pytest.raises(SnncError, match="max pooling.*--maxpool avg"):
        portable_nir(snn)
    with pytest.raises(SnncError, match="max pooling.*--maxpool avg"):
        quantize_sanafe(snn)


def test_report_separates_the_rewrite_loss_from_the_conversion_loss(zoo):
    """With --maxpool avg the report gives the rewritten ANN's accuracy beside the original's; the zoo card measured
    the same weights with AveragePool in onnxruntime at 96.70 %."""
    import snnc

    report = snnc.compile(zoo / "mnist5k_lenet_maxpool.onnx", neuron="if", data="mnist5k", timesteps=(4,), maxpool="avg",
                          snn_calibration=False).report
    assert report["ann"]["accuracy"] == pytest.approx(0.970)
    assert report["ann"]["rewritten"] == {"what": "MaxPool as average pooling", "accuracy": pytest.approx(0.967)}
    assert "rewritten" not in snnc.compile(zoo / "mnist5k_lenet_maxpool.onnx", data="mnist5k", timesteps=(4,),
                                           samples=50, snn_calibration=False).report["ann"]
