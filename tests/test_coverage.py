"""The ONNX coverage matrix (docs/coverage.md, benchmarks/coverage.py): every architecture converts with every
exporter setting and agrees with onnxruntime, except the gaps marked below; a gap that gets fixed fails its strict
xfail, so that its mark (and the document) are updated."""

import re

import pytest

from benchmarks.coverage import COVERAGE, EXPORTS, TOLERANCE, ExportFailed, coverage_markdown, outcome
from benchmarks.coverage_models import ARCHITECTURES
from toolchain.errors import SnncError

# (architecture, export) → why snnc refuses it today; none at present. A cell listed here is a strict xfail that must
# raise SnncError, so that fixing it fails the test until the entry is removed.
KNOWN_GAPS: dict[tuple[str, str], str] = {}


def cells() -> list:
    found = []
    for architecture in ARCHITECTURES:
        for export in EXPORTS:
            key = (architecture.name, export.name)
            marks = [pytest.mark.xfail(strict=True, raises=SnncError, reason=KNOWN_GAPS[key])] if key in KNOWN_GAPS else []
            found.append(pytest.param(*key, marks=marks, id=f"{key[0]}-{key[1]}"))
    return found


@pytest.mark.parametrize("architecture, export", cells())
def test_every_architecture_converts_and_agrees_with_onnxruntime(architecture, export):
    result = outcome(architecture, export)
    if isinstance(result, ExportFailed):
        pytest.skip(f"torch cannot export it: {result}")
    if isinstance(result, SnncError):
        raise result
    assert result <= TOLERANCE, f"snnc's ANN graph differs from onnxruntime by {result:.1e} of the output scale"


def without_numbers(text: str) -> str:
    """The document with each ✓ cell's error left out: the last digit may differ between machines."""
    return re.sub(r"✓ [0-9.e+-]+", "✓", text)


def test_coverage_matrix_is_generated():
    assert without_numbers(COVERAGE.read_text()) == without_numbers(coverage_markdown()), \
        "docs/coverage.md is stale: run `make docs`"
