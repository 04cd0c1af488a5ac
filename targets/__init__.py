"""Targets: each a package here whose `TARGET` implements `targets.interface.Target`; found by `registry()`.

Adding a target is one package: `targets/NAME/__init__.py` with `TARGET = NameTarget()` (docs/architecture.md).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from targets.interface import Target
from toolchain.errors import SnncError


@cache
def registry() -> dict[str, Target]:
    """Every target package's TARGET by name, in the order of their `ORDER`, then by name."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            module = importlib.import_module(f"{__name__}.{info.name}")
            if isinstance(getattr(module, "TARGET", None), Target):
                found.append((getattr(module, "ORDER", 100), module.TARGET.name, module.TARGET))
    return {name: target for _, name, target in sorted(found)}


def get_target(name: str) -> Target:
    targets = registry()
    if name not in targets:
        raise SnncError(f"unknown target '{name}': choose from {', '.join(targets)}")
    return targets[name]


def all_options() -> dict:
    """Every target's options by name."""
    return {option.name: option for target in registry().values() for option in target.options}
