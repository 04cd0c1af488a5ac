"""Per-op import tests: the canonical ANN graph must compute what onnxruntime computes on the same model."""

from pathlib import Path

import numpy as np
import nir
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper

from toolchain.ir.evaluate import evaluate_ann
from tests.onnx_models import model, rand
from toolchain.errors import SnncError
from toolchain.frontend import import_onnx
from toolchain.graph import Activation
from toolchain.passes import canonicalise


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def _check(tmp_path, proto, x, maxpool="error", atol=1e-5):
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    graph = canonicalise(import_onnx(path, maxpool))
    ours = evaluate_ann(graph, x)
    np.testing.assert_allclose(ours, _ort(path, x).reshape(ours.shape), atol=atol, rtol=1e-5)
    return graph


CONV_CASES = [
    dict(strides=[1, 1], pads=[1, 1, 1, 1]),
    dict(strides=[2, 1], pads=[0, 2, 0, 2], dilations=[1, 2]),
    dict(strides=[1, 1], pads=[1, 1, 1, 1], group=2),
    dict(strides=[2, 2], auto_pad="SAME_UPPER", kernel=3),
    dict(strides=[1, 1], auto_pad="VALID"),
    dict(strides=[1, 1], pads=[0, 1, 2, 0]),  # asymmetric: symmetric padding plus zero taps
    dict(strides=[2, 2], auto_pad="SAME_UPPER", kernel=2),  # an odd total: the extra pad at the end
    dict(strides=[2, 2], auto_pad="SAME_LOWER", kernel=2, group=2),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv(tmp_path, case):
    case = dict(case)
    kernel = case.pop("kernel", 3)
    group = case.get("group", 1)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], **case)]
    x = rand(3, 4, 9, 9)
    w, b = rand(6, 4 // group, kernel, kernel, seed=1), rand(6, seed=2)
    _check(tmp_path, model(nodes, (4, 9, 9), None, {"w": w, "b": b}), x)


@pytest.mark.parametrize("trans_b,alpha,beta", [(0, 1.0, 1.0), (1, 0.5, 2.0)])
def test_gemm(tmp_path, trans_b, alpha, beta):
    w = rand(5, 7, seed=1) if trans_b else rand(7, 5, seed=1)
    nodes = [helper.make_node("Gemm", ["x", "w", "c"], ["y"], transB=trans_b, alpha=alpha, beta=beta)]
    _check(tmp_path, model(nodes, (7,), (5,), {"w": w, "c": rand(5, seed=3)}), rand(4, 7))


def test_matmul_plus_bias_folds_into_one_affine(tmp_path):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["y"])]
    graph = _check(tmp_path, model(nodes, (6,), (3,), {"w": rand(6, 3), "b": rand(3, seed=5)}), rand(4, 6))
    assert len(graph.nodes) == 1


