"""Hostile and broken inputs: one line `snnc: error: ...` naming the file or node and the fix, exit code 2,
no traceback, no output folder; and output folders that are never half written.

The error cases run the CLI in-process (`toolchain.cli.main`) so that many cases stay fast; warnings that
a real process would print to stderr count as extra lines. tests/test_cli_errors.py runs the basic cases as
real processes.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
import zipfile
from pathlib import Path

import h5py
import nir
import numpy as np
import onnx
import pytest
from onnx import TensorProto, external_data_helper, helper, numpy_helper

from tests.onnx_models import model, rand
from toolchain import outdir as outdir_module
from toolchain.cli import Terminated, main, sigterm_raises
from toolchain.data import check_labels, load_dataset
from toolchain.errors import SnncError
from toolchain.frontend import load_onnx
from toolchain.outdir import staged_output

ROOT = Path(__file__).resolve().parents[1]
SNNC = [sys.executable, "-m", "toolchain.cli"]


def _refused(capsys, *argv, names=(), absent=None) -> str:
    """Run snnc; it must exit 2 with one stderr line naming `names`, warn nothing, and leave `absent` absent."""
    with warnings.catch_warnings(record=True) as caught:
        # What a real process shows: Python hides these categories outside __main__.
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.filterwarnings("ignore", category=category)
        code = main([str(a) for a in argv])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("snnc: error: "), lines
    assert not caught, [str(w.message) for w in caught]
    for name in names:
        assert name in lines[0], (name, lines[0])
    if absent is not None:
        assert not Path(absent).exists()
    return lines[0]


def _compile_refused(capsys, tmp_path, model_path, *names, data="digits"):
    """`snnc compile` refuses; the line names the file at fault (the data file when one is passed) and `names`."""
    out = tmp_path / "out"
    culprit = data if isinstance(data, Path) else model_path
    return _refused(capsys, "compile", model_path, "--data", data, "--timesteps", "2", "--samples", "10",
                    "-o", out, names=(str(culprit), *names), absent=out)


def _gemm_model(path, weight, opset=17, input_type=TensorProto.FLOAT):
    """x → Cast(float) → Gemm 'fc1' → y, so that any input type is a valid model."""
    nodes = [helper.make_node("Cast", ["x"], ["xf"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Gemm", ["xf", "w"], ["y"], name="fc1")]
    proto = model(nodes, (weight.shape[0],), (weight.shape[1],), {"w": weight}, opset=opset)
    proto.graph.input[0].type.tensor_type.elem_type = input_type
    onnx.save(proto, str(path))
    return path


# -- files that are not ONNX models ------------------------------------------------------------------------


@pytest.mark.parametrize("make,phrase", [
    pytest.param(lambda p: h5py.File(p, "w").close(), "not an ONNX model", id="an HDF5 file"),
    pytest.param(lambda p: p.write_bytes(numpy_helper.from_array(rand(3), "t").SerializeToString()), "not an ONNX model",
                 id="a TensorProto"),
    pytest.param(lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)), "not an ONNX model", id="a PNG header"),
    pytest.param(lambda p: p.mkdir(), "not a file", id="a folder"),
])
def test_a_file_that_is_not_onnx(capsys, tmp_path, make, phrase):
    path = tmp_path / "model.onnx"
    make(path)
    _compile_refused(capsys, tmp_path, path, phrase)


@pytest.mark.parametrize("keep", [1, 16, -1], ids=["first byte", "header", "all but the last byte"])
def test_a_truncated_model(capsys, tmp_path, keep):
    data = (ROOT / "models" / "zoo" / "digits_mlp_relu.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[:keep])
    _compile_refused(capsys, tmp_path, path)


def test_text_fields_that_are_not_utf8(capsys, tmp_path):
    path = _gemm_model(tmp_path / "m.onnx", rand(64, 10))
    data = path.read_bytes().replace(b"fc1", b"f\xff1")
    path.write_bytes(data)
    _compile_refused(capsys, tmp_path, path, "UTF-8")


# -- external data -----------------------------------------------------------------------------------------


def _external_model(folder: Path, location: str, length: int | None = 64 * 10 * 4) -> Path:
    """A model whose 64x10 weight lives in external data at `location` (relative to the model's folder)."""
    proto = onnx.load(str(_gemm_model(folder / "m.onnx", rand(64, 10))))
    weight = proto.graph.initializer[0]
    external_data_helper.set_external_data(weight, location, offset=0, length=length)
    weight.ClearField("raw_data")
    path = folder / "m.onnx"
    path.write_bytes(proto.SerializeToString())
    return path


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(rand(64, 10).tobytes())
    return folder


@pytest.mark.parametrize("location", ["../secret.bin", "{tmp}/secret.bin", "sub/../../secret.bin", "link.bin"])
def test_external_data_outside_the_models_folder_is_refused_unread(capsys, tmp_path, model_folder, monkeypatch, location):
    (model_folder / "link.bin").symlink_to(tmp_path / "secret.bin")
    path = _external_model(model_folder, location.format(tmp=tmp_path))
    reads = []
    monkeypatch.setattr(external_data_helper, "load_external_data_for_model", lambda *args: reads.append(args))
    _compile_refused(capsys, tmp_path, path, "'w'", "outside the model's folder")
    assert reads == []


def test_external_data_beside_the_model_is_read(tmp_path, model_folder):
    weight = rand(64, 10)
    (model_folder / "weights.bin").write_bytes(weight.tobytes())
    proto = load_onnx(_external_model(model_folder, "weights.bin"))
    np.testing.assert_array_equal(numpy_helper.to_array(proto.graph.initializer[0]), weight)


@pytest.mark.parametrize("stored,length,phrase", [
    (None, 2560, "missing"),
    (8, None, "holds 8 bytes"),
    (8, 2560, "exceeds available data"),
    (2560, 2**40, "holds 1099511627776 bytes"),
])
def test_external_data_missing_or_of_the_wrong_size(capsys, tmp_path, model_folder, stored, length, phrase):
    if stored is not None:
        (model_folder / "weights.bin").write_bytes(bytes(stored))
    _compile_refused(capsys, tmp_path, _external_model(model_folder, "weights.bin", length), "'w'", phrase)


# -- sizes declared in the file ----------------------------------------------------------------------------


def test_an_initializer_declared_terabytes_large_is_refused_before_reading(capsys, tmp_path):
    path = _gemm_model(tmp_path / "m.onnx", rand(64, 10))
    proto = onnx.load(str(path))
    weight = proto.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.dims[:] = [10**6, 10**6]
    onnx.save(proto, str(path))
    _compile_refused(capsys, tmp_path, path, "'w'", "[1000000, 1000000]", "GiB")


def test_an_input_of_huge_fixed_size_is_refused(capsys, tmp_path):
    path = tmp_path / "m.onnx"
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w"], ["y"], name="fc")]
    proto = model(nodes, (1, 8, 8), (10,), {"w": rand(64, 10)})
    for dim, size in zip(proto.graph.input[0].type.tensor_type.shape.dim[1:], (1, 10**5, 10**5)):
        dim.dim_value = size
    onnx.save(proto, str(path))
    _compile_refused(capsys, tmp_path, path, "input 'x'", "[1, 1, 100000, 100000]", "GiB")


def test_a_computed_constant_too_large_is_refused_before_it_is_computed(capsys, tmp_path):
    nodes = [
        helper.make_node("ConstantOfShape", ["size"], ["ones"], name="fill", value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
        helper.make_node("ReduceSum", ["ones"], ["total"], name="sum", keepdims=0),
        helper.make_node("Mul", ["x", "total"], ["y"], name="mul"),
    ]
    path = tmp_path / "m.onnx"
    model(nodes, (64,), (64,), {"size": np.array([10**5, 10**5], np.int64)}, path=path)
    _compile_refused(capsys, tmp_path, path, "'ones'", "GiB")


def test_no_value_propagation_through_large_integer_tensors(tmp_path, monkeypatch):
    """ONNX turns each propagated value into a dimension proto: a Range of 10^8 values would take gigabytes."""
    nodes = [helper.make_node("Range", ["start", "limit", "delta"], ["r"], name="range"),
             helper.make_node("Cast", ["r"], ["rf"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("ReduceSum", ["rf"], ["s"], name="sum", keepdims=1),
             helper.make_node("Add", ["x", "s"], ["y"], name="add")]
    scalars = {"start": np.array(0, np.int64), "limit": np.array(10**5, np.int64), "delta": np.array(1, np.int64)}
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(v, k) for k, v in scalars.items()]), opset_imports=[helper.make_opsetid("", 17)]), str(path))
    propagated = []
    infer = onnx.shape_inference.infer_shapes
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", lambda m, **kw: propagated.append(kw.get("data_prop")) or infer(m, **kw))
    load_onnx(path)
    assert propagated == [None]
    load_onnx(ROOT / "models" / "zoo" / "digits_mlp_relu.onnx")  # shape arithmetic keeps its propagation
    assert propagated == [None, None, True]


