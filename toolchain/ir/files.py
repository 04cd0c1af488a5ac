"""Writing NIR files, and comparing two graphs field by field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nir
import numpy as np

from toolchain.ir.read import normalise, read_graph


def _same(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return np.array_equal(np.asarray(a), np.asarray(b))


def differences(a: nir.NIRGraph, b: nir.NIRGraph) -> list[str]:
    """Where two NIR graphs differ (node set, types, every field and metadata, edges); empty when identical."""
    found = []
    if set(a.nodes) != set(b.nodes):
        found.append(f"nodes {sorted(set(a.nodes) ^ set(b.nodes))}")
    if sorted(map(tuple, a.edges)) != sorted(map(tuple, b.edges)):
        found.append("edges")
    for name in set(a.nodes) & set(b.nodes):
        x, y = normalise(a.nodes[name]), normalise(b.nodes[name])
        if type(x) is not type(y):
            found.append(f"{name}: type {type(x).__name__} != {type(y).__name__}")
            continue
        for key in (f.name for f in dataclasses.fields(x) if f.init):  # derived types are not compared
            if not _same(getattr(x, key), getattr(y, key)):
                found.append(f"{name}.{key}")
    if not _same(a.metadata, b.metadata):
        found.append("graph metadata")
    return found


def write_graph(graph: nir.NIRGraph, path: Path) -> nir.NIRGraph:
    """Write a NIR file and read it back; the graph read is returned, so that everything downstream runs on
    what the file says. An AssertionError (a bug in snnc) when the file does not read back as the graph."""
    nir.write(str(path), graph)
    written = read_graph(path)
    mismatch = differences(graph, written)
    if mismatch:
        raise AssertionError(f"{Path(path).name} does not read back as the compiled network: {mismatch[:5]}")
    return written
