"""Fuzzing the readers: a mutated ONNX model or NIR file must give a result or an SnncError, nothing else.

Each example takes a valid file (the zoo MLP, a small CNN that reaches every converter, or a .nir that snnc
wrote for it), mutates it at the byte level or field by field, and feeds it to the ONNX frontend
(import + canonicalise) or the NIR reader (read_graph + ReferenceRuntime). Any exception other than
SnncError is a crash: a traceback a user would see. CI runs a short derandomized run; `make fuzz` runs
SNNC_FUZZ_EXAMPLES (10,000) fresh examples per test.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import h5py
import nir
import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from targets.reference import ReferenceRuntime
from tests.onnx_models import model, rand
from toolchain.ir import read as nir_reader
from toolchain.data import fit_to_input, load_dataset
from toolchain.errors import SnncError
from toolchain.frontend import SUPPORTED_OPS, import_onnx, load_onnx
from toolchain.ir.read import read_graph
from toolchain.passes import calibrate_thresholds, canonicalise, lower_to_nir

ZOO_MLP = Path(__file__).resolve().parents[1] / "models" / "zoo" / "digits_mlp_relu.onnx"
LONG_RUN_EXAMPLES = os.environ.get("SNNC_FUZZ_EXAMPLES")


def fuzz(ci_examples: int):
    """Hypothesis settings: a fixed, derandomized set of examples in CI; SNNC_FUZZ_EXAMPLES fresh ones in `make fuzz`."""
    return settings(
        max_examples=int(LONG_RUN_EXAMPLES or ci_examples),
        derandomize=LONG_RUN_EXAMPLES is None,
        deadline=None,
        database=None,
        print_blob=True,  # a failure prints the @reproduce_failure line that replays it
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# Values that break naive code: zero, negatives, off-by-one, and sizes far beyond any real model.
EDGE_INTS = (-(2**63), -(2**31), -1, 0, 1, 2, 3, 4, 7, 64, 2**31 - 1, 2**31, 10**12, 2**63 - 1)
EDGE_FLOATS = (float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-45, 1e38, -1.0)


# -- valid starting points ---------------------------------------------------------------------------------


def tour_model() -> onnx.ModelProto:
    """A small CNN whose nodes reach every converter: conv with pads and groups, BN, residual Add, clip,
    QCFS, average/max/global pooling, Concat, Shape-derived Reshape, Squeeze, Gemm, MatMul, Dropout, Softmax."""
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[1, 1], kernel_shape=[3, 3]),
        n("BatchNormalization", ["c1", "g", "be", "m", "v"], ["n1"], name="bn1", epsilon=1e-5),
        n("Relu", ["n1"], ["r1"], name="relu1"),
        n("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], group=2, dilations=[1, 1]),
        n("Add", ["c2", "r1"], ["a2"], name="residual"),
        n("Clip", ["a2", "zero", "six"], ["r2"], name="clip"),
        n("AveragePool", ["r2"], ["p2"], name="avgpool", kernel_shape=[2, 2], strides=[2, 2]),
        n("Conv", ["p2", "w3"], ["c3"], name="conv3", auto_pad="SAME_UPPER", kernel_shape=[1, 1]),
        n("Mul", ["c3", "levels_per_lambda"], ["q1"], name="qcfs_scale"),
        n("Add", ["q1", "half"], ["q2"], name="qcfs_shift"),
        n("Floor", ["q2"], ["q3"], name="qcfs_floor"),
        n("Clip", ["q3", "zero", "levels"], ["q4"], name="qcfs_clip"),
        n("Mul", ["q4", "lambda_per_level"], ["q5"], name="qcfs_out"),
        n("MaxPool", ["q5"], ["mp"], name="maxpool", kernel_shape=[2, 2], strides=[2, 2]),
        n("AveragePool", ["q5"], ["ap"], name="avgpool_pad", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
          count_include_pad=0),
        n("Concat", ["mp", "ap"], ["cat"], name="concat", axis=1),
        n("GlobalAveragePool", ["cat"], ["gap"], name="gap"),
        n("Squeeze", ["gap", "hw_axes"], ["sq"], name="squeeze"),
        n("Gemm", ["sq", "w4", "b4"], ["f4"], name="fc1", transB=1),
        n("Relu", ["f4"], ["r4"], name="relu4"),
        n("Dropout", ["r4"], ["d4"], name="dropout"),
        n("Shape", ["d4"], ["shape"], name="shape"),
        n("Gather", ["shape", "zero_index"], ["batch"], name="gather", axis=0),
        n("Unsqueeze", ["batch", "first_axis"], ["batch1"], name="unsqueeze"),
        n("Concat", ["batch1", "minus_one"], ["target"], name="target", axis=0),
        n("Reshape", ["d4", "target"], ["flat"], name="reshape"),
        n("MatMul", ["flat", "w5"], ["m5"], name="fc2"),
        n("Add", ["m5", "b5"], ["logits"], name="fc2_bias"),
        n("Softmax", ["logits"], ["y"], name="softmax", axis=1),
    ]
    lam, levels = 2.0, 4
    constants = {
        "w1": rand(4, 1, 3, 3, seed=1), "b1": rand(4, seed=2),
        "g": rand(4, seed=3, low=0.5, high=1.5), "be": rand(4, seed=4), "m": rand(4, seed=5), "v": rand(4, seed=6, low=0.5, high=1.5),
        "w2": rand(4, 2, 3, 3, seed=7), "w3": rand(4, 4, 1, 1, seed=8), "w4": rand(6, 8, seed=9), "b4": rand(6, seed=10),
        "w5": rand(6, 3, seed=11), "b5": rand(3, seed=12),
        "zero": np.float32(0), "six": np.float32(6), "half": np.float32(0.5), "levels": np.float32(levels),
        "levels_per_lambda": np.float32(levels / lam), "lambda_per_level": np.float32(lam / levels),
        "hw_axes": np.array([2, 3], np.int64), "zero_index": np.array(0, np.int64), "first_axis": np.array([0], np.int64),
        "minus_one": np.array([-1], np.int64),
    }
    return model(nodes, (1, 8, 8), (3,), constants)


def _frontend(path: Path):
    return canonicalise(import_onnx(path, maxpool="avg"))


def _nir_reader(path: Path):
    """What `snnc run` does with the file, on two samples for two steps."""
    runtime = ReferenceRuntime(read_graph(path), threads=1)
    runtime.run(np.ones((2, *runtime.input_shape), np.float32), 2)
    return runtime


# The seed fixtures hold paths, not bytes: Hypothesis prints every argument of a failing example.
@pytest.fixture(scope="module")
def onnx_seeds(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx_seeds")
    (folder / "zoo_mlp.onnx").write_bytes(ZOO_MLP.read_bytes())
    onnx.save(tour_model(), str(folder / "tour_cnn.onnx"))
    return {name: folder / f"{name}.onnx" for name in ("zoo_mlp", "tour_cnn")}


@pytest.fixture(scope="module")
def nir_seeds(onnx_seeds) -> dict[str, Path]:
    """model.nir as snnc writes it, for both ONNX seeds."""
    digits = load_dataset("digits")
    seeds = {}
    for name, path in onnx_seeds.items():
        proto = load_onnx(path)
        graph = canonicalise(import_onnx(path, maxpool="avg", model=proto))
        calibration = fit_to_input(digits.x_train[:64], graph.input_shape, "digits")
        seeds[name] = path.with_suffix(".nir")
        nir.write(str(seeds[name]), lower_to_nir(calibrate_thresholds(graph, proto, calibration, threads=1), "if"))
    return seeds


def test_seeds_are_valid(onnx_seeds, nir_seeds):
    """The fuzz tests start from files that convert and run, so every mutation is measured from valid input."""
    for name, classes in (("zoo_mlp", 10), ("tour_cnn", 3)):
        graph = _frontend(onnx_seeds[name])
        assert graph.nodes[graph.output].shape == (classes,)
    for path in nir_seeds.values():
        assert _nir_reader(path).spiking


# -- mutations ---------------------------------------------------------------------------------------------


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One to four byte changes, mostly bit flips (insertions, deletions and truncation shift every offset after
    them, which the first header check already catches)."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(len(data) + 1)
        kind = rng.choices(("flip", "insert", "delete", "truncate"), weights=(14, 2, 2, 1))[0]
        if kind == "flip" and position < len(data):
            data[position] ^= 1 << rng.randrange(8)
        elif kind == "insert":
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif kind == "delete":
            del data[position: position + rng.randint(1, 16)]
        elif kind == "truncate":
            del data[position:]
    return bytes(data)


def _edge_int(rng: random.Random) -> int:
    return rng.choice(EDGE_INTS)


def _tensor_names(proto: onnx.ModelProto) -> list[str]:
    graph = proto.graph
    return [i.name for i in graph.input] + [t.name for t in graph.initializer] + [o for node in graph.node for o in node.output]


def _mutate_node(proto: onnx.ModelProto, rng: random.Random) -> None:
    node = rng.choice(proto.graph.node)
    kind = rng.choice(("op_type", "input", "drop_input", "output", "attribute", "new_attribute", "drop_attribute", "delete", "move"))
    if kind == "op_type":
        node.op_type = rng.choice(sorted(SUPPORTED_OPS) + ["Sigmoid", "Constant", "ConstantOfShape", "Expand", "Tile", ""])
    elif kind == "input" and node.input:
        node.input[rng.randrange(len(node.input))] = rng.choice(_tensor_names(proto) + ["", "ghost"])
    elif kind == "drop_input" and node.input:
        del node.input[rng.randrange(len(node.input))]
    elif kind == "output" and node.output:
        node.output[0] = rng.choice(_tensor_names(proto) + ["", "fresh"])
    elif kind == "attribute" and node.attribute:
        _mutate_attribute(rng.choice(node.attribute), rng)
    elif kind == "new_attribute":
        name = rng.choice(("kernel_shape", "strides", "pads", "dilations", "group", "axis", "axes", "transA", "transB",
                           "auto_pad", "ceil_mode", "count_include_pad", "to", "start", "end", "alpha", "epsilon"))
        attribute = node.attribute.add(name=name, type=rng.choice(
            (onnx.AttributeProto.INTS, onnx.AttributeProto.INT, onnx.AttributeProto.FLOAT, onnx.AttributeProto.STRING)))
        _mutate_attribute(attribute, rng)
    elif kind == "drop_attribute" and node.attribute:
        del node.attribute[rng.randrange(len(node.attribute))]
    elif kind == "delete":
        proto.graph.node.remove(node)
    elif kind == "move":
        proto.graph.node.remove(node)
        proto.graph.node.insert(rng.randrange(len(proto.graph.node) + 1), node)


def _mutate_attribute(attribute: onnx.AttributeProto, rng: random.Random) -> None:
    if attribute.type == onnx.AttributeProto.INTS:
        values = list(attribute.ints)
        if values and rng.random() < 0.7:
            values[rng.randrange(len(values))] = _edge_int(rng)
        else:
            values = [_edge_int(rng) for _ in range(rng.randint(0, 5))]
        attribute.ClearField("ints")
        attribute.ints.extend(values)
    elif attribute.type == onnx.AttributeProto.INT:
        attribute.i = _edge_int(rng)
    elif attribute.type == onnx.AttributeProto.FLOAT:
        attribute.f = rng.choice(EDGE_FLOATS)
    elif attribute.type == onnx.AttributeProto.STRING:
        attribute.s = rng.choice((b"SAME_LOWER", b"SAME_UPPER", b"VALID", b"NOTSET", b"", b"\xff"))
    else:
        attribute.type = rng.choice((onnx.AttributeProto.INT, onnx.AttributeProto.INTS, onnx.AttributeProto.FLOAT))


def _mutate_initializer(proto: onnx.ModelProto, rng: random.Random) -> None:
    tensor = rng.choice(proto.graph.initializer)
    kind = rng.choice(("dim", "add_dim", "drop_dim", "data_type", "raw_data", "values", "delete"))
    if kind == "dim" and tensor.dims:
        tensor.dims[rng.randrange(len(tensor.dims))] = _edge_int(rng)
    elif kind == "add_dim":
        tensor.dims.insert(rng.randrange(len(tensor.dims) + 1), rng.choice((0, 1, 2, 10**6)))
    elif kind == "drop_dim" and tensor.dims:
        del tensor.dims[rng.randrange(len(tensor.dims))]
    elif kind == "data_type":
        tensor.data_type = rng.randrange(-1, 26)
    elif kind == "raw_data":
        size = len(tensor.raw_data)
        tensor.raw_data = tensor.raw_data[: rng.randrange(size + 1)] if rng.random() < 0.5 else tensor.raw_data + bytes(rng.randint(1, 8))
    elif kind == "values" and tensor.raw_data and tensor.data_type == TensorProto.FLOAT and len(tensor.raw_data) % 4 == 0:
        values = np.frombuffer(tensor.raw_data, np.float32).copy()
        values[rng.randrange(values.size)] = rng.choice(EDGE_FLOATS)
        tensor.raw_data = values.tobytes()
    elif kind == "delete":
        proto.graph.initializer.remove(tensor)


def _mutate_model(proto: onnx.ModelProto, rng: random.Random) -> None:
    kind = rng.choice(("opset", "ir_version", "input_dim", "input_type", "drop_io", "extra_input"))
    graph = proto.graph
    if kind == "opset":
        proto.opset_import[0].version = rng.choice((1, 9, 10, 11, 13, 17, 21, 22, 23, 99, _edge_int(rng)))
    elif kind == "ir_version":
        proto.ir_version = rng.choice((0, 3, 7, 8, 10, 11, 99))
    elif kind == "input_dim" and graph.input:
        dims = graph.input[0].type.tensor_type.shape.dim
        dim = dims[rng.randrange(len(dims))] if dims and rng.random() < 0.8 else dims.add()
        if rng.random() < 0.3:
            dim.dim_param = rng.choice(("batch", "n", ""))
        else:
            dim.dim_value = _edge_int(rng)
    elif kind == "input_type" and graph.input:
        graph.input[0].type.tensor_type.elem_type = rng.randrange(0, 26)
    elif kind == "drop_io":
        del (graph.input if rng.random() < 0.5 else graph.output)[:1]
    elif kind == "extra_input":
        graph.input.append(helper.make_tensor_value_info(rng.choice(_tensor_names(proto) + ["extra"]), TensorProto.FLOAT, [1, 4]))


def mutate_fields(data: bytes, rng: random.Random) -> bytes:
    """One to four protobuf-level changes: nodes, attributes, initializers, opset, inputs and outputs."""
    proto = onnx.ModelProto.FromString(data)
    for _ in range(rng.randint(1, 4)):
        mutate = rng.choice((_mutate_node, _mutate_node, _mutate_attribute_of_conv_or_pool, _mutate_initializer, _mutate_model))
        if proto.graph.node and proto.graph.initializer:
            mutate(proto, rng)
    return proto.SerializeToString()


def _mutate_attribute_of_conv_or_pool(proto: onnx.ModelProto, rng: random.Random) -> None:
    """Windows are where the converters do arithmetic, so they get mutated more often than other nodes."""
    windows = [n for n in proto.graph.node if n.op_type in ("Conv", "AveragePool", "MaxPool") and n.attribute]
    if windows:
        _mutate_attribute(rng.choice(rng.choice(windows).attribute), rng)


def mutate_nir_structure(path: Path, rng: random.Random) -> None:
    """One to four changes to the HDF5 tree: node types, arrays (shape, dtype, values), edges, deletions."""
    with h5py.File(path, "r+") as f:
        nodes = f["node"]["nodes"]
        for _ in range(rng.randint(1, 4)):
            name = rng.choice(sorted(nodes))
            group = nodes[name]
            kind = rng.choice(("type", "array", "delete", "edges", "metadata", "copy"))
            if kind == "type":
                _replace(group, "type", rng.choice(("Affine", "Conv2d", "IF", "I", "LIF", "CubaLIF", "Flatten", "Input",
                                                    "Output", "Scale", "SumPool2d", "Threshold", "Delay", "NIRGraph", "Bogus")))
            elif kind == "array":
                key = rng.choice(sorted(k for k in group if isinstance(group[k], h5py.Dataset)))
                _replace(group, key, _random_array(rng))
            elif kind == "delete":
                del group[rng.choice(sorted(group))]
            elif kind == "edges":
                edges = [tuple(e) for e in f["node"]["edges"][()]]
                names = sorted(n.encode() for n in nodes) + [b"ghost"]
                if edges and rng.random() < 0.5:
                    edges[rng.randrange(len(edges))] = (rng.choice(names), rng.choice(names))
                else:
                    edges = edges[: rng.randrange(len(edges) + 1)]
                _replace(f["node"], "edges", np.array(edges, dtype=h5py.string_dtype()) if edges else np.zeros((0, 2), "S1"))
            elif kind == "metadata" and "metadata" in group and "snnc" in group["metadata"]:
                snnc = group["metadata"]["snnc"]
                key = rng.choice(sorted(snnc) + ["max_spikes_per_step", "v_init", "cycle", "seed", "weight_exp", "host", "reset"])
                _replace(snnc, key, _random_array(rng))
            elif kind == "copy" and f"{name}_copy" not in nodes:
                nodes.copy(group, f"{name}_copy")


def _replace(group: h5py.Group, key: str, value) -> None:
    if key in group:
        del group[key]
    group.create_dataset(key, data=value)


def _random_array(rng: random.Random):
    shape = tuple(rng.choice((0, 1, 2, 3, 64)) for _ in range(rng.randint(0, 4)))
    return rng.choice((
        np.full(shape, rng.choice(EDGE_FLOATS), np.float32),
        np.full(shape, rng.choice((0, 1, -1, 7)), np.int64),
        rng.choice(EDGE_INTS[1:-1]),
        rng.choice(EDGE_FLOATS),
        "text",
        np.full(shape, True),
    ))


# -- the properties ----------------------------------------------------------------------------------------


def _only_snnc_errors(reader, path: Path) -> None:
    """`reader(path)` succeeds or raises an SnncError of one line that names the file."""
    try:
        reader(path)
    except SnncError as err:
        assert str(path) in str(err) and "\n" not in str(err), str(err)


SEEDS = st.sampled_from(["zoo_mlp", "tour_cnn"])


@fuzz(ci_examples=800)
@given(seed=SEEDS, rng=st.randoms(use_true_random=False))
def test_frontend_survives_byte_mutations(tmp_path, onnx_seeds, seed, rng):
    path = tmp_path / "mutated.onnx"
    path.write_bytes(mutate_bytes(onnx_seeds[seed].read_bytes(), rng))
    _only_snnc_errors(_frontend, path)


@fuzz(ci_examples=800)
@given(seed=SEEDS, rng=st.randoms(use_true_random=False))
def test_frontend_survives_field_mutations(tmp_path, onnx_seeds, seed, rng):
    path = tmp_path / "mutated.onnx"
    path.write_bytes(mutate_fields(onnx_seeds[seed].read_bytes(), rng))
    _only_snnc_errors(_frontend, path)


@fuzz(ci_examples=60)
@given(seed=SEEDS, rng=st.randoms(use_true_random=False))
def test_nir_reader_survives_byte_mutations(tmp_path, nir_seeds, seed, rng):
    path = tmp_path / "mutated.nir"
    path.write_bytes(mutate_bytes(nir_seeds[seed].read_bytes(), rng))
    _only_snnc_errors(_nir_reader, path)


@fuzz(ci_examples=60)
@given(seed=SEEDS, rng=st.randoms(use_true_random=False))
def test_nir_reader_survives_structure_mutations(tmp_path, nir_seeds, seed, rng):
    path = tmp_path / "mutated.nir"
    path.write_bytes(nir_seeds[seed].read_bytes())
    mutate_nir_structure(path, rng)
    _only_snnc_errors(_nir_reader, path)


# -- what the fuzzer found, kept as fixed examples ---------------------------------------------------------


def _import(tmp_path, nodes, input_shape, output_shape, initializers):
    path = tmp_path / "found.onnx"
    model(nodes, input_shape, output_shape, initializers, path=path)
    return _frontend(path)


node = helper.make_node
# name: (nodes, per-sample input shape, output shape, initializers, what the error says)
FOUND_REFUSALS = {
    "Conv bias of the wrong length": (
        [node("Conv", ["x", "w", "b"], ["y"], name="conv")], (1, 4, 4), (2, 2, 2),
        {"w": rand(2, 1, 3, 3), "b": rand(3)}, "'conv'.*bias"),
    "Conv auto_pad that is not UTF-8": (
        [node("Conv", ["x", "w"], ["y"], name="conv", auto_pad=b"\xff")], (1, 4, 4), (2, 2, 2),
        {"w": rand(2, 1, 3, 3)}, "'conv'.*auto_pad"),
    "Gemm bias C of the wrong length": (
        [node("Gemm", ["x", "w", "c"], ["y"], name="fc")], (4,), (3,), {"w": rand(4, 3), "c": rand(5)}, "'fc'.*bias C"),
    "Clip with a bound that is not a scalar": (
        [node("Clip", ["x", "lo", "hi"], ["y"], name="clip")], (4,), (4,),
        {"lo": np.zeros(2, np.float32), "hi": np.float32(6)}, "'clip'.*scalar"),
    "a constant where data belongs": (
        [node("Concat", ["x", "c"], ["y"], name="cat", axis=1)], (4,), (8,), {"c": rand(1, 4)}, "'cat'.*'c' is a constant"),
    "a Reshape target computed as floats": (
        [node("Shape", ["x"], ["s"], name="shape"), node("Gather", ["s", "zero"], ["b"], name="gather", axis=0),
         node("Unsqueeze", ["b", "axis0"], ["b1"], name="unsqueeze"),
         node("Concat", ["b1", "minus_one"], ["t"], name="target", axis=0), node("Reshape", ["x", "t"], ["y"], name="reshape")],
        (1, 2, 2), (4,), {"zero": np.array(0, np.int64), "axis0": np.array([0], np.int64), "minus_one": np.array([-1.0])},
        "'reshape'.*int64"),
}


@pytest.mark.parametrize("case", FOUND_REFUSALS.values(), ids=FOUND_REFUSALS.keys())
def test_found_crashes_are_refused_naming_the_node(tmp_path, case):
    nodes, input_shape, output_shape, initializers, message = case
    with pytest.raises(SnncError, match=message):
        _import(tmp_path, nodes, input_shape, output_shape, initializers)


def test_clip_with_an_omitted_bound_is_relu(tmp_path):
    """Clip(x, 0, '') once crashed canonicalise: the omitted max is +inf, so the clip is a ReLU."""
    graph = _import(tmp_path, [node("Clip", ["x", "zero", ""], ["h"], name="clip"), node("Gemm", ["h", "w"], ["y"], name="fc")],
                    (4,), (3,), {"zero": np.float32(0), "w": rand(4, 3)})
    assert [getattr(node.op, "kind", None) for node in graph.nodes.values()] == ["relu", None]


def test_gemm_bias_of_shape_1_by_n(tmp_path):
    """A (1, N) bias broadcasts over the batch; the frontend once crashed on it."""
    graph = _import(tmp_path, [node("Gemm", ["x", "w", "c"], ["y"], name="fc")], (4,), (3,), {"w": rand(4, 3), "c": rand(1, 3)})
    np.testing.assert_array_equal(graph.nodes["fc"].op.bias, rand(1, 3)[0])


def test_a_grouped_convolution_reads_back_from_nir(nir_seeds):
    """NIR 1.0.8's type check takes weight.shape[1] as a grouped convolution's input channels: snnc's own files
    with groups (and standalone BatchNorms, which become depthwise convolutions) could not be read back."""
    graph = read_graph(nir_seeds["tour_cnn"])
    assert any(isinstance(node, nir.Conv2d) and node.groups == 2 for node in graph.nodes.values())


def test_a_spike_limit_beyond_integer_range(tmp_path, nir_seeds):
    """max_spikes_per_step = 1e38 passed every type check but overflowed in the runtime's clamp (make fuzz found it)."""
    path = tmp_path / "model.nir"
    path.write_bytes(nir_seeds["tour_cnn"].read_bytes())
    with h5py.File(path, "r+") as f:
        _replace(f["node/nodes/if1/metadata/snnc"], "max_spikes_per_step", np.float32(1e38))
    with pytest.raises(SnncError, match="model.nir: node 'if1' .IF. has metadata 'max_spikes_per_step'"):
        read_graph(path)