def test_declared_negative_sizes(capsys, tmp_path):
    path = _gemm_model(tmp_path / "m.onnx", rand(64, 10))
    proto = onnx.load(str(path))
    proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value = -64
    onnx.save(proto, str(path))
    _compile_refused(capsys, tmp_path, path, "input 'x'", "negative")


# -- broken weights and graphs -----------------------------------------------------------------------------


def test_zero_size_weights(capsys, tmp_path):
    _compile_refused(capsys, tmp_path, _gemm_model(tmp_path / "m.onnx", np.zeros((64, 0), np.float32)), "'fc1'", "empty")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_weights_name_the_node(capsys, tmp_path, value):
    weight = rand(64, 10)
    weight[3, 4] = value
    _compile_refused(capsys, tmp_path, _gemm_model(tmp_path / "m.onnx", weight), "'fc1'", "NaN or infinite")


def test_batchnorm_with_a_negative_variance(capsys, tmp_path):
    """The folded scale would be NaN although every initializer is finite."""
    params = {"g": np.ones(1, np.float32), "b": np.zeros(1, np.float32), "m": np.zeros(1, np.float32), "v": -np.ones(1, np.float32)}
    nodes = [helper.make_node("BatchNormalization", ["x", "g", "b", "m", "v"], ["n"], name="bn"),
             helper.make_node("Flatten", ["n"], ["f"]), helper.make_node("Gemm", ["f", "w"], ["y"], name="fc")]
    path = tmp_path / "m.onnx"
    model(nodes, (1, 8, 8), (10,), {**params, "w": rand(64, 10)}, path=path)
    _compile_refused(capsys, tmp_path, path, "'bn'", "variance")


