"""The reference runtime on a chosen device (--device): what a GPU runs, checked on the CPU.

Off the CPU the runtime swaps its numba kernels for torch ones (targets/reference/torch_kernels.py). Those run on
the CPU too when told (compiled_kernels=False), so CI without a GPU checks them against the numpy spec and the
numba kernels bit for bit (here and in tests/test_neuron_two_phase.py); tests/test_gpu.py runs whole networks on
a GPU where there is one.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import snnc
from targets.reference import ReferenceRuntime, torch_kernels
from targets.reference.runtime import full_float32_precision, resolve_device
from toolchain.errors import SnncError
from toolchain.neurons import two_phase
from toolchain.options import CompileOptions
from toolchain.report import compare_runs

NO_CUDA = not torch.cuda.is_available()
STEPS = 8


def compiled_networks(zoo, model: str, neuron: str, data: str = "digits", samples: int = 64):
    """The float and Loihi networks of a zoo model at T=8 and the test samples they run on."""
    net = snnc.compile(zoo / f"{model}.onnx", neuron=neuron, data=data, timesteps=(STEPS,), samples=samples,
                       calibration_samples=200, precision="loihi", device="cpu")
    return net.networks[STEPS], net.x


def assert_same_run(graph, x, exact: bool, **device) -> None:
    """The run on `device` (ReferenceRuntime keywords) against the CPU's compiled kernels: identical spikes,
    predictions and readout when exact, else the float tolerance every target is checked with (docs/targets.md)."""
    expected = ReferenceRuntime(graph).run(x, STEPS)
    got = ReferenceRuntime(graph, **device).run(x, STEPS)
    if exact:
        assert got.spikes == expected.spikes
        np.testing.assert_array_equal(got.predictions, expected.predictions)
        np.testing.assert_array_equal(got.readout, expected.readout)
    else:
        check = compare_runs("device", got, expected, False)
        assert check["passed"], check


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), sample=st.integers(0, 10**6), rows=st.integers(1, 5))
def test_torch_generator_is_the_specs_uniforms_bit_for_bit(seed, sample, rows):
    """int64 arithmetic with masked shifts gives two_phase.uniforms' uint64 numbers exactly."""
    shape = (3, 4, 5)
    key = two_phase.stream_key(seed, "conv1", sample)
    keys = torch.tensor([int(np.array(key).view(np.int64))]).reshape(1, 1, 1, 1)
    counters = torch.arange(1, rows * 60 + 1, dtype=torch.int64).reshape(rows, *shape)
    ours = torch_kernels.uniform(keys, counters).numpy()
    np.testing.assert_array_equal(ours, two_phase.uniforms(seed, "conv1", sample, rows, shape))


@pytest.mark.parametrize("neuron", ["parallel", "tpp", "bsnn", "if"])
def test_a_network_on_the_torch_kernels_equals_the_compiled_ones(zoo, neuron):
    """The whole runtime with a GPU's kernels, on the CPU: the same spikes, predictions and readout, float and Loihi."""
    networks, x = compiled_networks(zoo, "digits_cnn_qcfs8", neuron, samples=48)
    for graph in networks.values():
        assert_same_run(graph, x, exact=True, compiled_kernels=False)


def test_runs_keep_float32_products_out_of_tf32_and_restore_the_settings():
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        with full_float32_precision():
            assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def test_auto_is_the_cpu_without_a_cuda_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(SnncError, match="no CUDA device is visible"):
        resolve_device("cuda")
    with pytest.raises(SnncError, match="no CUDA device is visible"):
        CompileOptions.from_keywords(device="cuda")


def test_the_device_is_an_option_of_the_api_and_a_choice():
    assert CompileOptions.from_keywords(device="cpu").target_options["device"] == "cpu"
    assert CompileOptions().target_options["device"] == "auto"
    with pytest.raises(SnncError, match="--device must be one of auto, cpu, cuda"):
        CompileOptions.from_keywords(device="tpu")


@pytest.mark.skipif(not NO_CUDA, reason="a CUDA device is visible, so --device cuda is valid here")
@pytest.mark.parametrize("command", [["compile", "models/zoo/digits_cnn_qcfs8.onnx"], ["run", "missing.nir"]])
def test_cuda_without_a_cuda_device_is_one_line_exit_2(tmp_path, command):
    """Checked with the options, before anything is read or computed."""
    from tests.conftest import ROOT

    result = subprocess.run([sys.executable, "-m", "toolchain.cli", *command, "--device", "cuda", "-o", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("snnc: error: --device cuda: no CUDA device is visible"), result.stderr
    assert not (tmp_path / "out").exists()
