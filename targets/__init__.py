"""Targets: each a package here whose `TARGET` implements `targets.interface.Target`; found by `registry()`.

Adding a target is one package: `targets/NAME/__init__.py` with `TARGET = NameTarget()` (docs/architecture.md).
"""

from __future__ import annotations

from functools import cache

from targets.interface import Target
from toolchain.errors import SnncError
from toolchain.registry import discover


@cache
def registry() -> dict[str, Target]:
    """Every target package's TARGET by name, in the order of their `ORDER`, then by name."""
    return discover(__path__, __name__, "TARGET", Target, packages_only=True)


def get_target(name: str) -> Target:
    targets = registry()
    if name not in targets:
        raise SnncError(f"unknown target '{name}': choose from {', '.join(targets)}")
    return targets[name]


def all_options() -> dict:
    """Every target's options by name."""
    return {option.name: option for target in registry().values() for option in target.options}
