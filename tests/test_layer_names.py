"""Layer names: the NIR nodes, report rows and `snnc inspect` are named by the model's own module paths where the
exporter kept them (torch's legacy exporter in node names, dynamo in node metadata), and every node keeps the name
of the ONNX node it came from beside (NodeMeta.onnx_node). Without module paths, layers are numbered per kind."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from torch import nn
from torch.nn import functional as F

from benchmarks.coverage_models import ResNet18, seeded_model, ARCHITECTURES
from tests.onnx_models import Qcfs, model, rand
from toolchain.frontend import import_onnx, load_onnx
from toolchain.inspect import inspect_model
from toolchain.ir.metadata import NodeMeta
from toolchain.passes import calibrate_thresholds, canonicalise, expand_group_neurons, lower_to_nir
from toolchain.passes.portable_nir import portable_nir
from toolchain.report import layer_table
from toolchain.report.render import layer_rows

EXPORTERS = ("legacy", "dynamo")
IO = ("input", "output")


def export(net: nn.Module, shape, path, exporter: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.randn(2, *shape),), str(path), dynamo=exporter == "dynamo",
                          **({} if exporter == "dynamo" else {"input_names": ["x"], "dynamic_axes": {"x": {0: "b"}}}))
    return path


def snn(path, shape, neuron="if") -> nir.NIRGraph:
    graph = canonicalise(import_onnx(path, "spiking"))
    data = np.random.default_rng(0).normal(0, 1, (16, *shape)).astype(np.float32)
    return lower_to_nir(calibrate_thresholds(graph, load_onnx(path), data, 99.9, False, 1), neuron)


def onnx_names(path) -> set[str]:
    return {n.name for n in onnx.load(str(path)).graph.node}


def layers(graph: nir.NIRGraph) -> list[str]:
    return [name for name in graph.nodes if name not in IO]


class Block(nn.Module):
    """A residual block whose ReLUs are functional: they run in the block's own scope."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))) + x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.block = Block(4)
        self.head = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.head(self.block(F.relu(self.stem(x))).flatten(1))


@pytest.fixture(scope="module")
def resnets(tmp_path_factory):
    """The coverage matrix's ResNet-18 (torchvision's structure, small), exported both ways, as NIR graphs."""
    architecture = next(a for a in ARCHITECTURES if a.build is ResNet18)
    folder = tmp_path_factory.mktemp("resnet")
    found = {}
    for exporter in EXPORTERS:
        path = export(seeded_model(architecture), architecture.input_shape, folder / f"{exporter}.onnx", exporter)
        found[exporter] = (path, snn(path, architecture.input_shape))
    return found


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_a_resnet_is_named_by_its_module_paths(resnets, exporter):
    path, graph = resnets[exporter]
    names = layers(graph)
    expected = ["conv1", "relu", "maxpool", "fc", "readout"]
    for stage in range(1, 5):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            expected += [f"{prefix}.conv1", f"{prefix}.relu", f"{prefix}.conv2", f"{prefix}.relu_1"]
        if stage > 1:
            expected.append(f"layer{stage}.0.downsample.0")
    assert set(expected) <= set(names), sorted(set(expected) - set(names))
    # every other node is one the lowering added, named after its layer, or a layer without a module of its own
    others = [n for n in names if n not in expected]
    assert all(n.endswith("_scale") or n in ("avgpool", "flatten1") for n in others), others
    assert all(len(n) <= 24 and "/" not in n for n in names)
    kept = onnx_names(path)
    assert all(NodeMeta.of(graph.nodes[n]).onnx_node in kept for n in names)
    if exporter == "legacy":
        assert NodeMeta.of(graph.nodes["layer1.0.conv1"]).onnx_node == "/layer1/layer1.0/conv1/Conv"
        assert NodeMeta.of(graph.nodes["layer2.0.relu_1"]).onnx_node == "/layer2/layer2.0/relu_1/Relu"
    else:  # dynamo folds each BatchNorm into its convolution under the BatchNorm's scope; the conv keeps its name
        assert NodeMeta.of(graph.nodes["layer1.0.conv1"]).onnx_node.startswith("node_Conv")
        assert NodeMeta.of(graph.nodes["layer1.0.relu"]).onnx_node.startswith("node_relu")


