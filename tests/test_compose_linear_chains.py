"""compose_linear_chains against running the chain node by node: each composed pair computes what the two nodes
compute, the composed networks fire the same spikes in every layer, and Lava runs the exported architectures that
put linear maps in a row (SqueezeNet's concatenations before max pooling, DenseNet's concatenations before
BatchNorm, MobileNetV2's linear bottlenecks)."""

import nir
import numpy as np
import pytest
import torch

from benchmarks.coverage import EXPORTS, inputs
from benchmarks.coverage_models import ARCHITECTURES, seeded_model
from targets.lava import run_lava
from targets.reference import ReferenceRuntime
from toolchain.ir.kernels import apply_linear, linear_parameters
from toolchain.ir.order import input_side_nodes
from toolchain.passes import calibrate_thresholds, compose_linear_chains, lower_to_nir, quantize_loihi
from toolchain.passes.compose_linear_chains import compose
from toolchain.passes.quantize_loihi import WEIGHTED
from toolchain.pipeline import import_model
from toolchain.report import compare_runs

RNG = np.random.default_rng(0)


def _conv(cin, cout, kernel, stride=1, padding=0, groups=1, bias=True, hw=(6, 6)):
    return nir.Conv2d(input_shape=np.array(hw), weight=RNG.standard_normal((cout, cin // groups, kernel, kernel)).astype(np.float32),
                      stride=np.array([stride, stride]), padding=np.array([padding, padding]), dilation=np.array([1, 1]),
                      groups=groups, bias=(RNG.standard_normal(cout) if bias else np.zeros(cout)).astype(np.float32))


def _channel_scale(shape):
    return nir.Scale(scale=np.broadcast_to(RNG.uniform(-2, 2, (shape[0], 1, 1)), shape).astype(np.float32).copy())


def _affine(cin, cout):
    return nir.Affine(weight=RNG.standard_normal((cout, cin)).astype(np.float32), bias=RNG.standard_normal(cout).astype(np.float32))


EXACT = {
    "channel scale → depthwise conv": (_channel_scale((4, 6, 6)), _conv(4, 4, 3, padding=1, groups=4), (4, 6, 6)),
    "padded conv → 1×1 conv": (_conv(3, 5, 3, padding=1), _conv(5, 4, 1), (3, 6, 6)),
    "biased 1×1 conv → strided unpadded conv": (_conv(3, 5, 1), _conv(5, 4, 3, stride=2), (3, 6, 6)),
    "bias-free 1×1 conv → padded grouped conv": (_conv(4, 6, 1, bias=False), _conv(6, 6, 3, padding=1, groups=2), (4, 6, 6)),
    "grouped 1×1 conv → 1×1 conv": (_conv(4, 4, 1, groups=2), _conv(4, 3, 1), (4, 6, 6)),
    "conv → channel scale": (_conv(3, 5, 3, padding=1), _channel_scale((5, 6, 6)), (3, 6, 6)),
    "affine → affine": (_affine(7, 5), _affine(5, 3), (7,)),
    "scale → affine": (nir.Scale(scale=RNG.uniform(-2, 2, 7).astype(np.float32)), _affine(7, 3), (7,)),
    "affine → scale": (_affine(7, 5), nir.Scale(scale=RNG.uniform(-2, 2, 5).astype(np.float32)), (7,)),
}


def _apply(node, x):
    out = apply_linear(node, linear_parameters(node, torch.float64), x)
    return out if not isinstance(node, nir.Scale) else x * linear_parameters(node, torch.float64)["scale"]


@pytest.mark.parametrize("case", EXACT)
def test_a_composed_pair_computes_the_chain(case):
    first, second, shape = EXACT[case]
    x = torch.from_numpy(RNG.standard_normal((3, *shape)))
    composed = compose(first, second)
    bias_of_second = torch.from_numpy(np.asarray(getattr(second, "bias", 0.0), np.float64))
    expected = _apply(second, _apply(first, x))
    got = _apply(composed, x) + (bias_of_second.reshape(-1, *[1] * (len(shape) - 1)) if len(shape) > 1 else bias_of_second)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


def test_what_has_no_exact_single_node_is_left():
    """A biased 1×1 conv before a padded conv (the border reads zeros, not the bias), two 3×3 convs, a per-position
    scale before a conv."""
    position_scale = nir.Scale(scale=RNG.uniform(0.5, 2, (3, 6, 6)).astype(np.float32))
    assert compose(_conv(3, 5, 1), _conv(5, 4, 3, padding=1)) is None
    assert compose(_conv(3, 5, 3, padding=1), _conv(5, 4, 3, padding=1)) is None
    assert compose(position_scale, _conv(3, 4, 1)) is None


def _network(name, tmp_path, neuron="if"):
    architecture = next(a for a in ARCHITECTURES if a.name == name)
    path = tmp_path / "model.onnx"
    EXPORTS[2].write(seeded_model(architecture), torch.from_numpy(inputs(architecture, 2, 1)), path)
    imported = import_model(path)
    graph = calibrate_thresholds(imported.graph, imported.model, inputs(architecture, 32, 2), threads=1)
    return lower_to_nir(graph, neuron, {}), inputs(architecture, 3, 3)


def _chip_chains(graph) -> list:
    host = input_side_nodes(graph)
    return [(a, b) for a, b in graph.edges if a not in host and isinstance(graph.nodes[a], WEIGHTED)
            and isinstance(graph.nodes[b], WEIGHTED)]


@pytest.mark.parametrize("name", ["SqueezeNet 1.1", "DenseNet", "MobileNetV2"])
def test_composed_networks_fire_the_same_spikes(name, tmp_path):
    snn, x = _network(name, tmp_path)
    composed = compose_linear_chains(snn)
    assert _chip_chains(snn) and not _chip_chains(composed)
    before, after = ReferenceRuntime(snn, threads=1).run(x, 6), ReferenceRuntime(composed, threads=1).run(x, 6)
    assert sum(before.spikes.values()) > 0 and before.spikes == after.spikes
    np.testing.assert_allclose(after.readout, before.readout, rtol=1e-4, atol=1e-4)


def test_lava_runs_squeezenet_concatenations_before_max_pooling(tmp_path):
    """Before the pass, Loihi precision refused this network (two weighted nodes in a row); now each max pool reads
    the neurons of one branch and Lava's fixed_pt run is bit-exact against the reference."""
    snn, x = _network("SqueezeNet 1.1", tmp_path)
    graph = quantize_loihi(compose_linear_chains(snn))
    lava, reference = run_lava(graph, x[:2], 4, "fixed_pt"), ReferenceRuntime(graph, threads=1).run(x[:2], 4)
    assert sum(reference.spikes.values()) > 0
    check = compare_runs("lava", lava, reference, exact=True)
    assert check["passed"], check