def test_a_nir_field_that_breaks_nirs_own_arithmetic(tmp_path, nir_seeds):
    path = tmp_path / "model.nir"
    path.write_bytes(nir_seeds["tour_cnn"].read_bytes())
    with h5py.File(path, "r+") as f:
        _replace(f["node/nodes/conv1"], "padding", np.array([np.inf, np.inf]))
    with pytest.raises(SnncError, match="model.nir: not a readable NIR file .OverflowError"):
        read_graph(path)


def _small_nir(path: Path) -> bytearray:
    """A two-node NIR file as bytes; its first global heap (GCOL) holds the variable-length strings."""
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([4])}),
               "fc": nir.Affine(weight=rand(2, 4), bias=np.zeros(2, np.float32)),
               "output": nir.Output(output_type={"output": np.array([2])})},
        edges=[("input", "fc"), ("fc", "output")], type_check=False,
    )
    nir.write(str(path), graph)
    return bytearray(path.read_bytes())


def test_a_nir_file_that_sends_hdf5_round_in_circles(tmp_path, monkeypatch):
    """A damaged length in the string heap makes HDF5 loop forever: the read is given up after a time limit."""
    path = tmp_path / "model.nir"
    data = _small_nir(path)
    data[data.find(b"GCOL") + 24] = 0xFF
    path.write_bytes(data)
    monkeypatch.setattr(nir_reader, "READ_SECONDS_MIN", 2.0)
    with pytest.raises(SnncError, match="model.nir: a damaged HDF5 file .reading it did not finish"):
        read_graph(path)


def test_a_nir_file_that_crashes_hdf5(tmp_path):
    """A flipped bit in a string's datatype (variable-length class 1 → 3) makes HDF5 crash with SIGSEGV."""
    path = tmp_path / "model.nir"
    data = _small_nir(path)
    string_type = b"\x19\x01\x01\x00\x10\x00\x00\x00"  # datatype message: version 1, variable length, UTF-8 string
    position = data.find(string_type)
    while position >= 0:
        data[position + 1] = 0x03
        position = data.find(string_type, position + 1)
    path.write_bytes(data)
    with pytest.raises(SnncError, match="model.nir: a damaged HDF5 file .reading it crashed the HDF5 library"):
        read_graph(path)