def test_both_exporters_give_the_same_names(resnets):
    assert layers(resnets["legacy"][1]) == layers(resnets["dynamo"][1])


def test_the_report_and_the_nir_file_keep_names_and_onnx_nodes(resnets, tmp_path):
    path, graph = resnets["legacy"]
    rows = layer_table(graph)
    assert [r["name"] for r in rows][:3] == ["relu", "layer1.0.relu", "layer1.0.relu_1"]
    assert rows[1]["onnx_node"] == "/layer1/layer1.0/relu/Relu"
    header, table = layer_rows({"layers": rows})
    assert header[:2] == ["layer", "ONNX node"] and table[1][:2] == ["layer1.0.relu", "/layer1/layer1.0/relu/Relu"]
    nir.write(str(tmp_path / "model.nir"), graph)
    back = nir.read(str(tmp_path / "model.nir"))
    assert set(back.nodes) == set(graph.nodes)
    assert NodeMeta.of(back.nodes["layer3.1.conv2"]).onnx_node == "/layer3/layer3.1/conv2/Conv"


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_functional_relus_are_named_after_their_block_or_numbered(tmp_path, exporter):
    torch.manual_seed(0)
    path = export(Net().eval(), (1, 8, 8), tmp_path / "net.onnx", exporter)
    graph = snn(path, (1, 8, 8))
    names = layers(graph)
    assert [n for n in names if not n.endswith("_scale")] == [
        "stem", "if1", "block.conv1", "block.relu", "block.conv2", "block.relu_1", "flatten1", "head", "readout"]
    # the residual merge adds stem spikes to conv2's current: their amplitude is a Scale named after the layer
    assert "if1_scale" in names and ("if1", "if1_scale") in graph.edges
    kept = onnx_names(path)
    assert all(NodeMeta.of(graph.nodes[n]).onnx_node in kept for n in names)
    assert NodeMeta.of(graph.nodes["if1_scale"]).onnx_node == NodeMeta.of(graph.nodes["if1"]).onnx_node


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_a_qcfs_module_of_many_onnx_nodes_is_one_layer_named_by_its_module(tmp_path, exporter):
    torch.manual_seed(0)
    net = nn.Module()
    net.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), Qcfs(1.0), nn.AvgPool2d(2), nn.Conv2d(4, 4, 3, padding=1), Qcfs(1.5))
    net.classifier = nn.Linear(4 * 4 * 4, 10)
    net.forward = lambda x: net.classifier(net.features(x).flatten(1))
    path = export(net.eval(), (1, 8, 8), tmp_path / "qcfs.onnx", exporter)
    graph = snn(path, (1, 8, 8))
    assert layers(graph) == ["features.0", "features.1", "features.2", "features.3", "features.4", "flatten1", "classifier", "readout"]
    assert NodeMeta.of(graph.nodes["features.1"]).activation == "qcfs"
    assert NodeMeta.of(graph.nodes["features.1"]).onnx_node in onnx_names(path)


@pytest.mark.parametrize("exporter", EXPORTERS)
def test_a_module_wrapping_the_whole_model_is_left_out_of_the_names(tmp_path, exporter):
    """A model inside a wrapper (Sequential(net=...), a backbone attribute) gets the model's own names."""
    torch.manual_seed(0)
    wrapped = nn.Sequential()
    wrapped.add_module("net", Net())
    path = export(wrapped.eval(), (1, 8, 8), tmp_path / "wrapped.onnx", exporter)
    names = [n for n in layers(snn(path, (1, 8, 8))) if not n.endswith("_scale")]
    assert names == ["stem", "if1", "block.conv1", "block.relu", "block.conv2", "block.relu_1", "flatten1", "head", "readout"]


