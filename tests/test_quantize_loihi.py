"""Loihi precision: parameters Lava's fixed_pt synapses take unchanged, and accuracy close to float."""

import nir
import numpy as np
import pytest

from targets.reference import ReferenceRuntime
from tests.onnx_models import residual_cnn
from toolchain.data import fit_to_input, load_dataset
from toolchain.frontend import import_onnx, load_onnx
from toolchain.ir.metadata import NodeMeta
from toolchain.passes import calibrate_thresholds, canonicalise, expand_group_neurons, lower_to_nir, quantize_loihi


def _digits(model_path, neuron, options, samples=120):
    model = load_onnx(model_path)
    graph = canonicalise(import_onnx(model_path, model=model))
    data = load_dataset("digits")
    graph = calibrate_thresholds(graph, model, fit_to_input(data.x_train[:300], graph.input_shape, "digits"))
    return lower_to_nir(graph, neuron, options), fit_to_input(data.x_test[:samples], graph.input_shape, "digits"), data.y_test[:samples]


@pytest.mark.parametrize("neuron,options", [("if", {}), ("gn", {"tau": 4})])
def test_parameters_fit_lava_fixed_point(zoo, neuron, options):
    snn, _, _ = _digits(zoo / "digits_cnn_qcfs8.onnx", neuron, options)
    quantized = quantize_loihi(snn)
    assert not any(isinstance(n, nir.AvgPool2d) for n in quantized.nodes.values())
    for name, node in quantized.nodes.items():
        meta = NodeMeta.of(node)
        if isinstance(node, (nir.Affine, nir.Conv2d)) and not meta.host:
            w = np.asarray(node.weight)
            assert np.array_equal(w, np.round(w)) and 0 <= meta.weight_exp <= 7
            if (w < 0).any() and (w > 0).any():
                assert w.min() >= -256 and w.max() <= 254 and np.all(w % 2 == 0), name
            assert np.array_equal(node.bias, np.round(node.bias))
        if isinstance(node, nir.IF):
            theta = np.asarray(node.v_threshold)
            assert np.all(theta > 0) and np.all(theta % 2 == 0) and theta.max() * meta.max_spikes_per_step <= 2**16
            np.testing.assert_array_equal(meta.v_init, theta / 2)


@pytest.mark.parametrize("neuron,options", [("if", {}), ("gn", {"tau": 4})])
def test_loihi_precision_stays_within_one_point_of_float(zoo, neuron, options):
    snn, x, y = _digits(zoo / "digits_cnn_qcfs8.onnx", neuron, options, samples=360)
    float_run, loihi_run = ReferenceRuntime(snn).run(x, 16), ReferenceRuntime(quantize_loihi(snn)).run(x, 16)
    assert abs(float_run.accuracy(y)[-1] - loihi_run.accuracy(y)[-1]) <= 0.01
    assert all(np.array_equal(v, np.round(v)) for v in [loihi_run.readout])  # integer arithmetic throughout


def test_expanded_group_neurons_equal_compact_exactly_in_integers(tmp_path):
    residual_cnn(tmp_path / "r.onnx")
    snn = lower_to_nir(canonicalise(import_onnx(tmp_path / "r.onnx")), "gn", {"tau": 4})
    quantized = quantize_loihi(snn)
    x = np.random.default_rng(0).uniform(0, 1, (16, 1, 8, 8)).astype(np.float32)
    compact, expanded = ReferenceRuntime(quantized).run(x, 12), ReferenceRuntime(expand_group_neurons(quantized)).run(x, 12)
    np.testing.assert_array_equal(compact.readout, expanded.readout)
    assert compact.spikes == expanded.spikes


def test_saturation_caps_the_membrane_at_24_bits():
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1])}),
               "fc": nir.Affine(weight=np.array([[1.0]]), bias=np.zeros(1), metadata={"snnc": {"host": True}}),
               "if1": nir.IF(r=np.ones(1), v_threshold=np.array([2.0**30]), v_reset=np.zeros(1),
                             metadata={"snnc": {"reset": "subtract", "v_init": np.zeros(1), "max_spikes_per_step": 1}}),
               "readout": nir.I(r=np.ones(1)), "output": nir.Output(output_type={"output": np.array([1])})},
        edges=[("input", "fc"), ("fc", "if1"), ("if1", "readout"), ("readout", "output")],
        metadata={"snnc": {"precision": "loihi"}}, type_check=False)
    # 3·2^22 per step would reach 2^30 after ~85 steps without saturation; capped at 2^23 − 1 it never fires.
    result = ReferenceRuntime(graph).run(np.full((1, 1), 3 * 2**22, np.float32), 100)
    assert result.spikes == {"if1": 0}