def test_batchnorm_after_conv_is_folded_and_standalone_becomes_depthwise(tmp_path):
    c = 4
    bn = {"g": rand(c, seed=1, low=0.5, high=2), "be": rand(c, seed=2), "m": rand(c, seed=3), "v": rand(c, seed=4, low=0.5, high=2)}
    nodes = [
        helper.make_node("BatchNormalization", ["x", "g", "be", "m", "v"], ["n0"], epsilon=1e-3),  # standalone
        helper.make_node("Conv", ["n0", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["y"], epsilon=1e-3),  # folded
    ]
    graph = _check(tmp_path, model(nodes, (c, 5, 5), None, {**bn, "w": rand(c, c, 3, 3, seed=7)}), rand(2, c, 5, 5))
    assert len(graph.nodes) == 2


def test_relu_clip_and_per_channel_mul(tmp_path):
    nodes = [
        helper.make_node("Mul", ["x", "s"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Conv", ["r", "w"], ["c"]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["y"]),
    ]
    inits = {"s": rand(3, 1, 1, seed=1), "w": rand(2, 3, 1, 1, seed=2), "lo": np.array(0, np.float32), "hi": np.array(0.4, np.float32)}
    graph = _check(tmp_path, model(nodes, (3, 4, 4), None, inits), rand(2, 3, 4, 4))
    kinds = [n.op.kind for n in graph.nodes.values() if isinstance(n.op, Activation)]
    assert kinds == ["relu", "clip"]
    assert graph.nodes[graph.output].op.threshold == pytest.approx(0.4)


class _QCFS(torch.nn.Module):
    def __init__(self, levels, lam, straight_through):
        super().__init__()
        self.levels, self.lam, self.straight_through = levels, torch.nn.Parameter(torch.tensor(lam)), straight_through

    def forward(self, x):
        y = x / self.lam * self.levels + 0.5
        y = y + (torch.floor(y) - y).detach() if self.straight_through else torch.floor(y)
        return torch.clamp(y / self.levels, 0, 1) * self.lam


@pytest.mark.parametrize("dynamo", [True, False])
@pytest.mark.parametrize("levels,lam,straight_through", [(8, 1.5, False), (4, 2.75, True), (16, 0.6, False)])
def test_qcfs_recovered_from_torch_export(tmp_path, dynamo, levels, lam, straight_through):
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), _QCFS(levels, lam, straight_through), torch.nn.Flatten(), torch.nn.Linear(12, 4)).eval()
    path = tmp_path / "q.onnx"
    kwargs = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo else {"dynamic_axes": {"x": {0: "b"}}}
    torch.onnx.export(net, (torch.rand(2, 2, 4, 4),), str(path), dynamo=dynamo, input_names=["x"], **kwargs)
    graph = canonicalise(import_onnx(path))
    act = next(n.op for n in graph.nodes.values() if isinstance(n.op, Activation))
    assert (act.kind, act.levels) == ("qcfs", levels)
    assert act.threshold == pytest.approx(lam, rel=1e-6)
    x = rand(16, 2, 4, 4, low=-3, high=3)
    np.testing.assert_allclose(evaluate_ann(graph, x), _ort(path, x), atol=1e-5)


@pytest.mark.parametrize("pads", [[1, 1, 1, 1], [0, 0, 1, 1], [1, 0, 0, 2]])
@pytest.mark.parametrize("include_pad", [0, 1])
def test_average_pool_with_padding(tmp_path, include_pad, pads):
    nodes = [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=pads, count_include_pad=include_pad)]
    _check(tmp_path, model(nodes, (2, 7, 8), None), rand(3, 2, 7, 8))


def test_average_pool_in_ceil_mode(tmp_path):
    nodes = [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)]
    graph = _check(tmp_path, model(nodes, (2, 8, 9), None), rand(3, 2, 8, 9))
    assert graph.nodes[graph.output].shape == (2, 4, 4)


def test_global_average_pool_flatten_gemm(tmp_path):
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["y"], transB=1),
    ]
    _check(tmp_path, model(nodes, (3, 5, 5), (2,), {"w": rand(2, 3)}), rand(4, 3, 5, 5))


def test_reshape_squeeze_dropout_identity_softmax(tmp_path):
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["g"]),
        helper.make_node("Squeeze", ["g", "axes"], ["s"]),
        helper.make_node("Dropout", ["s"], ["d"]),
        helper.make_node("Identity", ["d"], ["i"]),
        helper.make_node("Reshape", ["i", "shape"], ["r"]),
        helper.make_node("Gemm", ["r", "w"], ["z"]),
        helper.make_node("Softmax", ["z"], ["y"], axis=1),
    ]
    inits = {"axes": np.array([2, 3]), "shape": np.array([-1, 3]), "w": rand(3, 4)}
    path = tmp_path / "m.onnx"
    onnx.save(model(nodes, (3, 5, 5), (4,), inits), str(path))
    graph = canonicalise(import_onnx(path))
    x = rand(5, 3, 5, 5)
    logits = evaluate_ann(graph, x)
    assert (logits.argmax(1) == _ort(path, x).argmax(1)).all()  # Softmax dropped at the output keeps the argmax


def test_residual_add_and_concat(tmp_path):
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["b"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["b", "r"], ["s"]),
        helper.make_node("Concat", ["s", "r"], ["y"], axis=1),
    ]
    _check(tmp_path, model(nodes, (2, 4, 4), None, {"w1": rand(3, 2, 3, 3, seed=1), "w2": rand(3, 3, 3, 3, seed=2)}), rand(2, 2, 4, 4))


@pytest.mark.parametrize("pads,ceil_mode", [([0, 0, 0, 0], 0), ([1, 1, 1, 1], 0), ([0, 0, 1, 1], 0), ([2, 0, 0, 1], 0),
                                            ([0, 0, 0, 0], 1), ([1, 1, 1, 1], 1)])
