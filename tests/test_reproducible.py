"""The same model, data and options give byte-identical model.nir and report.json.

The two compiles run as separate processes with different hash seeds, so that nothing may depend on set or
dict order that varies between runs, on time (HDF5 can store timestamps in model.nir) or on the output path.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _compile(out: Path, hash_seed: str) -> None:
    command = [sys.executable, "-m", "toolchain.cli", "compile", str(ROOT / "models" / "zoo" / "digits_mlp_relu.onnx"),
               "--data", "digits", "--timesteps", "1,4,16", "--samples", "120", "--calibration-samples", "300", "-o", str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONHASHSEED": hash_seed})
    assert result.returncode == 0, result.stderr


def test_two_compiles_write_identical_model_and_report(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    _compile(first, "1")
    _compile(second, "2")
    for name in ("model.nir", "report.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), f"{name} differs between two identical compiles"
    report = json.loads((first / "report.json").read_text())
    assert {"snnc", "numpy", "onnx", "onnxruntime", "nir", "torch"} <= set(report["versions"])