@pytest.mark.parametrize("nodes,names", [
    pytest.param([helper.make_node("Relu", ["b"], ["a"], name="r1"), helper.make_node("Relu", ["a"], ["b"], name="r2"),
                  helper.make_node("Gemm", ["b", "w"], ["y"], name="fc")], ("'b'", "r1"), id="a cycle"),
    pytest.param([helper.make_node("Add", ["x", "ghost"], ["a"], name="add1"), helper.make_node("Gemm", ["a", "w"], ["y"], name="fc")],
                 ("'ghost'", "add1"), id="a dangling input"),
    pytest.param([helper.make_node("Gemm", ["x", "w_missing"], ["y"], name="fc")], ("'w_missing'", "fc"), id="a missing initializer"),
])
def test_graphs_that_are_not_feed_forward_or_read_what_nobody_produces(capsys, tmp_path, nodes, names):
    path = tmp_path / "m.onnx"
    model(nodes, (64,), (10,), {"w": rand(64, 10)}, path=path)
    _compile_refused(capsys, tmp_path, path, *names, "re-export")


def test_weights_passed_as_inputs_instead_of_initializers(capsys, tmp_path):
    path = tmp_path / "m.onnx"
    proto = model([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")], (64,), (10,))
    proto.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [64, 10]))
    onnx.save(proto, str(path))
    _compile_refused(capsys, tmp_path, path, "['x', 'w']", "initializers")