def test_maxpool_kept_by_default_against_onnxruntime(tmp_path, pads, ceil_mode):
    """Padding never wins, also where it is asymmetric (AlexNet's and Inception's [0, 0, 1, 1]) or ceil mode adds some."""
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=pads, ceil_mode=ceil_mode)]
    _check(tmp_path, model(nodes, (2, 8, 9), None), rand(3, 2, 8, 9) - 0.5, maxpool="spiking")


@pytest.mark.parametrize("groups", [2, 4])
def test_channel_shuffle_becomes_a_permutation(tmp_path, groups):
    """ShuffleNet's Reshape (C,H,W) → (g, C/g, H, W), Transpose of the two channel axes, Reshape back: exact."""
    c = 8
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"]),
        helper.make_node("Reshape", ["a", "split"], ["s"]),
        helper.make_node("Transpose", ["s"], ["t"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["t", "merge"], ["m"]),
        helper.make_node("Conv", ["m", "w2"], ["y"], group=2),
    ]
    consts = {"w": rand(c, 3, 1, 1), "w2": rand(c, c // 2, 3, 3, seed=2),
              "split": np.array([0, groups, c // groups, 5, 5]), "merge": np.array([0, c, 5, 5])}
    graph = _check(tmp_path, model(nodes, (3, 5, 5), None, consts, opset=13), rand(2, 3, 5, 5))
    assert sum(isinstance(n.op, nir.Conv2d) for n in graph.nodes.values()) == 3  # the permutation is a 1×1 conv


def test_reshape_splitting_channels_without_a_shuffle_is_one_line(tmp_path):
    nodes = [helper.make_node("Reshape", ["x", "split"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    path = tmp_path / "m.onnx"
    onnx.save(model(nodes, (4, 3, 3), None, {"split": np.array([0, 2, 2, 3, 3])}, opset=13), str(path))
    with pytest.raises(SnncError, match=r"node .* \(Relu\): input 's' splits the channels.*channel shuffle") as err:
        import_onnx(path)
    assert "\n" not in str(err.value)


def test_maxpool_refused_or_replaced_on_request(tmp_path):
    nodes = [helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    path = tmp_path / "m.onnx"
    onnx.save(model(nodes, (1, 4, 4), None), str(path))
    with pytest.raises(SnncError, match="--maxpool avg"):
        import_onnx(path, maxpool="error")
    graph = canonicalise(import_onnx(path, maxpool="avg"))
    x = rand(1, 1, 4, 4)
    expected = x.reshape(1, 1, 2, 2, 2, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(evaluate_ann(graph, x), expected, atol=1e-6)
    assert any("MaxPool" in note for note in graph.notes)


@pytest.mark.parametrize("case", [
    "test_Conv2d", "test_Conv2d_groups", "test_Conv2d_padding", "test_Conv2d_strided", "test_Conv2d_dilated",
    "test_Conv2d_no_bias", "test_Conv2d_depthwise_padded", "test_Conv2d_depthwise_with_multiplier",
    "test_AvgPool2d", "test_AvgPool2d_stride", "test_BatchNorm2d_eval", "test_BatchNorm2d_momentum_eval",
    "test_Linear", "test_Linear_no_bias", "test_ReLU",
])
def test_onnx_backend_models(case):
    """onnx's own test models (random weights, reference outputs computed by PyTorch)."""
    root = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted" / case
    proto = onnx.load(str(root / "model.onnx"))
    data = root / "test_data_set_0"
    x = onnx.numpy_helper.to_array(onnx.load_tensor(str(data / "input_0.pb")))
    expected = onnx.numpy_helper.to_array(onnx.load_tensor(str(data / "output_0.pb")))
    graph = canonicalise(import_onnx(root / "model.onnx", model=_with_symbolic_batch(proto)))
    np.testing.assert_allclose(evaluate_ann(graph, x), expected, atol=1e-4, rtol=1e-4)


def _with_symbolic_batch(proto):
    from toolchain.frontend.onnx_load import OPSETS

    proto = onnx.shape_inference.infer_shapes(proto)
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version not in OPSETS:
            opset.version = OPSETS.start
    return proto


@pytest.mark.parametrize("op", ["Sum", "Mean"])
def test_sum_and_mean_of_several_inputs(tmp_path, op):
    """ResNet-50's residual merge as the opset-9 model zoo writes it: Sum of several branches, then ReLU."""
    weights = {f"w{k}": rand(3, 3, 1, 1) for k in range(3)}
    nodes = [helper.make_node("Conv", ["x", f"w{k}"], [f"c{k}"]) for k in range(3)]
    nodes += [helper.make_node(op, ["c0", "c1", "c2"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    _check(tmp_path, model(nodes, (3, 4, 4), (3, 4, 4), weights, opset=9), rand(2, 3, 4, 4))


@pytest.mark.parametrize("opset", [7, 8, 10])
def test_old_opsets_are_upgraded_with_the_legacy_shape_arithmetic(tmp_path, opset):
    """Conv, BatchNormalization, AveragePool, Dropout with its ratio attribute, the legacy exporter's
    x.view(x.size(0), -1) (Shape, Gather, Unsqueeze with axes as an attribute, Concat, Reshape) and a Gemm that
    opsets below 11 require to have C."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["bn"], epsilon=1e-5),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("AveragePool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Dropout", ["p"], ["d"], ratio=0.5),
        helper.make_node("Shape", ["d"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n"], ["n1"], axes=[0]),
        helper.make_node("Concat", ["n1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["d", "shape"], ["f"]),
        helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], transB=1),
    ]
    weights = {"w1": rand(4, 2, 3, 3), "b1": rand(4), "g": rand(4, low=0.5), "be": rand(4), "m": rand(4),
               "v": rand(4, low=0.5, high=2), "zero": np.array(0, np.int64), "minus1": np.array([-1], np.int64),
               "w2": rand(5, 36), "b2": rand(5)}
    graph = _check(tmp_path, model(nodes, (2, 6, 6), (5,), weights, opset=opset), rand(3, 2, 6, 6, seed=1))
    assert f"ONNX opset {opset} upgraded to 11 with onnx.version_converter" in graph.notes


LIGHT = sorted((Path(onnx.__file__).parent / "backend/test/data/light").glob("light_*.onnx"))
WITH_LRN = {"light_bvlc_alexnet", "light_inception_v1", "light_zfnet512"}


@pytest.mark.parametrize("path", LIGHT, ids=lambda p: p.stem)
def test_model_zoo_light_models_read_as_given(path):
    """The opset-9 topologies shipped in the onnx wheel: upgraded, and LRN refused in one line unless dropped."""
    if path.stem in WITH_LRN:
        with pytest.raises(SnncError, match=r"node '\w+' \(LRN\).*--drop-lrn") as err:
            import_onnx(path, "avg")
        assert "\n" not in str(err.value)
    graph = canonicalise(import_onnx(path, "avg", drop_lrn=True))
    assert "ONNX opset 9 upgraded to 11 with onnx.version_converter" in graph.notes
    assert (path.stem in WITH_LRN) == any("--drop-lrn" in n for n in graph.notes)


# VGG-19 is left out for time (20 s); it has nothing the others lack
@pytest.mark.parametrize("path", [p for p in LIGHT if p.stem != "light_vgg19"], ids=lambda p: p.stem)
def test_model_zoo_light_models_agree_with_onnxruntime(path):
    """The rewritten graph, max pooling kept, computes the file's logits (with LRN dropped there too)."""
    graph = canonicalise(import_onnx(path, drop_lrn=True))
    proto = onnx.load(str(path))
    for node in proto.graph.node:
        if node.op_type == "LRN":
            node.op_type = "Identity"
            del node.attribute[:]
    for softmax in (n for n in proto.graph.node if n.op_type == "Softmax"):  # snnc drops it: compare the logits
        proto.graph.output.insert(0, helper.make_tensor_value_info(softmax.input[0], onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rand(1, *graph.input_shape)
    reference = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    ours = evaluate_ann(graph, x).reshape(reference.shape)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4 * np.abs(reference).max())


@pytest.mark.parametrize("op", ["Sigmoid", "Tanh", "Gelu", "HardSwish", "LeakyRelu", "Mish"])
def test_ops_without_a_spiking_equivalent_are_one_line_errors(tmp_path, op):
    path = tmp_path / "m.onnx"
    onnx.save(model([helper.make_node(op, ["x"], ["y"], name="act")], (4,), (4,), opset=20), str(path))
    with pytest.raises(SnncError, match=rf"node 'act' \({op}\) has no spiking equivalent.*retrain") as err:
        import_onnx(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceSum"])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("opset", [13, 18])  # axes an attribute, then an input
def test_spatial_reduction_is_global_pooling(tmp_path, op, keepdims, opset):
    """What the default (dynamo) exporter writes for AdaptiveAvgPool2d((1, 1)) and x.mean((2, 3))."""
    consts = {"axes": np.array([-2, -1])} if opset >= 18 or op == "ReduceSum" else {}
    inputs, attrs = (["r", "axes"], {}) if consts else (["r"], {"axes": [2, 3]})
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node(op, inputs, ["p"], keepdims=keepdims, **attrs)]
    if keepdims:
        nodes.append(helper.make_node("Flatten", ["p"], ["f"]))
    nodes.append(helper.make_node("Gemm", ["f" if keepdims else "p", "w"], ["y"], transB=1))
    _check(tmp_path, model(nodes, (3, 5, 4), (2,), {**consts, "w": rand(2, 3)}, opset=opset), rand(4, 3, 5, 4))


def test_reduction_over_channels_is_one_line(tmp_path):
    nodes = [helper.make_node("ReduceMean", ["x"], ["y"], axes=[1], keepdims=1, name="mean_c")]
    path = tmp_path / "m.onnx"
    onnx.save(model(nodes, (3, 4, 4), (1, 4, 4), opset=13), str(path))
    with pytest.raises(SnncError, match=r"node 'mean_c' \(ReduceMean\).*reduces axes \[1\].*spatial axes") as err:
        import_onnx(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("axis", [1, 2, 3, -1])
def test_flatten_at_an_axis_after_size_one_axes(tmp_path, axis):
    """Leading per-sample axes of size 1 (a one-channel, one-row map): flattening from any axis gives (batch, 6)."""
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=axis), helper.make_node("Gemm", ["f", "w"], ["y"], transB=1)]
    _check(tmp_path, model(nodes, (1, 1, 6), (3,), {"w": rand(3, 6)}, opset=13), rand(4, 1, 1, 6))


def test_flatten_that_mixes_the_batch_is_one_line(tmp_path):
    nodes = [helper.make_node("Flatten", ["x"], ["y"], axis=2, name="flat")]
    path = tmp_path / "m.onnx"
    onnx.save(model(nodes, (3, 4, 4), None, opset=13), str(path))
    with pytest.raises(SnncError, match=r"node 'flat' \(Flatten\).*mix the batch"):
        import_onnx(path)


# (map side, pooled side): the 1×1 map is VGG's on a 32×32 input; 2→4 has two copies per bin; 2→3, 5→3 and
# 10→7 have bins of different sizes that overlap (which the legacy exporter cannot export)
@pytest.mark.parametrize("side,pooled", [(1, 7), (1, 3), (2, 4), (2, 3), (5, 3), (10, 7)])
def test_adaptive_average_pool_to_a_larger_map_folds_into_the_gemm(tmp_path, side, pooled):
    """The default exporter writes AdaptiveAvgPool2d from a smaller map as Transpose, GatherND, Transpose,
    ReduceMean, and with overlapping bins as Transpose, GatherND, Transpose, Where (masking each bin's unused taps),
    Gathers of each tap, Adds and a Div by the bin sizes: a linear function of the map, which the following Gemm
    takes in its weights (exact)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d((pooled, pooled)),
                              torch.nn.Flatten(), torch.nn.Linear(3 * pooled * pooled, 4)).eval()
    path = tmp_path / "pool.onnx"
    torch.onnx.export(net, (torch.rand(2, 2, side, side),), str(path), dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},))
    assert "GatherND" in {n.op_type for n in onnx.load(str(path)).graph.node}
    graph = canonicalise(import_onnx(path))
    x = rand(5, 2, side, side, low=-2, high=2)
    np.testing.assert_allclose(evaluate_ann(graph, x), _ort(path, x), atol=1e-5, rtol=1e-5)


def test_adaptive_average_pool_of_a_wide_map_folds_per_channel(tmp_path):
    """VGG-16's 512 channels on a 2×2 map (a 64×64 input) pooled to 7×7: the positions move alike in every channel,
    so the fold keeps one channel's coefficients (all channels' together would need 2·10⁸)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 512, 1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d((7, 7)),
                              torch.nn.Flatten(), torch.nn.Linear(512 * 49, 4)).eval()
    path = tmp_path / "wide.onnx"
    torch.onnx.export(net, (torch.rand(2, 3, 2, 2),), str(path), dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},))
    graph = canonicalise(import_onnx(path))
    x = rand(3, 3, 2, 2, low=-2, high=2)
    np.testing.assert_allclose(evaluate_ann(graph, x), _ort(path, x), atol=1e-5, rtol=1e-4)


class _ChannelsLast(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.linear = torch.nn.Conv2d(2, 64, 3, padding=1), torch.nn.Linear(64 * 36, 5)

    def forward(self, x):
        return self.linear(torch.relu(self.conv(x)).permute(0, 2, 3, 1).flatten(1))


@pytest.mark.parametrize("dynamo", [False, True])
def test_channels_last_flatten_folds_into_the_gemm(tmp_path, dynamo):
    """Transpose to (N, H, W, C), then Flatten (legacy) or Reshape (dynamo) and a Gemm, as models ported from
    channels-last frameworks flatten: the Gemm's weights take the channels-first order (exact)."""
    torch.manual_seed(0)
    path = tmp_path / "nhwc.onnx"
    kwargs = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo else {"dynamic_axes": {"x": {0: "b"}}}
    torch.onnx.export(_ChannelsLast().eval(), (torch.rand(2, 2, 6, 6),), str(path), dynamo=dynamo, input_names=["x"], **kwargs)
    graph = canonicalise(import_onnx(path))
    x = rand(3, 2, 6, 6, low=-2, high=2)
    np.testing.assert_allclose(evaluate_ann(graph, x), _ort(path, x), atol=1e-5, rtol=1e-4)


def test_transpose_of_a_feature_map_not_ending_in_a_gemm_is_one_line(tmp_path):
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Relu", ["t"], ["y"], name="relu_after")]
    path = tmp_path / "m.onnx"
    onnx.save(model(nodes, (3, 4, 4), (4, 4, 3), opset=13), str(path))
    with pytest.raises(SnncError, match=r"node 'relu_after' \(Relu\).*folds that only into a following Gemm") as err:
        import_onnx(path)
    assert "\n" not in str(err.value)


def test_silu_is_named_in_the_sigmoid_error(tmp_path):
    """Both exporters write torch's SiLU as Sigmoid then Mul; the error says so."""
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.SiLU(), torch.nn.Linear(4, 2)).eval()
    path = tmp_path / "silu.onnx"
    torch.onnx.export(net, (torch.rand(2, 4),), str(path), dynamo=False)
    with pytest.raises(SnncError, match=r"\(Sigmoid\) has no spiking equivalent.*SiLU is exported as Sigmoid") as err:
        import_onnx(path)
    assert "\n" not in str(err.value)


class _Reshaping(torch.nn.Module):
    """Layers used after reshapes that keep each sample's values, as `forward` (one entry of RESHAPING) does."""

    def __init__(self, forward):
        super().__init__()
        torch.manual_seed(0)
        self.hidden, self.conv, self.linear = torch.nn.Linear(6, 5), torch.nn.Conv2d(5, 3, 1), torch.nn.Linear(4, 3)
        self.mix = torch.nn.Parameter(torch.randn(5, 3))
        self.pattern = forward

    def forward(self, x):
        return self.pattern(self, x)


# name: (per-sample input shape, forward)
RESHAPING = {
    "classifier as a 1×1 conv after view(N, C, 1, 1)": (
        (6,), lambda m, x: torch.flatten(m.conv(torch.relu(m.hidden(x)).view(x.shape[0], 5, 1, 1)), 1)),
    "classifier as a 1×1 conv between unsqueezes and squeezes": (
        (6,), lambda m, x: m.conv(torch.relu(m.hidden(x)).unsqueeze(-1).unsqueeze(-1)).squeeze(-1).squeeze(-1)),
    "nn.Linear on (N, 1, C)": ((4,), lambda m, x: torch.relu(m.linear(x.unsqueeze(1))).squeeze(1)),
    "nn.Linear on the positions of each channel, (N, C, H·W)": ((3, 2, 2), lambda m, x: m.linear(x.flatten(2)).flatten(1)),
    "constant @ (N, C, H·W), mixing channels": ((3, 2, 2), lambda m, x: torch.relu(m.mix @ x.flatten(2)).flatten(1)),
}


@pytest.mark.parametrize("dynamo", [False, True])
@pytest.mark.parametrize("pattern", RESHAPING.values(), ids=RESHAPING.keys())
def test_reshapes_that_keep_each_sample_agree_with_onnxruntime(tmp_path, pattern, dynamo):
    """Unsqueeze, Squeeze, Reshape and Flatten that only regroup a sample's values are kept on the flat graph node;
    a Conv of a 1×1 view, a MatMul with more axes than (batch, features) and bias Adds read it so (exact)."""
    shape, forward = pattern
    path = tmp_path / "reshaping.onnx"
    kwargs = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo else {"dynamic_axes": {"x": {0: "b"}}}
    torch.onnx.export(_Reshaping(forward).eval(), (torch.rand(2, *shape),), str(path), dynamo=dynamo, input_names=["x"], **kwargs)
    graph = canonicalise(import_onnx(path))
    x = rand(5, *shape, low=-2, high=2)
    np.testing.assert_allclose(evaluate_ann(graph, x), _ort(path, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("conv", [
    dict(kernel=1),
    dict(kernel=3, pads=[1, 1, 1, 1]),  # a 1×1 output: the centre tap
    dict(kernel=3, pads=[2, 1, 0, 2], strides=[2, 1], group=2),  # several output positions, some only padding
    dict(kernel=2, pads=[1, 1, 1, 1], dilations=[2, 2]),
])
def test_conv_of_a_flat_tensor_reshaped_to_one_pixel(tmp_path, conv):
    conv = dict(conv)
    kernel, group = conv.pop("kernel"), conv.get("group", 1)
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h"], transB=1), helper.make_node("Reshape", ["h", "shape"], ["r"]),
             helper.make_node("Conv", ["r", "w2", "b2"], ["y"], **conv)]
    consts = {"w1": rand(4, 6, seed=1), "shape": np.array([-1, 4, 1, 1]), "w2": rand(6, 4 // group, kernel, kernel, seed=2),
              "b2": rand(6, seed=3)}
    _check(tmp_path, model(nodes, (6,), None, consts, opset=13), rand(3, 6))


def test_per_feature_constants_on_a_reshaped_tensor(tmp_path):
    """(N, C) → (N, 1, C), a per-feature Mul and Add (as after nn.Linear on 3-D data), ReLU, back to (N, C)."""
    nodes = [helper.make_node("Unsqueeze", ["x", "axis"], ["u"]), helper.make_node("Mul", ["u", "scale"], ["m"]),
             helper.make_node("Add", ["shift", "m"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Squeeze", ["r", "axis"], ["s"]), helper.make_node("Gemm", ["s", "w"], ["y"])]
    consts = {"axis": np.array([1]), "scale": rand(6, seed=1), "shift": rand(1, 1, 6, seed=2), "w": rand(6, 3, seed=3)}
    _check(tmp_path, model(nodes, (6,), (3,), consts, opset=13), rand(4, 6))


def test_a_feature_map_with_an_axis_added_and_dropped_stays_a_map(tmp_path):
    nodes = [helper.make_node("Unsqueeze", ["x", "axis"], ["u"]), helper.make_node("Relu", ["u"], ["r"]),
             helper.make_node("Squeeze", ["r", "axis"], ["s"]), helper.make_node("Conv", ["s", "w"], ["y"], pads=[1, 1, 1, 1])]
    _check(tmp_path, model(nodes, (2, 3, 3), None, {"axis": np.array([2]), "w": rand(4, 2, 3, 3)}, opset=13), rand(3, 2, 3, 3))


@pytest.mark.parametrize("weight_shape", [(4, 5), (1, 4, 5)])
def test_matmul_on_the_last_axis_of_a_feature_map(tmp_path, weight_shape):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Relu", ["m"], ["y"])]
    _check(tmp_path, model(nodes, (2, 3, 4), (2, 3, 5), {"w": rand(*weight_shape, seed=1)}, opset=13), rand(3, 2, 3, 4))


@pytest.mark.parametrize("dynamo", [False, True])
def test_output_softmax_followed_by_a_flatten_is_dropped(tmp_path, dynamo):
    """Softmax over the channels of a pooled (C, 1, 1) map, then a flatten (SqueezeNet's ending written in torch):
    snnc's logits give the file's probabilities."""
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Softmax(1), torch.nn.Flatten()).eval()
    path = tmp_path / "softmax.onnx"
    torch.onnx.export(net, (torch.rand(2, 2, 4, 4),), str(path), dynamo=dynamo)
    graph = canonicalise(import_onnx(path))
    x = rand(2, 2, 4, 4)
    logits = evaluate_ann(graph, x)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), 1).numpy(), _ort(path, x), atol=1e-6)


@pytest.mark.parametrize("softmax", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("ending", ["Flatten", "Squeeze", "Reshape"])
def test_opset_9_softmax_on_a_pooled_map_before_a_reshape(tmp_path, ending, softmax):
    """SqueezeNet's ending in the opset-9 model zoo style (the version converter upgrades it), with an Identity and a
    reshape after the Softmax: the Softmax is dropped and the logits keep the file's argmax."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node(softmax, ["g"], ["p"]), helper.make_node("Identity", ["p"], ["s"]),
             helper.make_node(ending, ["s", "shape"] if ending == "Reshape" else ["s"], ["y"],
                              **({"axes": [2, 3]} if ending == "Squeeze" else {}))]
    path = tmp_path / "m.onnx"
    onnx.save(model(nodes, (3, 4, 4), (5,), {"w": rand(5, 3, 1, 1), **({"shape": np.array([0, -1])} if ending == "Reshape" else {})},
                    opset=9), str(path))
    graph = canonicalise(import_onnx(path))
    x = rand(4, 3, 4, 4)
    logits = torch.from_numpy(evaluate_ann(graph, x))
    expected = torch.softmax(logits, 1) if softmax == "Softmax" else torch.log_softmax(logits, 1)
    np.testing.assert_allclose(expected.numpy(), _ort(path, x), atol=1e-6)


# name: (nodes, per-sample input shape, constants, opset, what the one-line error says)
REFUSED = {
    "Gemm with transA=1": ([helper.make_node("Gemm", ["x", "w"], ["y"], transA=1, name="n")], (4,), {"w": rand(4, 3)}, 13,
                           r"'n' \(Gemm\).*transA=1.*mixes samples"),
    "Gemm with the data as B": ([helper.make_node("Gemm", ["w", "x"], ["y"], transB=1, name="n")], (4,), {"w": rand(3, 4)},
                                13, r"'n' \(Gemm\).*data is its B input.*mixing samples"),
    "constant @ (batch, features)": ([helper.make_node("MatMul", ["w", "x"], ["y"], name="n")], (4,), {"w": rand(3, 4)}, 13,
                                     r"'n' \(MatMul\).*mixes samples"),
    "Conv of a flat tensor reshaped to a 2×2 map": (
        [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Conv", ["r", "w"], ["y"], name="n")],
        (8,), {"shape": np.array([-1, 2, 2, 2]), "w": rand(3, 2, 1, 1)}, 13, r"'n' \(Conv\).*reshaped to \(2, 2, 2\).*1×1"),
    "pooling of a flat tensor reshaped to (C, 1, 1)": (
        [helper.make_node("Unsqueeze", ["x", "axes"], ["u"]), helper.make_node("GlobalAveragePool", ["u"], ["y"], name="n")],
        (4,), {"axes": np.array([2, 3])}, 13, r"'n' \(GlobalAveragePool\).*reshaped to \(4, 1, 1\).*flatten it before"),
    "Unsqueeze before the batch": ([helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="n")], (4,),
                                   {"axes": np.array([0])}, 13, r"'n' \(Unsqueeze\).*batch as the first axis"),
    "Reshape that moves values between samples": (
        [helper.make_node("Reshape", ["x", "shape"], ["y"], name="n")], (6,), {"shape": np.array([-1, 3])}, 13,
        r"'n' \(Reshape\).*between samples"),
    "Gather of data": ([helper.make_node("Gather", ["x", "i"], ["y"], axis=1, name="n")], (6,), {"i": np.array([0, 2])}, 13,
                       r"'n' \(Gather\).*a Gather of data"),
    "Softmax over an axis of size 1": (
        [helper.make_node("GlobalAveragePool", ["x"], ["g"]), helper.make_node("Softmax", ["g"], ["y"], name="n")],
        (3, 2, 2), {}, 13, r"'n' \(Softmax\).*not all values of a sample"),
    "Softmax inside the network": (
        [helper.make_node("Softmax", ["x"], ["s"], axis=1, name="n"), helper.make_node("Gemm", ["s", "w"], ["y"])],
        (4,), {"w": rand(4, 3)}, 13, r"'n' \(Softmax\) is inside the network.*move it out"),
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_what_is_not_per_sample_or_not_at_the_output_is_one_line(tmp_path, case):
    nodes, shape, consts, opset, message = case
    path = tmp_path / "m.onnx"
    onnx.save(model(nodes, shape, None, consts, opset=opset), str(path))
    with pytest.raises(SnncError, match=message) as err:
        canonicalise(import_onnx(path))
    assert "\n" not in str(err.value)
