"""Zoo models on a GPU (--device cuda) against the CPU: identical spikes in Loihi precision (integers in float64),
the float tolerance of every target check in float (cuDNN's convolutions round differently from oneDNN's).
Skipped without a CUDA device; whoever has one runs `pytest tests/test_gpu.py`."""

import pytest
import torch

from tests.test_device import assert_same_run, compiled_networks

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device is visible to torch")

MODELS = [("digits_cnn_qcfs8", "digits"), ("digits_mlp_relu", "digits"), ("mnist5k_lenet_maxpool", "mnist5k")]


@pytest.mark.parametrize("neuron", ["if", "gn", "parallel", "tpp", "bsnn"])
@pytest.mark.parametrize("model,data", MODELS)
def test_zoo_model_on_cuda_runs_like_the_cpu(zoo, model, data, neuron):
    networks, x = compiled_networks(zoo, model, neuron, data=data, samples=200)
    assert_same_run(networks["loihi"], x, exact=True, device="cuda")
    assert_same_run(networks["float"], x, exact=False, device="cuda")

