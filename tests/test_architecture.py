"""The stages' import rules, read from the source: arrows only point down the stages, no module imports another
module's private name, and no import cycle (docs/architecture.md)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("toolchain", "targets", "snnc")
# From the bottom up; a module may import its own stage and the stages below it. The longest prefix decides.
STAGES = [
    ("base", ("toolchain.errors", "toolchain.progress", "toolchain.outdir", "toolchain.data", "toolchain.onnx_runtime",
              "toolchain.chips", "toolchain.option", "toolchain.registry", "toolchain")),
    ("neurons", ("toolchain.neurons",)),
    ("ir", ("toolchain.ir", "toolchain.graph")),
    ("frontend", ("toolchain.frontend",)),
    ("passes", ("toolchain.passes",)),
    ("targets", ("targets",)),
    ("costs", ("toolchain.costs",)),
    ("report", ("toolchain.report",)),
    ("pipeline", ("toolchain.options", "toolchain.pipeline", "toolchain.evaluation", "toolchain.sweep")),
    ("api", ("toolchain.api", "toolchain.inspect", "toolchain.docs", "snnc")),
    ("cli", ("toolchain.cli",)),
]


def stage_of(module: str) -> int:
    matches = [(len(p), rank) for rank, (_, prefixes) in enumerate(STAGES) for p in prefixes
               if module == p or module.startswith(p + ".")]
    assert matches, f"module {module} belongs to no stage; add it to STAGES"
    return max(matches)[1]


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports(path: Path, module: str, known: dict) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) for every import in the file, at any depth."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((submodule, None) if submodule in known else (base, alias.name))
    return [(m, n) for m, n in found if m.split(".")[0] in PACKAGES]


def edges():
    known = modules()
    for module, path in known.items():
        for target, name in imports(path, module, known):
            yield module, target, name


def test_every_module_belongs_to_a_stage():
    for module in modules():
        stage_of(module)


def test_arrows_point_down_the_stages():
    upward = [f"{m} ({STAGES[stage_of(m)][0]}) imports {t} ({STAGES[stage_of(t)][0]})"
              for m, t, _ in edges() if stage_of(t) > stage_of(m)]
    assert not upward, "\n".join(upward)


def test_no_module_imports_a_private_name():
    private = [f"{m} imports {n} from {t}" for m, t, n in edges()
               if (n and n.startswith("_") and n != "__version__") or any(p.startswith("_") and p != "__init__" for p in t.split("."))]
    assert not private, "\n".join(private)


def private_imports_in(folder: Path) -> list[str]:
    """Private names that the files of a folder outside the packages (tests, benchmarks) import from the project."""
    project = (*PACKAGES, "tests", "benchmarks")
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in project:
                found += [f"{folder.name}/{path.relative_to(folder)} imports {alias.name} from {node.module}" for alias in node.names
                          if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


@pytest.mark.parametrize("folder", ["tests", "benchmarks"])
def test_tests_and_benchmarks_import_no_private_name(folder):
    private = private_imports_in(ROOT / folder)
    assert not private, "\n".join(private)


def test_no_import_cycle():
    graph = {}
    for module, target, _ in edges():
        if target != module and not module.startswith(target + "."):  # a package's own modules may see it
            graph.setdefault(module, set()).add(target)
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")


@pytest.mark.parametrize("source,expected", [
    ("from targets.reference.runtime import _topological_order\n", "private"),
    ("import toolchain.cli\n", "upward"),
])
def test_the_checks_catch_what_they_are_for(tmp_path, source, expected):
    """A planted violation in a copy of a base module is found."""
    path = tmp_path / "errors.py"
    path.write_text(source)
    found = imports(path, "toolchain.errors", modules())
    if expected == "private":
        (tmp_path / "tests").mkdir()
        (tmp_path / "tests" / "test_planted.py").write_text(source)
        assert private_imports_in(tmp_path / "tests") == ["tests/test_planted.py imports _topological_order from targets.reference.runtime"]
        assert any(n and n.startswith("_") for _, n in found)
    else:
        assert any(stage_of(t) > stage_of("toolchain.errors") for t, _ in found)