def test_group_members_and_portable_nodes_are_named_after_their_layer(tmp_path):
    torch.manual_seed(0)
    path = export(Net().eval(), (1, 8, 8), tmp_path / "net.onnx", "legacy")
    graph = snn(path, (1, 8, 8), "gn")
    expanded = expand_group_neurons(graph)
    members = [n for n, node in expanded.nodes.items() if NodeMeta.of(node).group == "block.relu"]
    assert members and all(m.startswith("block.relu.m") for m in members)
    assert {NodeMeta.of(expanded.nodes[m]).onnx_node for m in members} == {"/block/Relu"}
    portable = portable_nir(snn(path, (1, 8, 8), "if"))
    assert {"block.relu", "block.relu_reset"} <= set(portable.nodes)
    assert NodeMeta.of(portable.nodes["block.relu_reset"]).onnx_node == "/block/Relu"


def test_layers_without_module_paths_are_numbered_per_kind(zoo, tmp_path):
    """A plain top-level nn.Sequential (the zoo's dynamo exports) has positions, not names; hand-made nodes
    ('fc1', 'node_Conv_0') have no module path at all."""
    graph = snn(zoo / "digits_cnn_qcfs8.onnx", (1, 8, 8))
    assert layers(graph) == ["conv1", "if1", "conv2", "if2", "pool1", "flatten1", "fc1", "if3", "fc2", "readout"]
    assert NodeMeta.of(graph.nodes["if1"]).onnx_node == "node_mul_20"
    torch.manual_seed(0)
    sequential = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    for exporter in EXPORTERS:
        path = export(sequential, (1, 8, 8), tmp_path / f"{exporter}.onnx", exporter)
        assert layers(snn(path, (1, 8, 8))) == ["flatten1", "fc1", "if1", "fc2", "readout"]


def test_dynamo_namespace_alone_gives_the_module_path(tmp_path):
    """Files whose nodes carry only the `namespace` entry (no name_scopes) still give module paths; a module named
    like one of snnc's own nodes (input, output, readout) gets a suffix."""
    def node(op, inputs, outputs, name, namespace):
        made = helper.make_node(op, inputs, outputs, name=name)
        made.metadata_props.add(key="namespace", value=namespace)
        return made

    root = ": mymodels.Net"
    nodes = [node("Gemm", ["x", "w1"], ["h"], "node_linear", f"{root}/encoder: torch.nn.Sequential/encoder.0: torch.nn.Linear/linear: aten.linear.default"),
             node("Relu", ["h"], ["r"], "node_relu", f"{root}/encoder: torch.nn.Sequential/encoder.1: torch.nn.ReLU/relu: aten.relu.default"),
             node("Gemm", ["r", "w2"], ["y"], "node_linear_1", f"{root}/readout: torch.nn.Linear/linear_1: aten.linear.default")]
    path = tmp_path / "namespace.onnx"
    model(nodes, (6,), (3,), {"w1": rand(6, 5), "w2": rand(5, 3, seed=1)}, path=path)
    graph = snn(path, (6,))
    assert layers(graph) == ["encoder.0", "encoder.1", "readout_1", "readout"]  # snnc's own names stay snnc's
    assert NodeMeta.of(graph.nodes["encoder.1"]).onnx_node == "node_relu"


def test_inspect_shows_the_layer_names(tmp_path):
    torch.manual_seed(0)
    path = export(Net().eval(), (1, 8, 8), tmp_path / "net.onnx", "legacy")
    text, converts = inspect_model(str(path))
    assert converts
    canonical = text.split("canonical graph")[1]
    assert "| block.relu_1 " in canonical and "/block/Relu_1" in canonical and "| stem " in canonical