def test_a_string_initializer_where_weights_belong(capsys, tmp_path):
    path = tmp_path / "m.onnx"
    proto = model([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")], (64,), (10,))
    proto.graph.initializer.append(helper.make_tensor("w", TensorProto.STRING, [64, 10], [b"a"] * 640))
    onnx.save(proto, str(path))
    _compile_refused(capsys, tmp_path, path, "'fc'", "'w'", "numbers")


# -- batch, opsets and types -------------------------------------------------------------------------------


def _with_batch(path: Path, batch: str | int | None) -> Path:
    """The model at `path` with its batch dimension named, fixed or left unnamed."""
    proto = onnx.load(str(path))
    for value_info in (proto.graph.input[0], proto.graph.output[0]):
        dim = value_info.type.tensor_type.shape.dim[0]
        dim.Clear()
        if isinstance(batch, str):
            dim.dim_param = batch
        elif batch is not None:
            dim.dim_value = batch
    onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize("batch", ["N", None], ids=["symbolic", "unnamed"])
def test_a_dynamic_batch_dimension_compiles(tmp_path, batch):
    path, out = _with_batch(_gemm_model(tmp_path / "m.onnx", rand(64, 10)), batch), tmp_path / "out"
    assert main(["compile", str(path), "--data", "digits", "--timesteps", "2", "--samples", "20", "-o", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert (out / "model.nir").is_file() and report["data"]["test_samples"] == 20 and report["model"]["input_shape"] == [64]


@pytest.mark.parametrize("batch", [1, 32])
def test_a_fixed_batch_dimension_compiles(tmp_path, batch):
    path, out = _with_batch(_gemm_model(tmp_path / "m.onnx", rand(64, 10)), batch), tmp_path / "out"
    assert main(["compile", str(path), "--data", "digits", "--timesteps", "2", "--samples", "20", "-o", str(out)]) == 0


def test_a_symbolic_size_after_the_batch_is_refused(capsys, tmp_path):
    path = _gemm_model(tmp_path / "m.onnx", rand(64, 10))
    proto = onnx.load(str(path))
    proto.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "features"
    onnx.save(proto, str(path))
    _compile_refused(capsys, tmp_path, path, "input 'x'", "fixed sizes")


@pytest.mark.parametrize("opset,phrase", [(22, "opset 22"), (23, "opset 23"), (None, "opset")])
def test_unsupported_opsets(capsys, tmp_path, opset, phrase):
    path = _gemm_model(tmp_path / "m.onnx", rand(64, 10), opset=opset or 17)
    if opset is None:
        proto = onnx.load(str(path))
        proto.opset_import[0].domain = "com.example"
        onnx.save(proto, str(path))
    _compile_refused(capsys, tmp_path, path, phrase, "re-export")


@pytest.mark.parametrize("dtype", [TensorProto.INT8, TensorProto.UINT8, TensorProto.BOOL, TensorProto.STRING])
def test_a_non_float_input_is_refused(capsys, tmp_path, dtype):
    path = _gemm_model(tmp_path / "m.onnx", rand(64, 10), input_type=dtype)
    _compile_refused(capsys, tmp_path, path, "input 'x'", TensorProto.DataType.Name(dtype))


def test_a_float16_model_compiles(tmp_path):
    proto = model([helper.make_node("Gemm", ["x", "w"], ["h"], name="fc1"), helper.make_node("Relu", ["h"], ["r"]),
                   helper.make_node("Gemm", ["r", "w2"], ["y"], name="fc2")], (64,), (10,),
                  {"w": rand(64, 32).astype(np.float16), "w2": rand(32, 10, seed=1).astype(np.float16)})
    for value_info in (proto.graph.input[0], proto.graph.output[0]):
        value_info.type.tensor_type.elem_type = TensorProto.FLOAT16
    path, out = tmp_path / "half.onnx", tmp_path / "out"
    onnx.save(proto, str(path))
    assert main(["compile", str(path), "--data", "digits", "--timesteps", "4", "--samples", "20", "-o", str(out)]) == 0
    assert (out / "report.json").is_file()


# -- NIR files ---------------------------------------------------------------------------------------------


def _foreign_graph(neuron: nir.NIRNode) -> nir.NIRGraph:
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([64])}),
               "fc": nir.Affine(weight=rand(10, 64), bias=np.zeros(10, np.float32)),
               "lif": neuron, "output": nir.Output(output_type={"output": np.array([10])})},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")], type_check=False,
    )


@pytest.mark.parametrize("write,phrase", [
    pytest.param(lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)), "not a readable NIR file", id="random bytes"),
    pytest.param(lambda p: (nir.write(str(p), _foreign_graph(nir.I(r=np.ones(10)))), p.write_bytes(p.read_bytes()[:1000])),
                 "not a readable NIR file", id="truncated HDF5"),
    pytest.param(lambda p: h5py.File(p, "w").create_dataset("weights", data=np.ones(3)), "not a readable NIR file",
                 id="HDF5 that is not NIR"),
    pytest.param(lambda p: nir.write(str(p), _foreign_graph(nir.LIF(
        tau=np.ones(10), r=np.ones(10), v_leak=np.zeros(10), v_threshold=np.ones(10), v_reset=np.zeros(10)))),
        "'lif' is a NIR LIF", id="a nir.LIF node"),
    pytest.param(lambda p: nir.write(str(p), _foreign_graph(nir.CubaLIF(
        tau_mem=np.ones(10), tau_syn=np.ones(10), r=np.ones(10), v_leak=np.zeros(10), v_threshold=np.ones(10),
        v_reset=np.zeros(10), w_in=np.ones(10)))), "'lif' is a NIR CubaLIF", id="a nir.CubaLIF node"),
    pytest.param(lambda p: nir.write(str(p), _foreign_graph(nir.IF(r=np.ones(7), v_threshold=np.ones(7), v_reset=np.zeros(7)))),
                 "'lif' (IF)", id="shapes that do not fit"),
])
def test_malformed_or_foreign_nir_files(capsys, tmp_path, write, phrase):
    path = tmp_path / "model.nir"
    write(path)
    out = tmp_path / "out"
    _refused(capsys, "run", path, "--data", "digits", "--timesteps", "2", "-o", out, names=(str(path), phrase), absent=out)


