"""Pass: rewrite every group-neuron layer into τ populations of binary IF neurons (methods.md §3.6).

A GN layer (shared potential u, unit θ' = λ/τ, u[0] = θ'/2, up to τ spikes per step) equals τ independent IF
member populations fed the same input, each with threshold λ, reset by subtraction of λ and initial
potential v_k[0] = (2k+1)·λ/(2τ), k = 0..τ−1: at every step the members' potentials are {u + j·θ' : j = 0..τ−1},
and the number of members that fire is the GN's n. The proof holds for every input sequence (negative, above
λ, time-varying); it is exact in exact arithmetic. In floating point the two forms compute different sums
(u + j·θ' vs u), so a potential within rounding distance of a threshold can fire in one form and not the other;
docs/group-neurons.md measures how often.

In NIR each member is a standard binary `IF` node; every member gets the GN's incoming edges and sends to the
GN's consumers, whose weights already carry the spike value θ' — NIR sums the members' edges at the consumer,
so the consumer sees Σ_k s_k · θ' = n · θ', as before. No lateral connections are needed.
"""

from __future__ import annotations

import dataclasses

import nir
import numpy as np

from toolchain.ir.metadata import NodeMeta, with_meta
from toolchain.ir.verify import verify_nir
from toolchain.neurons import get_model
from toolchain.neurons.gn import member_initial_potentials
from toolchain.passes.lower_to_nir import unique_name


def _is_group(node) -> bool:
    meta = NodeMeta.of(node)
    return isinstance(node, nir.IF) and meta.neuron != "" and get_model(meta.neuron).graded and meta.max_spikes_per_step > 1


def expand_group_neurons(graph: nir.NIRGraph) -> nir.NIRGraph:
    nodes, edges = dict(graph.nodes), list(graph.edges)
    for name in [n for n, node in graph.nodes.items() if _is_group(node)]:
        group = nodes.pop(name)
        meta = NodeMeta.of(group)
        tau = meta.max_spikes_per_step
        threshold = np.asarray(group.v_threshold, np.float32) * np.float32(tau)
        sources = [s for s, d in edges if d == name]
        targets = [d for s, d in edges if s == name]
        edges = [(s, d) for s, d in edges if name not in (s, d)]
        for k, v_init in enumerate(member_initial_potentials(threshold, tau)):
            member = unique_name(f"{name}.m{k}", nodes)
            member_meta = dataclasses.replace(meta, max_spikes_per_step=1, v_init=v_init, group=name, member=k, members=tau)
            nodes[member] = nir.IF(r=group.r, v_threshold=threshold, v_reset=group.v_reset, metadata=member_meta.as_metadata())
            edges += [(s, member) for s in sources] + [(member, d) for d in targets]
    return verify_nir(nir.NIRGraph(nodes=nodes, edges=edges, metadata=with_meta(graph, gn_form="expanded"), type_check=False))
