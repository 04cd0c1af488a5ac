"""snnc's Python API: `snnc.compile(model.onnx, neuron=..., data=...)` → a CompiledNetwork (toolchain/api.py);
`snnc.sweep(model.onnx, neurons=..., taus=..., ...)` → the sweep's rows and recommendations (toolchain/sweep.py)."""

from targets.result import RunResult
from toolchain import __version__
from toolchain.api import CompiledNetwork, compile, run_nir_file
from toolchain.errors import SnncError
from toolchain.options import CompileOptions
from toolchain.sweep import sweep

__all__ = ["CompileOptions", "CompiledNetwork", "RunResult", "SnncError", "__version__", "compile", "run_nir_file", "sweep"]