def test_a_nir_dataset_declared_terabytes_large_is_refused_before_reading(capsys, tmp_path):
    """Chunked HDF5 stores no chunk that was never written: a kilobyte file can declare terabytes."""
    path = tmp_path / "model.nir"
    nir.write(str(path), _foreign_graph(nir.I(r=np.ones(10))))
    with h5py.File(path, "r+") as f:
        del f["node/nodes/fc/weight"]
        f["node/nodes/fc"].create_dataset("weight", shape=(10**6, 10**6), dtype=np.float32, chunks=(64, 64), compression="gzip")
    assert path.stat().st_size < 100_000
    _refused(capsys, "run", path, "--data", "digits", names=(str(path), "node/nodes/fc/weight", "GiB"))


# -- data files --------------------------------------------------------------------------------------------


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _npz_declaring(path: Path, shape: tuple[int, ...]) -> None:
    """An .npz whose 'x' declares `shape` in its header but holds no data: a compressed file of zeros would
    declare as much, and load that much."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    labels = io.BytesIO()
    np.save(labels, np.arange(5))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", header.getvalue())
        archive.writestr("y.npy", labels.getvalue())


@pytest.mark.parametrize("make,phrase", [
    pytest.param(lambda p: p.write_bytes(_npz(p, x=np.zeros((5, 64)), y=np.arange(5)).read_bytes()[:200]), "not a .npz", id="truncated"),
    pytest.param(lambda p: p.write_text("x,y\n1,2\n"), "not a .npz", id="a CSV"),
    pytest.param(lambda p: _npz(p, x=np.zeros((5, 64)), y=np.array(3)), "'y' ()", id="a scalar label"),
    pytest.param(lambda p: _npz(p, x=np.zeros(5), y=np.arange(5)), "'x' has shape (5,)", id="samples without features"),
    pytest.param(lambda p: _npz(p, x=np.zeros((5, 64)), y=np.arange(4)), "(4,)", id="fewer labels than samples"),
    pytest.param(lambda p: _npz(p, x=np.zeros((5, 64), np.complex64), y=np.arange(5)), "complex64", id="complex samples"),
    pytest.param(lambda p: _npz(p, x=np.zeros((5, 64)), y=np.ones(5, bool)), "bool", id="boolean labels"),
    pytest.param(lambda p: _npz(p, x=np.zeros((0, 64)), y=np.zeros(0, np.int64)), "no samples", id="no samples"),
    pytest.param(lambda p: _npz(p, x=np.full((5, 64), np.nan), y=np.arange(5)), "NaN", id="NaN samples"),
    pytest.param(lambda p: _npz(p, x=np.zeros((5, 63)), y=np.arange(5)), "(63,)", id="samples of the wrong size"),
    pytest.param(lambda p: _npz_declaring(p, (10**6, 10**6)), "GiB", id="declares more than memory"),
])
def test_bad_data_files(capsys, tmp_path, make, phrase):
    data = tmp_path / "data.npz"
    make(data)
    _compile_refused(capsys, tmp_path, ROOT / "models" / "zoo" / "digits_mlp_relu.onnx", str(data), phrase, data=data)


def test_labels_beyond_the_models_outputs_are_refused_naming_the_file(tmp_path):
    data = _npz(tmp_path / "labels.npz", x=np.zeros((5, 64), np.float32), y=np.array([0, 1, 9, 10, 2]))
    with pytest.raises(SnncError, match=r"labels\.npz: labels go up to 10 but the model has 10 outputs"):
        check_labels(load_dataset(str(data)), 10, str(data))
    check_labels(load_dataset(str(data)), 11, str(data))


def test_compile_refuses_labels_beyond_the_models_outputs(capsys, tmp_path):
    data = _npz(tmp_path / "labels.npz", x=np.zeros((5, 64), np.float32), y=np.array([0, 1, 9, 10, 2]))
    _compile_refused(capsys, tmp_path, ROOT / "models" / "zoo" / "digits_mlp_relu.onnx", str(data), "10 outputs", data=data)


# -- the command line --------------------------------------------------------------------------------------


def test_debug_shows_the_traceback_before_or_after_the_command(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    for argv in (["--debug", "compile", bad], ["compile", bad, "--debug"]):
        result = subprocess.run([*SNNC, *map(str, argv)], capture_output=True, text=True, cwd=ROOT, timeout=300)
        assert result.returncode != 0 and "Traceback" in result.stderr and "SnncError" in result.stderr, result.stderr


def test_an_output_path_that_is_a_file(capsys, tmp_path):
    out = tmp_path / "out"
    out.write_text("mine")
    _refused(capsys, "compile", ROOT / "models" / "zoo" / "digits_mlp_relu.onnx", "--timesteps", "2", "--samples", "10",
             "-o", out, names=(str(out), "not a folder"))
    assert out.read_text() == "mine"


# -- output folders are never half written ----------------------------------------------------------------


def _leftovers(folder: Path, name: str) -> list[str]:
    """Staging and swap folders of OUTDIR `name` (the lock file `.name.lock` stays by design)."""
    return sorted(p.name for p in folder.glob(f".{name}.*") if p.is_dir())


@pytest.mark.parametrize("sig,code,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")],
                         ids=["ctrl-c", "sigterm"])
def test_a_stopped_compile_leaves_the_previous_output_and_no_staging(tmp_path, sig, code, word):
    out = tmp_path / "OUT"
    out.mkdir()
    (out / "marker").write_text("previous run")
    command = [*SNNC, "compile", str(ROOT / "models" / "zoo" / "digits_mlp_relu.onnx"), "--data", "digits",
               "--timesteps", "256", "-o", str(out)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _leftovers(tmp_path, "OUT") and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # wait until the compile writes into its staging folder
    assert _leftovers(tmp_path, "OUT"), "the compile ended before it staged any output"
    time.sleep(0.5)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert word in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == ["marker"] and (out / "marker").read_text() == "previous run"
    assert _leftovers(tmp_path, "OUT") == []


@pytest.mark.parametrize("sig,raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)], ids=["ctrl-c", "sigterm"])
def test_a_signal_during_the_swap_is_delivered_after_it(tmp_path, monkeypatch, sig, raised):
    """Cut between the swap's two renames, OUTDIR would be gone: the signal must wait until the new one is in place."""
    out = tmp_path / "OUT"
    out.mkdir()
    (out / "marker").write_text("previous run")
    replace = os.replace
    monkeypatch.setattr(outdir_module.os, "replace", lambda a, b: (os.kill(os.getpid(), sig), replace(a, b)))
    with pytest.raises(raised), sigterm_raises():
        with staged_output(out) as folder:
            (folder / "result").write_text("new run")
    assert [p.name for p in out.iterdir()] == ["result"]
    assert _leftovers(tmp_path, "OUT") == []


