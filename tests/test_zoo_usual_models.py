"""The zoo models trained the usual way (plain ReLU, MaxPool, legacy exporter): each file is what its card says.

The accuracy is recomputed with onnxruntime on a slice of the test split and compared with the number the card,
the README table and the file's metadata record for the whole split; the slice is large enough that a file
retrained with another recipe, or a card left over from another run, falls outside the tolerance.
"""

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tests.conftest import ROOT, fashion_available
from toolchain.data import load_dataset

# name, dataset, test samples checked, tolerance in points (about 3 binomial standard deviations of the slice)
MODELS = [
    ("mnist5k_lenet_maxpool", "mnist5k", 1000, 0.01),  # the whole test split: must match to the printed digits
    pytest.param("fashion_resnet_maxpool", "fashion", 3000, 1.6,
                 marks=pytest.mark.skipif(not fashion_available(), reason="dataset-fashion-mnist is not installed")),
]


def _card_accuracy(name: str) -> float:
    card = (ROOT / "models" / "zoo" / f"{name}.md").read_text()
    return float(re.search(r"on all \d+ test samples\): \*\*([\d.]+) %\*\*", card).group(1))


def _readme_accuracy(name: str) -> float:
    row = next(line for line in (ROOT / "models" / "README.md").read_text().splitlines() if f"[`{name}`]" in line)
    return float(re.findall(r"([\d.]+) %", row)[0])


@pytest.mark.parametrize("name, dataset, samples, tolerance", MODELS)
def test_onnxruntime_accuracy_matches_the_card(name, dataset, samples, tolerance):
    path = ROOT / "models" / "zoo" / f"{name}.onnx"
    proto = onnx.load(str(path))
    recorded = float({p.key: p.value for p in proto.metadata_props}["snnc.ann_test_accuracy"]) * 100
    assert _card_accuracy(name) == pytest.approx(recorded, abs=0.005)
    assert _readme_accuracy(name) == pytest.approx(recorded, abs=0.005)

    data = load_dataset(dataset)
    x, y = np.ascontiguousarray(data.x_test[:samples], dtype=np.float32), data.y_test[:samples]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(None, {"input": x[i: i + 500]})[0] for i in range(0, len(x), 500)])
    assert 100 * np.mean(logits.argmax(1) == y) == pytest.approx(recorded, abs=tolerance)


@pytest.mark.parametrize("name", ["mnist5k_lenet_maxpool", "fashion_resnet_maxpool"])
def test_file_is_a_legacy_export_with_max_pooling(name):
    path = ROOT / "models" / "zoo" / f"{name}.onnx"
    proto = onnx.load(str(path))
    ops = [node.op_type for node in proto.graph.node]
    assert proto.producer_name == "pytorch"
    assert next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 13
    assert "MaxPool" in ops and "Relu" in ops
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert path.stat().st_size < 1_000_000
