"""The ONNX coverage matrix: `python -m benchmarks.coverage` (part of `make docs`) writes docs/coverage.md.

Every architecture of benchmarks/coverage_models.py is exported with every exporter setting of EXPORTS into a
temporary folder, then converted: imported and canonicalised, thresholds calibrated on a few random inputs, lowered
to IF neurons. Where that works the cell shows the largest difference between the canonical ANN graph and
onnxruntime on the original file, relative to the largest output; where it does not, snnc's one-line error.
tests/test_coverage.py checks every cell and that docs/coverage.md is what this module generates.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import logging
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from benchmarks.coverage_models import ARCHITECTURES, Architecture, seeded_model
from toolchain.docs import write_document
from toolchain.errors import SnncError
from toolchain.ir.evaluate import evaluate_ann
from toolchain.passes import calibrate_thresholds, lower_to_nir
from toolchain.pipeline import import_model

COVERAGE = Path(__file__).resolve().parents[1] / "docs" / "coverage.md"
TOLERANCE = 1e-4  # relative to the largest output magnitude
SAMPLES = 2  # the batch of the export and of the comparison; 2, so that a batch dimension cannot pass as a constant 1
CALIBRATION_SAMPLES = 8
MESSAGE_LENGTH = 100


@dataclass(frozen=True)
class Export:
    """One exporter setting: the legacy TorchScript exporter at an opset, or the dynamo exporter (torch's default)."""

    name: str
    dynamo: bool
    opset: int | None = None  # None: the exporter's default
    dynamic_batch: bool = False
    options: dict = field(default_factory=dict, compare=False, hash=False)

    def write(self, model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
        if self.dynamo:
            dynamic = ({0: torch.export.Dim("batch")},) if self.dynamic_batch else None
            torch.onnx.export(model, (x,), str(path), dynamo=True, opset_version=self.opset, dynamic_shapes=dynamic,
                              verbose=False, external_data=False)
        else:
            axes = {"input": {0: "batch"}, "output": {0: "batch"}} if self.dynamic_batch else None
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=self.opset, input_names=["input"],
                              output_names=["output"], dynamic_axes=axes)


EXPORTS = [
    Export("legacy, opset 11", False, 11),
    Export("legacy, opset 13", False, 13),
    Export("legacy, opset 17", False, 17),
    Export("legacy, opset 17, dynamic batch", False, 17, dynamic_batch=True),
    Export("dynamo", True),
    Export("dynamo, dynamic batch", True, dynamic_batch=True),
]


def inputs(architecture: Architecture, count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, *architecture.input_shape)).astype(np.float32)


def onnxruntime_output(path: Path, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


class ExportFailed(Exception):
    """torch could not write the file: the cell says so and nothing of snnc's is tested."""


def relative_error(architecture: Architecture, export: Export) -> float:
    """Export, convert and compare one cell; raises SnncError where snnc refuses the file, ExportFailed where torch
    cannot write it."""
    torch.set_num_threads(1)  # the matrix shares small machines
    # the dynamo exporter logs a warning per missing torchvision op on every export
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    x = inputs(architecture, SAMPLES, seed=0)
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        path = Path(folder) / "model.onnx"
        try:
            export.write(seeded_model(architecture), torch.from_numpy(x), path)
        except Exception as error:  # whatever torch raises: its exporters have no common error type
            raise ExportFailed(str(error).splitlines()[0].split(". ")[0]) from error  # its first sentence
        try:
            imported = import_model(path)
            calibrated = calibrate_thresholds(copy.deepcopy(imported.graph), imported.model,
                                              inputs(architecture, CALIBRATION_SAMPLES, seed=1), threads=1)
            lower_to_nir(calibrated, "if")
        except SnncError as error:  # without the temporary folder, so that the document is reproducible
            raise SnncError(str(error).replace(str(path), path.name)) from error
        expected = onnxruntime_output(path, x)
    actual = evaluate_ann(imported.graph, x).reshape(expected.shape)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@functools.cache
def outcome(architecture_name: str, export_name: str) -> float | SnncError | ExportFailed:
    """The cell's relative error, or the error snnc raised; computed once per process (the test and the document
    share it)."""
    architecture = next(a for a in ARCHITECTURES if a.name == architecture_name)
    export = next(e for e in EXPORTS if e.name == export_name)
    try:
        return relative_error(architecture, export)
    except (SnncError, ExportFailed) as error:
        return error


def shortened(message: str) -> str:
    message = message if len(message) <= MESSAGE_LENGTH else message[: MESSAGE_LENGTH - 1] + "…"
    return message.replace("|", "\\|")


def cell_text(result: float | SnncError | ExportFailed) -> str:
    if isinstance(result, ExportFailed):
        return "torch cannot export: " + shortened(str(result))
    if isinstance(result, SnncError):
        return "✗ " + shortened(str(result))
    return ("✓ " if result <= TOLERANCE else "✗ differs by ") + f"{result:.0e}"


def coverage_markdown() -> str:
    lines = [
        "# ONNX coverage matrix",
        "",
        "<!-- generated by `make docs` (python -m benchmarks.coverage) from benchmarks/coverage_models.py; do not edit -->",
        "",
        "Common architectures written in plain torch with torchvision's layer structure (small widths, 3×32×32 or "
        "1×28×28 inputs, and VGG also on 3×224×224, where its AdaptiveAvgPool2d((7, 7)) is an identity, and 3×64×64, where its bins overlap; seeded random weights and "
        "BatchNorm statistics; benchmarks/coverage_models.py), exported with each exporter setting and converted by "
        "snnc: import, canonicalisation, threshold calibration on random inputs and lowering to IF neurons. ✓ shows "
        "the largest difference between snnc's ANN graph and onnxruntime "
        f"on the exported file, relative to the largest output (required: ≤ {TOLERANCE:.0e}); ✗ shows snnc's "
        "one-line error. tests/test_coverage.py checks every cell.",
        "",
        "| architecture | " + " | ".join(e.name for e in EXPORTS) + " |",
        "|---|" + "---|" * len(EXPORTS),
    ]
    for architecture in ARCHITECTURES:
        cells = [cell_text(outcome(architecture.name, export.name)) for export in EXPORTS]
        lines.append(f"| {architecture.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    return write_document(COVERAGE, coverage_markdown())


if __name__ == "__main__":
    sys.exit(main())
