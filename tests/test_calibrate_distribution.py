"""Distribution-aware calibration (methods.md §6.2): exact against its own DA-QCFS ANN (P4), and better than
running parallel neurons with T ≠ L uncalibrated."""

import copy

import numpy as np
import pytest

from targets.reference import ReferenceRuntime
from toolchain.ir.evaluate import evaluate_ann, node_values
from toolchain.data import fit_to_input, load_dataset
from toolchain.frontend import import_onnx, load_onnx
from toolchain.errors import SnncError
from toolchain.graph import Activation, Add
from toolchain.passes import calibrate_distribution, calibrate_thresholds, canonicalise, lower_to_nir
from toolchain.passes.calibrate_distribution import by_channel, reference_activation
from tests.onnx_models import residual_cnn


def _setup(zoo, name, data, samples=600):
    model = load_onnx(zoo / f"{name}.onnx")
    graph = canonicalise(import_onnx(zoo / f"{name}.onnx", model=model))
    dataset = load_dataset(data)
    calibration = fit_to_input(dataset.x_train[:512], graph.input_shape, data)
    return model, graph, calibration, fit_to_input(dataset.x_test[:samples], graph.input_shape, data), dataset.y_test[:samples]


def test_p4_calibrated_snn_equals_its_da_qcfs_ann(zoo):
    _, graph, calibration, x, _ = _setup(zoo, "digits_cnn_qcfs8", "digits", samples=200)
    calibrated = calibrate_distribution(copy.deepcopy(graph), calibration, 3)
    acts = [n.op for n in calibrated.nodes.values() if isinstance(n.op, Activation)]
    assert all(a.levels == 3 and a.amplitude is not None for a in acts)
    assert any(not np.allclose(a.amplitude, a.threshold) for a in acts)
    result = ReferenceRuntime(lower_to_nir(calibrated, "parallel")).run(x, 3)
    np.testing.assert_allclose(result.readout / 3, evaluate_ann(calibrated, x), rtol=1e-4, atol=1e-4)


def test_calibration_helps_when_t_differs_from_l(zoo):
    _, graph, calibration, x, y = _setup(zoo, "mnist5k_cnn_qcfs4", "mnist5k")
    steps = 2
    plain = ReferenceRuntime(lower_to_nir(graph, "parallel")).run(x, steps).accuracy(y)[-1]
    calibrated_graph = calibrate_distribution(copy.deepcopy(graph), calibration, steps)
    calibrated = ReferenceRuntime(lower_to_nir(calibrated_graph, "parallel")).run(x, steps).accuracy(y)[-1]
    assert calibrated >= plain


def test_training_free_relu_model_reaches_the_ann(zoo):
    model, graph, calibration, x, y = _setup(zoo, "mnist5k_cnn_relu", "mnist5k")
    graph = calibrate_thresholds(graph, model, calibration, percentile=100.0, per_channel=True)
    ann = (evaluate_ann(graph, x).argmax(1) == y).mean()
    calibrated = calibrate_distribution(graph, calibration, 8)
    snn = ReferenceRuntime(lower_to_nir(calibrated, "parallel")).run(x, 8).accuracy(y)[-1]
    assert snn >= ann - 0.01


def test_shift_is_folded_into_the_bias_of_the_layer_before(zoo):
    _, graph, calibration, _, _ = _setup(zoo, "digits_cnn_qcfs8", "digits")
    before = {n.name: np.array(n.op.bias) for n in graph.nodes.values() if hasattr(n.op, "bias")}
    calibrated = calibrate_distribution(copy.deepcopy(graph), calibration, 2)
    changed = [name for name, bias in before.items() if not np.array_equal(bias, calibrated.nodes[name].op.bias)]
    producers = {calibrated.nodes[n.inputs[0]].name for n in calibrated.nodes.values() if isinstance(n.op, Activation)}
    assert changed and set(changed) <= producers


def _activation_outputs(graph, calibrated, calibration):
    """Per activation: the reference's outputs (the trained QCFS) and the calibrated graph's, one row per channel."""
    reference, mine = node_values(graph, calibration, reference_activation), node_values(calibrated, calibration)
    return {n.name: (by_channel(reference[n.name]).double(), by_channel(mine[n.name]).double())
            for n in calibrated.nodes.values() if isinstance(n.op, Activation)}


def test_paper_rule_is_the_fixed_point_of_the_official_moving_average(zoo):
    # φ ← 0.99φ + 0.01·mean(y_ref − y_da) stops moving where φ_c = mean(y_ref − y_da) for channel c
    _, graph, calibration, _, _ = _setup(zoo, "digits_cnn_qcfs8", "digits")
    calibrated = calibrate_distribution(copy.deepcopy(graph), calibration, 3, rule="paper")
    for name, (reference, mine) in _activation_outputs(graph, calibrated, calibration).items():
        op = calibrated.nodes[name].op
        per_channel = reference.shape[0]
        phi = (np.asarray(op.amplitude, np.float64) - np.asarray(op.threshold, np.float64))
        phi = phi if per_channel > 1 else np.array([phi.mean()])
        np.testing.assert_allclose((reference - mine).mean(1).numpy(), phi[:per_channel], atol=1e-5)


def test_threshold_search_fits_the_first_layer_at_least_as_well_as_the_paper_rule(zoo):
    _, graph, calibration, _, _ = _setup(zoo, "mnist5k_cnn_qcfs4", "mnist5k")
    first = next(n.name for n in graph.nodes.values() if isinstance(n.op, Activation))
    errors = {}
    for rule in ("paper", "search"):
        calibrated = calibrate_distribution(copy.deepcopy(graph), calibration, 2, rule=rule)
        reference, mine = _activation_outputs(graph, calibrated, calibration)[first]
        errors[rule] = ((reference - mine) ** 2).mean(1).numpy()
    assert np.all(errors["search"] <= errors["paper"] + 1e-9)
    assert errors["search"].mean() < 0.9 * errors["paper"].mean()


def test_unknown_rule_is_refused(zoo):
    _, graph, calibration, _, _ = _setup(zoo, "digits_cnn_qcfs8", "digits")
    with pytest.raises(SnncError, match="paper"):
        calibrate_distribution(graph, calibration, 2, rule="mse")


def test_shift_after_a_residual_add_goes_into_the_weighted_branch(tmp_path):
    """ψ is the mean gap between the reference's and the calibrated input of each activation: after calibration the
    gap left at the activation after the residual Add is zero, and only the conv branch's bias took it."""
    residual_cnn(tmp_path / "r.onnx")
    graph = canonicalise(import_onnx(tmp_path / "r.onnx"))
    calibration = np.random.default_rng(0).uniform(0, 1, (200, 1, 8, 8)).astype(np.float32)
    calibrated = calibrate_distribution(copy.deepcopy(graph), calibration, 2)
    after_add = next(n for n in calibrated.nodes.values() if isinstance(n.op, Activation) and isinstance(calibrated.nodes[n.inputs[0]].op, Add))
    branch = next(i for i in calibrated.nodes[after_add.inputs[0]].inputs if hasattr(calibrated.nodes[i].op, "bias"))
    assert not np.array_equal(graph.nodes[branch].op.bias, calibrated.nodes[branch].op.bias)
    reference = node_values(graph, calibration, reference_activation)[after_add.inputs[0]]
    mine = node_values(calibrated, calibration)[after_add.inputs[0]]
    gap = by_channel(reference.double() - mine.double()).mean(1)
    np.testing.assert_allclose(gap.numpy(), 0, atol=1e-5)
