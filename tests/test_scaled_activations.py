"""Activations that the model scales or shifts (ReLU · 0.5, ReLU6 / 6, 1 − 2·clip, −ReLU, 2·QCFS, BatchNorm after
ReLU): recognised as ReLU, clip or QCFS with the affine maps around them folded into the weights where exact,
against onnxruntime and against the definitions."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.onnx_models import rand
from toolchain.errors import SnncError
from toolchain.frontend import import_onnx
from toolchain.graph import Activation, ChannelAffine
from toolchain.ir.evaluate import evaluate_ann
from toolchain.passes import calibrate_thresholds, canonicalise, lower_to_nir, quantize_loihi
from toolchain.passes.recognise_activations import classify


def _qcfs(x, lam, levels):
    return lam / levels * np.clip(np.floor(x * levels / lam + 0.5), 0, levels)


def _activation(kind, x, lam, levels):
    """The templates of docs/neurons.md, written out here as the independent reference."""
    if kind == "relu":
        return np.maximum(x, 0.0)
    return np.clip(x, 0.0, lam) if kind == "clip" else _qcfs(x, lam, levels)


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(["relu", "clip", "qcfs"]), lam=st.floats(0.1, 10), levels=st.integers(1, 16),
       magnitude=st.floats(0.05, 20), negative=st.booleans(), shift=st.floats(-5, 5))
def test_a_scaled_shifted_activation_is_recognised_and_reproduced(kind, lam, levels, magnitude, negative, shift):
    scale = -magnitude if negative else magnitude

    def f(x):
        return scale * _activation(kind, x, lam, levels) + shift

    found = classify(f)
    act = found.activation
    assert act.kind == kind and (kind != "qcfs" or act.levels == levels)
    assert found.pre_scale > 0
    if scale > 0:  # all of the scale goes into the layer before, none is left after the activation
        assert found.post_scale == 1.0
    grid = np.linspace(-2 * lam, 3 * lam, 5001)
    rebuilt = found.post_scale * _activation(kind, found.pre_scale * grid, act.threshold, act.levels) + found.post_shift
    away = np.abs(grid * levels / lam + 0.5 - np.round(grid * levels / lam + 0.5)) > 1e-6  # off QCFS's step edges
    np.testing.assert_allclose(rebuilt[away], f(grid)[away], rtol=1e-6, atol=1e-6 * max(1.0, abs(shift), abs(scale) * lam))


def test_an_unscaled_activation_keeps_the_threshold_the_model_wrote():
    found = classify(lambda x: _qcfs(x, 1.7, 8))
    assert (found.pre_scale, found.post_scale, found.post_shift, found.activation.threshold) == (1.0, 1.0, 0.0, 1.7)


def test_a_function_not_constant_below_zero_is_refused():
    with pytest.raises(ValueError, match="not constant for negative inputs"):
        classify(lambda x: np.where(x > 0, x, 0.01 * x))


class _Net(torch.nn.Module):
    """conv → the function → (a padded conv →) flatten → linear."""

    def __init__(self, function, padded_conv_after=False):
        super().__init__()
        self.conv, self.fc, self.function = torch.nn.Conv2d(2, 3, 3), torch.nn.Linear(12, 4), function
        self.after = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.ReLU()) if padded_conv_after else torch.nn.Identity()

    def forward(self, x):
        return self.fc(torch.flatten(self.after(self.function(self.conv(x))), 1))


CASES = {  # the function, the activation found, its λ, whether it shifts
    "ReLU · 0.5": (lambda x: torch.relu(x) * 0.5, "relu", None, False),
    "ReLU6 / 6": (lambda x: torch.nn.functional.relu6(x) / 6, "clip", 1.0, False),
    "2 · QCFS": (lambda x: 2 * 1.5 / 4 * torch.clamp(torch.floor(x * 4 / 1.5 + 0.5), 0, 4), "qcfs", 3.0, False),
    "−ReLU": (lambda x: -torch.relu(x), "relu", None, False),
    "(ReLU + 1) · 2": (lambda x: (torch.relu(x) + 1) * 2, "relu", None, True),
    "1 − 2 · clip(x, 0, 6)": (lambda x: 1 - 2 * torch.clamp(x, 0, 6), "clip", 6.0, True),
    "BatchNorm after ReLU": (lambda: torch.nn.Sequential(torch.nn.ReLU(), _batchnorm(3)), "relu", None, True),
}


def _batchnorm(channels: int) -> torch.nn.BatchNorm2d:
    norm = torch.nn.BatchNorm2d(channels)
    with torch.no_grad():
        for tensor, low, high in [(norm.running_mean, -1, 1), (norm.running_var, 0.5, 2), (norm.weight, -2, 2), (norm.bias, -1, 1)]:
            tensor.uniform_(low, high)
    return norm.eval()


@pytest.mark.parametrize("dynamo", [False, True])
@pytest.mark.parametrize("padded_conv_after", [False, True])
@pytest.mark.parametrize("case", list(CASES))
def test_torch_exports_of_scaled_activations_agree_with_onnxruntime(tmp_path, case, padded_conv_after, dynamo):
    function, kind, lam, shifts = CASES[case]
    torch.manual_seed(0)
    function = function() if case == "BatchNorm after ReLU" else function  # a module, made after the seed
    path = tmp_path / "m.onnx"
    torch.onnx.export(_Net(function, padded_conv_after).eval(), (torch.rand(2, 2, 4, 4),), str(path), dynamo=dynamo,
                      input_names=["x"],
                      **({"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo else {"dynamic_axes": {"x": {0: "b"}}}))
    graph = canonicalise(import_onnx(path))
    act = next(n.op for n in graph.nodes.values() if isinstance(n.op, Activation))
    assert act.kind == kind and (lam is None or act.threshold == pytest.approx(lam, rel=1e-6))
    kinds = [type(n.op).__name__ for n in graph.nodes.values()]
    # A scale goes into the conv before; the map after the activation into the weights that read it, except a
    # shift read by a padded conv (its zero padding is not shifted), which stays as a depthwise 1×1 conv.
    standalone = ["Conv2d"] if shifts and padded_conv_after else []
    after = [*standalone, "Conv2d", "Activation"] if padded_conv_after else []
    assert kinds == ["Conv2d", "Activation", *after, "Flatten", "Affine"], kinds
    assert not any(isinstance(n.op, ChannelAffine) for n in graph.nodes.values())
    x = rand(32, 2, 4, 4, low=-4, high=4)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(evaluate_ann(graph, x), sess.run(None, {"x": x})[0], atol=1e-5, rtol=1e-5)


def test_a_shifted_relu_is_calibrated_on_the_relu_output_not_on_the_shifted_one(tmp_path):
    net = _Net(lambda x: (torch.relu(x) + 1) * 2).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(net, (torch.rand(2, 2, 4, 4),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "b"}})
    x = rand(64, 2, 4, 4, low=-4, high=4)
    graph = calibrate_thresholds(canonicalise(import_onnx(path)), onnx.load(str(path)), x, percentile=99.0, threads=1)
    [act] = [n.op for n in graph.nodes.values() if isinstance(n.op, Activation)]
    with torch.no_grad():
        relu = torch.relu(net.conv(torch.from_numpy(x))).numpy()
    assert act.threshold == pytest.approx(np.percentile(relu[relu > 0], 99.0), rel=1e-6)


@pytest.mark.parametrize("padded_conv_after", [False, True])
def test_loihi_precision_refuses_only_a_map_left_between_weights(tmp_path, padded_conv_after):
    torch.manual_seed(0)
    path = tmp_path / "m.onnx"
    torch.onnx.export(_Net(CASES["BatchNorm after ReLU"][0](), padded_conv_after).eval(), (torch.rand(2, 2, 4, 4),),
                      str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "b"}})
    x = rand(16, 2, 4, 4, low=-4, high=4)
    snn = lower_to_nir(calibrate_thresholds(canonicalise(import_onnx(path)), onnx.load(str(path)), x, threads=1), "if")
    if padded_conv_after:
        with pytest.raises(SnncError, match="weighted nodes 'function.1' and 'after.0' follow each other between neuron layers"):
            quantize_loihi(snn)
    else:
        assert quantize_loihi(snn).nodes


class _Residual(torch.nn.Module):
    """conv → ReLU → (conv + identity) → 2·clip(x, 0, 1) → flatten → linear: no weights compute the activation's input."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.fc = torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.Linear(48, 4)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        return self.fc(torch.flatten(2 * torch.clamp(self.conv2(x) + x, 0, 1), 1))


def test_a_scale_after_a_residual_add_goes_into_the_weights_after_the_activation(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "m.onnx"
    torch.onnx.export(_Residual().eval(), (torch.rand(2, 2, 4, 4),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "b"}})
    graph = canonicalise(import_onnx(path))
    clip = next(n for n in graph.nodes.values() if isinstance(n.op, Activation) and n.op.kind == "clip")
    assert clip.op.threshold == pytest.approx(1.0, rel=1e-6) and type(graph.nodes[clip.inputs[0]].op).__name__ == "Add"
    assert [type(graph.nodes[c].op).__name__ for c in graph.consumers(clip.name)] == ["Flatten"]
    x = rand(32, 2, 4, 4, low=-2, high=2)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(evaluate_ann(graph, x), sess.run(None, {"x": x})[0], atol=1e-5, rtol=1e-5)
