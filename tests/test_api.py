"""The Python API as the README shows it, and `snnc run` giving back what `snnc compile` reported."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import snnc
from toolchain.cli import main
from toolchain.neurons import model_names

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_api_example_runs(monkeypatch, tmp_path):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Python API.*?```python\n(.*?)```", text, re.S)
    assert block, "README.md has no Python API example"
    monkeypatch.chdir(ROOT)
    namespace = {}
    exec(compile(block.group(1).replace("out/api.nir", str(tmp_path / "api.nir")), "README.md", "exec"), namespace)
    net = namespace["net"]
    assert isinstance(net, snnc.CompiledNetwork)
    assert (tmp_path / "api.nir").is_file()
    assert net.report["targets"]["reference"]["accuracy"]["8"] > 0.9


def test_api_runs_without_writing_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = snnc.compile(ROOT / "models/zoo/digits_cnn_qcfs8.onnx", neuron="gn", tau=2, data="digits", timesteps=(2, 4), samples=30)
    result = net.run(timesteps=4)
    assert result.predictions.shape == (4, 30) and sum(result.spikes.values()) > 0
    assert net.check("reference")["passed"]
    assert list(tmp_path.iterdir()) == []


def test_api_refuses_an_option_of_another_model():
    with pytest.raises(snnc.SnncError, match="--tau"):
        snnc.compile(ROOT / "models/zoo/digits_cnn_qcfs8.onnx", neuron="if", tau=4, samples=10)


@pytest.mark.parametrize("neuron", model_names())
def test_run_on_the_written_file_reports_what_compile_reported(neuron, tmp_path, capsys):
    out = tmp_path / "out"
    common = ["--data", "digits", "--timesteps", "4,8", "--samples", "60"]
    assert main(["compile", str(ROOT / "models/zoo/digits_cnn_qcfs8.onnx"), "--neuron", neuron, *common, "-o", str(out)]) == 0
    # the compile ran where --device auto chose; the run on the CPU reports the same (tests/test_gpu.py: a GPU)
    assert main(["run", str(out / "model.nir"), *common, "--device", "cpu", "-o", str(tmp_path / "run")]) == 0
    import json

    compiled = json.loads((out / "report.json").read_text())["targets"]["reference"]
    ran = json.loads((tmp_path / "run" / "report.json").read_text())["targets"]["reference"]
    assert ran["accuracy"] == compiled["accuracy"]
    assert ran["spikes_per_inference"] == compiled["spikes_per_inference"]
    assert ran["spikes_per_layer"] == compiled["spikes_per_layer"]
