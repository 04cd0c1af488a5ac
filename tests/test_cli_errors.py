"""Bad input gets one line naming the file or node and the fix, exit code 2, and no output folder."""

import subprocess
from pathlib import Path
import sys

import numpy as np
import onnx
import pytest
from onnx import helper

from tests.onnx_models import model, rand

SNNC = [sys.executable, "-m", "toolchain.cli"]


def _snnc(*args, cwd):
    return subprocess.run([*SNNC, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def _assert_one_line_error(result, *phrases):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("snnc: error: "), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture
def sigmoid_model(tmp_path):
    nodes = [helper.make_node("Gemm", ["x", "w"], ["h"], name="fc1"), helper.make_node("Sigmoid", ["h"], ["y"], name="act1")]
    path = tmp_path / "sigmoid.onnx"
    model(nodes, (4,), (3,), {"w": rand(4, 3)}, path=path)
    return path


def test_unsupported_op_names_op_node_and_supported_list(tmp_path, sigmoid_model):
    result = _snnc("compile", sigmoid_model, "--data", "digits", "-o", tmp_path / "out", cwd=tmp_path)
    _assert_one_line_error(result, "act1", "Sigmoid", "Conv", "Gemm", "supports")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content,phrase", [(b"", "empty"), (b"this is not a protobuf \xff\xfe", "not an ONNX model")])
def test_not_onnx(tmp_path, content, phrase):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    result = _snnc("compile", bad, "-o", tmp_path / "out", cwd=tmp_path)
    _assert_one_line_error(result, str(bad), phrase)
    assert not (tmp_path / "out").exists()


def test_truncated_model(tmp_path, zoo):
    data = (zoo / "digits_mlp_relu.onnx").read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    _assert_one_line_error(_snnc("compile", cut, "-o", tmp_path / "out", cwd=tmp_path), str(cut))
    assert not (tmp_path / "out").exists()


def test_missing_file(tmp_path):
    _assert_one_line_error(_snnc("compile", tmp_path / "nope.onnx", cwd=tmp_path), "no such file")


def test_maxpool_message_names_the_fix(tmp_path):
    path = tmp_path / "mp.onnx"
    model([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2, 2], name="pool1")], (1, 8, 8), None, path=path)
    _assert_one_line_error(_snnc("compile", path, "--maxpool", "error", "-o", tmp_path / "o", cwd=tmp_path), "pool1", "--maxpool avg")


def test_softmax_inside_the_network_is_refused(tmp_path):
    nodes = [helper.make_node("Softmax", ["x"], ["s"], name="sm"), helper.make_node("Gemm", ["s", "w"], ["y"])]
    path = tmp_path / "sm.onnx"
    model(nodes, (4,), (3,), {"w": rand(4, 3)}, path=path)
    _assert_one_line_error(_snnc("compile", path, "-o", tmp_path / "o", cwd=tmp_path), "sm", "output")


def test_unsupported_opset(tmp_path):
    path = tmp_path / "old.onnx"
    model([helper.make_node("Relu", ["x"], ["y"])], (4,), (4,), opset=6, path=path)
    _assert_one_line_error(_snnc("compile", path, cwd=tmp_path), "opset 6")


def test_unknown_dataset_and_bad_npz(tmp_path, zoo):
    mlp = zoo / "digits_mlp_relu.onnx"
    _assert_one_line_error(_snnc("compile", mlp, "--data", "cifar", "-o", tmp_path / "o", cwd=tmp_path), "cifar", "digits")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((5, 3, 3), np.float32), y=np.zeros(5, np.int64))
    _assert_one_line_error(_snnc("compile", mlp, "--data", bad, "-o", tmp_path / "o", cwd=tmp_path), "bad.npz", "(3, 3)")
    labels = tmp_path / "labels.npz"
    np.savez(labels, x=np.zeros((5, 64), np.float32), y=np.array([0, 1, -1, 2, 3]))
    _assert_one_line_error(_snnc("compile", mlp, "--data", labels, "-o", tmp_path / "o", cwd=tmp_path), "labels")
    assert not (tmp_path / "o").exists()


def test_bad_timesteps(tmp_path, zoo):
    _assert_one_line_error(_snnc("compile", zoo / "digits_mlp_relu.onnx", "--timesteps", "0,x", cwd=tmp_path), "--timesteps")


def test_malformed_nir_file(tmp_path):
    bad = tmp_path / "model.nir"
    bad.write_bytes(b"not hdf5")
    _assert_one_line_error(_snnc("run", bad, "--data", "digits", cwd=tmp_path), "model.nir", "not a readable NIR file")


def test_inspect_lists_nodes_and_marks_the_unsupported_one(tmp_path, sigmoid_model):
    result = _snnc("inspect", sigmoid_model, cwd=tmp_path)
    assert result.returncode == 2
    assert "UNSUPPORTED" in result.stdout and "act1" in result.stdout and "blocking nodes" in result.stdout


@pytest.mark.parametrize("name,options,converts", [
    ("light_bvlc_alexnet", [], False),
    ("light_zfnet512", ["--drop-lrn"], True),
    ("light_inception_v2", [], True),  # asymmetric max pooling pads
    ("light_shufflenet", [], True),  # channel shuffles
])
def test_inspect_model_zoo_files(tmp_path, name, options, converts):
    """Opset-9 files as given: exit 0 with no UNSUPPORTED node when they convert, 2 listing the blockers when not."""
    path = Path(onnx.__file__).parent / "backend/test/data/light" / f"{name}.onnx"
    result = _snnc("inspect", path, "--maxpool", "avg", *options, cwd=tmp_path)
    assert result.returncode == (0 if converts else 2), result.stderr
    assert "opset 9 upgraded" in result.stdout if converts else "blocking nodes" in result.stdout
    if converts:
        assert "UNSUPPORTED" not in result.stdout
    else:
        # every LRN, not only the first at which the import stops, and marked so in the table
        blockers = result.stdout.split("blocking nodes")[1]
        assert "node 'n2' (LRN)" in blockers and "node 'n6' (LRN) blocks (--drop-lrn drops it)" in blockers
        assert "| n6        | LRN             | 1x256x26x26  | BLOCKS (--drop-lrn drops it) |" in result.stdout


@pytest.mark.parametrize("option,value", [("--samples", "-3"), ("--samples", "0"), ("--batch-size", "-5"), ("--threads", "0"),
                                          ("--lava-samples", "0"), ("--calibration-samples", "0"), ("--tau", "0"),
                                          ("--cycle", "0"), ("--samples", "ten"), ("--percentile", "150"), ("--percentile", "nan")])
def test_bad_option_values_are_one_line_errors(tmp_path, zoo, option, value):
    """--samples -3 once evaluated all but the last 3 samples, --batch-size -5 crashed, --lava-samples 0 hung."""
    result = _snnc("compile", zoo / "digits_mlp_relu.onnx", option, value, "-o", tmp_path / "out", cwd=tmp_path)
    _assert_one_line_error(result, option, f"'{value}'", "--help")
    assert not (tmp_path / "out").exists()


def test_unknown_command_and_missing_model_are_one_line_errors(tmp_path):
    _assert_one_line_error(_snnc("frobnicate", cwd=tmp_path), "frobnicate", "compile")
    _assert_one_line_error(_snnc("compile", cwd=tmp_path), "model", "snnc compile --help")
