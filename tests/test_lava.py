"""The Lava target against the reference runtime: bit for bit in fixed_pt, within tolerance in floating_pt."""

import json
import subprocess
import sys

import numpy as np
import pytest

from targets.lava import run_lava
from targets.reference import ReferenceRuntime
from tests.onnx_models import qcfs_maxpool_model, residual_cnn
from toolchain.data import fit_to_input, load_dataset
from toolchain.frontend import import_onnx, load_onnx
from toolchain.ir.metadata import NodeMeta
from toolchain.passes import calibrate_thresholds, canonicalise, expand_group_neurons, lower_to_nir, quantize_loihi
from toolchain.report import compare_runs

SAMPLES, STEPS = 6, 8


def _dense_net(zoo, neuron, options):
    path = zoo / "digits_mlp_relu.onnx"
    model = load_onnx(path)
    graph = canonicalise(import_onnx(path, model=model))
    data = load_dataset("digits")
    graph = calibrate_thresholds(graph, model, fit_to_input(data.x_train[:300], graph.input_shape, "digits"))
    return lower_to_nir(graph, neuron, options), fit_to_input(data.x_test[:SAMPLES], graph.input_shape, "digits")


def _residual_net(tmp_path, neuron, options):
    residual_cnn(tmp_path / "r.onnx")
    snn = lower_to_nir(canonicalise(import_onnx(tmp_path / "r.onnx")), neuron, options)
    return snn, np.random.default_rng(1).uniform(0, 1, (SAMPLES, 1, 8, 8)).astype(np.float32)


def _maxpool_net(tmp_path, neuron, options):
    """Two max poolings, one padded and strided, between spiking layers (docs/maxpool.md)."""
    snn = lower_to_nir(canonicalise(import_onnx(qcfs_maxpool_model(tmp_path))), neuron, options)
    return snn, np.random.default_rng(2).uniform(0, 1, (SAMPLES, 1, 8, 8)).astype(np.float32)


NETWORKS = {"dense": lambda zoo, tmp_path, neuron, options: _dense_net(zoo, neuron, options),
            "residual_cnn": lambda zoo, tmp_path, neuron, options: _residual_net(tmp_path, neuron, options),
            "maxpool_cnn": lambda zoo, tmp_path, neuron, options: _maxpool_net(tmp_path, neuron, options)}
NEURONS = [("if", {}), ("gn", {"tau": 3}), ("parallel", {}), ("tpp", {"seed": 3}), ("bsnn", {"cycle": 4}), ("if-permuted", {"seed": 5})]


@pytest.mark.parametrize("neuron,options", NEURONS)
@pytest.mark.parametrize("network", NETWORKS)
def test_fixed_pt_agrees_bit_for_bit_with_loihi_precision(zoo, tmp_path, network, neuron, options):
    snn, x = NETWORKS[network](zoo, tmp_path, neuron, options)
    graph = quantize_loihi(snn)
    lava, reference = run_lava(graph, x, STEPS, "fixed_pt"), ReferenceRuntime(graph).run(x, STEPS)
    assert sum(reference.spikes.values()) > 0
    check = compare_runs("lava", lava, reference, exact=True)
    assert check["passed"], check
    np.testing.assert_array_equal(lava.readout, reference.readout)


def test_fixed_pt_runs_expanded_group_neurons(tmp_path):
    snn, x = _residual_net(tmp_path, "gn", {"tau": 2})
    graph = expand_group_neurons(quantize_loihi(snn))
    assert compare_runs("lava", run_lava(graph, x, STEPS), ReferenceRuntime(graph).run(x, STEPS), exact=True)["passed"]


@pytest.mark.parametrize("neuron,options", [("if", {}), ("tpp", {"seed": 3})])
def test_floating_pt_agrees_within_tolerance(tmp_path, neuron, options):
    snn, x = _residual_net(tmp_path, neuron, options)
    check = compare_runs("lava", run_lava(snn, x, STEPS, "floating_pt"), ReferenceRuntime(snn).run(x, STEPS), exact=False)
    assert check["passed"] and check["predictions_agree"] == 1.0, check


def test_compare_runs_reports_a_disagreement(tmp_path):
    snn, x = _residual_net(tmp_path, "if", {})
    graph = quantize_loihi(snn)
    reference = ReferenceRuntime(graph).run(x, STEPS)
    tampered = ReferenceRuntime(graph).run(x, STEPS)
    layer = next(iter(tampered.spikes))
    tampered.spikes[layer] += 1
    check = compare_runs("lava", tampered, reference, exact=True)
    assert not check["passed"] and not check["spikes_per_layer"][layer]["agree"]


def test_cli_lava_target_smoke(zoo, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "toolchain.cli", "compile", str(zoo / "digits_cnn_qcfs8.onnx"), "--neuron", "gn",
                             "--target", "lava", "--timesteps", "8", "--data", "digits", "--lava-samples", "4", "-o", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    lava, check = report["targets"]["lava"], report["checks"][0]
    assert check["passed"] and lava["samples"] == 4
    assert lava["spikes_per_layer"] == {k: v["reference"] for k, v in check["spikes_per_layer"].items()}
    assert {"reference", "reference-loihi", "lava"} <= set(report["targets"])
    assert (out / "model_loihi.nir").is_file() and "PASSED" in result.stdout


def test_the_zoo_lenet_with_max_pooling_passes_the_spike_check(zoo):
    """Max pooling on Lava through the whole pipeline (calibration per T included). The model normalises its input
    inside the network; its first convolution has no padding, so the normalisation folds into it."""
    import snnc

    net = snnc.compile(zoo / "mnist5k_lenet_maxpool.onnx", neuron="if", data="mnist5k", timesteps=(8,), targets=("lava",),
                       samples=200, calibration_samples=200)
    graph = net.networks[8]["loihi"]
    assert sum(NodeMeta.of(node).pool == "max" for node in graph.nodes.values()) == 2
    assert NodeMeta.of(graph.nodes["conv1"]).host and "normalize" not in graph.nodes
    check = net.check("lava", samples=6)
    assert check["passed"], check


def test_an_input_normalisation_before_a_padded_conv_runs_on_the_host(tmp_path):
    """(x − m)/s before a padded convolution stays a node of its own (padding zeros are not normalised): two linear
    nodes run on the host before the first neurons, both analog, and only the second's output is rounded to the
    integer current Loihi receives, as on the reference."""
    import torch

    import snnc

    class Normalised(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Linear(256, 10)

        def forward(self, x):
            return self.fc(torch.flatten(torch.relu(self.conv((x - 0.3) / 0.2)), 1))

    torch.manual_seed(0)
    path = tmp_path / "normalised.onnx"
    torch.onnx.export(Normalised().eval(), (torch.rand(2, 1, 8, 8),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "b"}})
    net = snnc.compile(path, neuron="if", data="digits", timesteps=(8,), targets=("lava",), samples=60, calibration_samples=200)
    graph = net.networks[8]["loihi"]
    assert [NodeMeta.of(graph.nodes[name]).host for name in ("conv1", "conv")] == [False, True]  # only the second rounds
    check = net.check("lava", samples=4)
    assert check["passed"], check