def test_concurrent_writers_of_one_outdir_take_turns(tmp_path, monkeypatch):
    """Both finish writing together and swap together; a slowed rename widens the race the lock must close."""
    out = tmp_path / "OUT"
    replace = os.replace
    monkeypatch.setattr(outdir_module.os, "replace", lambda a, b: (time.sleep(0.05), replace(a, b)))
    both_written = threading.Barrier(2)
    errors = []

    def write(tag: str) -> None:
        try:
            with staged_output(out) as folder:
                for i in range(20):
                    (folder / f"file{i}").write_text(tag)
                both_written.wait(timeout=30)
        except BaseException as err:
            errors.append(err)

    writers = [threading.Thread(target=write, args=(tag,)) for tag in ("a", "b")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
    assert errors == []
    contents = {p.read_text() for p in out.iterdir()}
    assert len(list(out.iterdir())) == 20 and len(contents) == 1  # one writer's folder, whole
    assert _leftovers(tmp_path, "OUT") == []


def test_a_failed_command_removes_its_staging_and_the_parents_it_created(tmp_path):
    out = tmp_path / "new" / "nested" / "OUT"
    with pytest.raises(SnncError):
        with staged_output(out) as folder:
            (folder / "model.nir").write_text("half")
            raise SnncError("failed late")
    assert not (tmp_path / "new").exists()
