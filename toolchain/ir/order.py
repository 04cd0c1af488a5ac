"""Graph order of a NIR graph: every node after the nodes it reads, predecessors and successors."""

from __future__ import annotations

import nir

from toolchain.errors import SnncError


def topological_order(graph: nir.NIRGraph) -> tuple[list[str], dict[str, list[str]]]:
    """(node names in topological order, each node's predecessors in edge order). Among nodes that are ready at the
    same time the order is by name, so that every stage walks a graph in the same order."""
    preds = {name: [] for name in graph.nodes}
    for edge in graph.edges:
        if len(edge) != 2 or any(end not in graph.nodes for end in edge):
            raise SnncError(f"NIR graph edge {tuple(edge)} names a node the graph does not have")
        preds[edge[1]].append(edge[0])
    order, placed = [], set()
    remaining = dict(preds)
    while remaining:
        ready = [n for n, p in remaining.items() if all(s in placed for s in p)]
        if not ready:
            raise SnncError(f"NIR graph has a cycle through {sorted(remaining)[:3]}; snnc runs feed-forward graphs")
        for name in sorted(ready):
            order.append(name)
            placed.add(name)
            del remaining[name]
    return order, preds


def successors(graph: nir.NIRGraph) -> dict[str, list[str]]:
    """Each node's consumers in edge order."""
    succs = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        succs[src].append(dst)
    return succs


def input_side_nodes(graph: nir.NIRGraph) -> set[str]:
    """The nodes computed from the input alone, no neuron upstream (the Input included): what a chip leaves to the
    host, which sends their result as input currents."""
    order, preds = topological_order(graph)
    host: set[str] = set()
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, nir.Input) or (not isinstance(node, (nir.IF, nir.I, nir.Output)) and all(p in host for p in preds[name])):
            host.add(name)
    return host


def only_node_of_type(graph: nir.NIRGraph, kind: type, where: str = "NIR graph") -> str:
    """The name of the one node of `kind` (Input, Output); SnncError when there is not exactly one."""
    found = [name for name, node in graph.nodes.items() if isinstance(node, kind)]
    if len(found) != 1:
        raise SnncError(f"{where} has {len(found)} {kind.__name__} nodes; snnc runs graphs with one Input and one Output")
    return found[0]
