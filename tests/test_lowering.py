"""NIR lowering: exact against the ANN where theory says it must be, and a file that reads back identical."""

import nir
import numpy as np
import onnx
import pytest
from onnx import helper

from targets.reference import ReferenceRuntime
from toolchain.ir.evaluate import evaluate_ann
from tests.onnx_models import model, qcfs_chain, rand
from toolchain.frontend import import_onnx
from toolchain.graph import Activation
from toolchain.ir.files import differences
from toolchain.ir.metadata import NodeMeta
from toolchain.ir.read import read_graph
from toolchain.passes import canonicalise, lower_to_nir


def _branchy_model(tmp_path, levels):
    """Two QCFS branches on the (constant) input merged by Concat and by Add, then a readout layer.

    Every neuron sees a constant input, so by Q1 the SNN's time-mean equals the ANN with QCFS(L=T) exactly —
    which checks that spike amplitudes, concat placement and the residual merge are lowered correctly.
    """
    nodes, inits = [], {"half": np.float32(0.5), "zero": np.float32(0.0)}
    for tag, lam, w in (("p", 1.5, "wp"), ("q", 0.7, "wq")):
        nodes.append(helper.make_node("Conv", ["x", w], [f"{tag}c"], pads=[1, 1, 1, 1]))
        chain, consts = qcfs_chain(f"{tag}c", f"{tag}o", lam, levels, tag)
        nodes += chain
        inits.update(consts)
    nodes += [
        helper.make_node("Concat", ["po", "qo"], ["cat"], axis=1),
        helper.make_node("Add", ["po", "qo"], ["sum"]),
        helper.make_node("AveragePool", ["sum"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["cat"], ["f1"]),
        helper.make_node("Flatten", ["pool"], ["f2"]),
        helper.make_node("Concat", ["f1", "f2"], ["feat"], axis=1),
        helper.make_node("Gemm", ["feat", "wo", "bo"], ["y"], transB=1),
    ]
    inits.update(wp=rand(3, 2, 3, 3, seed=1), wq=rand(3, 2, 3, 3, seed=2), wo=rand(5, 6 * 16 + 3 * 4, seed=3), bo=rand(5, seed=4))
    path = tmp_path / "branchy.onnx"
    onnx.save(model(nodes, (2, 4, 4), (5,), inits), str(path))
    return path


@pytest.mark.parametrize("timesteps", [1, 3, 8])
def test_snn_time_mean_equals_qcfs_ann_with_t_levels(tmp_path, timesteps):
    graph = canonicalise(import_onnx(_branchy_model(tmp_path, levels=8)))
    x = rand(6, 2, 4, 4, low=-1, high=2)
    result = ReferenceRuntime(lower_to_nir(graph, "if")).run(x, timesteps)
    for node in graph.nodes.values():
        if isinstance(node.op, Activation):
            node.op.levels = timesteps
    np.testing.assert_allclose(result.readout / timesteps, evaluate_ann(graph, x), atol=2e-5)


def test_nir_file_reads_back_identical_and_runs_the_same(tmp_path):
    graph = canonicalise(import_onnx(_branchy_model(tmp_path, levels=4)))
    snn = lower_to_nir(graph, "if")
    nir.write(str(tmp_path / "model.nir"), snn)
    back = read_graph(tmp_path / "model.nir")
    assert differences(snn, back) == []
    x = rand(4, 2, 4, 4)
    first, second = ReferenceRuntime(snn).run(x, 5), ReferenceRuntime(back).run(x, 5)
    np.testing.assert_array_equal(first.readout, second.readout)
    assert first.spikes == second.spikes


def test_neurons_carry_snnc_semantics_in_metadata(tmp_path):
    snn = lower_to_nir(canonicalise(import_onnx(_branchy_model(tmp_path, levels=4))), "if")
    neurons = [n for n in snn.nodes.values() if isinstance(n, nir.IF)]
    assert len(neurons) == 2
    for node in neurons:
        meta = NodeMeta.of(node)
        assert meta.neuron == "if" and meta.reset == "subtract" and meta.max_spikes_per_step == 1
        np.testing.assert_array_equal(meta.v_init, node.v_threshold / 2)
    assert NodeMeta.of(snn.nodes["readout"]).role == "readout"


def test_differences_notices_a_changed_weight(tmp_path):
    snn = lower_to_nir(canonicalise(import_onnx(_branchy_model(tmp_path, levels=4))), "if")
    nir.write(str(tmp_path / "model.nir"), snn)
    back = read_graph(tmp_path / "model.nir")
    conv = next(name for name, node in back.nodes.items() if isinstance(node, nir.Conv2d))
    back.nodes[conv].weight = back.nodes[conv].weight + 1e-3
    assert differences(snn, back) == [f"{conv}.weight"]


def test_foreign_nir_if_resets_to_v_reset(tmp_path):
    """A NIR IF without snnc metadata keeps NIR's meaning: spike when v > threshold, then v ← v_reset."""
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([1])}),
            "fc": nir.Affine(weight=np.array([[1.0]], np.float32), bias=np.zeros(1, np.float32)),
            "lif": nir.IF(r=np.ones(1, np.float32), v_threshold=np.ones(1, np.float32), v_reset=np.zeros(1, np.float32)),
            "readout": nir.I(r=np.ones(1, np.float32)),
            "output": nir.Output(output_type={"output": np.array([1])}),
        },
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "readout"), ("readout", "output")], type_check=False,
    )
    result = ReferenceRuntime(graph).run(np.full((1, 1), 0.6, np.float32), 10)
    # v: .6, 1.2→spike→0, .6, 1.2→0, ... : 5 spikes in 10 steps (a subtract reset would give 6).
    assert result.spikes == {"lif": 5}
