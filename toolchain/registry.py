"""Finding the plug-ins of a package: every module (or sub-package) that defines a given attribute, so that adding
a neuron model or a target is adding one file or one package."""

from __future__ import annotations

import importlib
import pkgutil


def discover(path, package: str, attribute: str, kind: type, packages_only: bool = False) -> dict:
    """{name: the attribute} of every module of `package` (at `path`) whose `attribute` is a `kind`, ordered by
    the module's `ORDER` (default 100), then by name (the attribute's `.name`)."""
    found = []
    for info in pkgutil.iter_modules(path):
        if packages_only and not info.ispkg:
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        value = getattr(module, attribute, None)
        if isinstance(value, kind):
            found.append((getattr(module, "ORDER", 100), value.name, value))
    return {name: value for _, name, value in sorted(found, key=lambda item: item[:2])}
