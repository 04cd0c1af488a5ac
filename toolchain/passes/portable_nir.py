"""Pass: snnc's compact NIR graph becomes a portable one that NIR consumers run with snnc's spikes, no metadata read.

The compact graph (`lower_to_nir`) keeps snnc's neuron in `metadata["snnc"]`: NIR's `IF` resets to v_reset and
starts at 0, so a consumer that ignores the metadata fires other spikes. The portable graph says the same
network with standard NIR 1.0.8 nodes that SpikingJelly, snnTorch and Norse all map (docs/nir.md, "Portable
profile"), for their common time step dt = 1e-4 s (snnTorch's fixed one, SpikingJelly's default):

- a soft-reset binary neuron of threshold θ and initial potential v₀ is a `CubaLIF` used as an integrator and a
  comparator: the synaptic current I integrates the input (τ_syn = 1e5 s, so it decays by dt/τ_syn = 1e-9 per
  step, a decay factor of 1.0 in float32, and w_in = τ_syn/dt gives the input unit gain), and the membrane
  (τ_mem = dt, r = 1) follows I within a step, so it keeps nothing that its reset to v_reset could lose. The
  reset by subtraction is a recurrent synapse from the neuron back into itself with weight −θ (a diagonal
  1×1 `Conv2d` on feature maps, a diagonal `Linear` on vectors). A recurrent edge carries the previous step's
  spikes, so I holds snnc's potential before firing, minus v₀: it starts at 0 and fires at θ − v₀ (exact for
  subtract reset: the potential only ever moves by inputs and by θ). `CubaLIF` fires at v > threshold, snnc at
  v ≥ θ, so the threshold is the next float32 below θ − v₀. τ_mem is the first float32 above dt, as SpikingJelly
  requires τ_mem ≥ dt; the membrane then keeps 1 − dt/τ_mem ≈ 5e-8 of its last value, and float32 sums round in
  another order than snnc's, so a potential within about 1e-7 of the threshold can fire on one side only;
- on vectors the reset synapse passes through an identity `Flatten` (dims 0..0): snnTorch turns a two-node
  neuron⇄Linear loop into its own recurrent neuron, which its importer then fails to build;
- group neurons are first expanded into their binary members (`expand_group_neurons`); other neurons that may
  emit several spikes per step, and windowed neurons (parallel, tpp, bsnn, if-permuted: spikes that depend on
  the whole window), have no standard form and are refused;
- `AvgPool2d` is `SumPool2d`, its 1/(kh·kw) folded into the next weights (through `Flatten`), or into the
  neuron it alone feeds (threshold and reset × kh·kw); exact for 2×2 windows (a power of two), else within
  float rounding; where neither follows, it stays an `AvgPool2d`;
- a grouped (depthwise) `Conv2d` is written dense, zeros between its groups: NIR 1.0.8's type inference ignores
  `groups`, so `nir.read` could not read the file back otherwise;
- the readout integrator is dropped: the Output receives the last layer's per-step values, and their sum over
  the steps is snnc's readout (its argmax is the prediction).

Names are kept: the `CubaLIF` that emits a layer's spikes has the layer's name and its reset synapse is
`<name>_reset`; both carry `metadata["snnc"]["layer"]`, the layer whose spikes they count (a group neuron's
members count for their group).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nir
import numpy as np

from toolchain.errors import SnncError
from toolchain.ir.files import differences
from toolchain.ir.metadata import GraphMeta, NodeMeta, with_meta
from toolchain.ir.schedule import windowed_layers
from toolchain.ir.shapes import node_shapes
from toolchain.neurons import get_model
from toolchain.passes.compose_linear_chains import channel_factor, ungrouped
from toolchain.passes.expand_group_neurons import expand_group_neurons
from toolchain.passes.lower_to_nir import unique_name

PROFILE = "portable"
STEP_SECONDS = 1e-4
SYNAPSE_SECONDS = 1e5
MEMBRANE_SECONDS = float(np.nextafter(np.float32(STEP_SECONDS), np.float32(np.inf)))


def portable_nir(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The portable form of a compact snnc graph; SnncError (one line) for what standard NIR cannot say."""
    _refuse_unportable(graph)
    graph = expand_group_neurons(graph)
    nodes, edges, shapes = dict(graph.nodes), [tuple(e) for e in graph.edges], node_shapes(graph)
    for name, node in graph.nodes.items():
        if isinstance(node, nir.Scale):
            _scale_as_synapse(name, node, shapes[name], nodes)
        elif isinstance(node, nir.Conv2d) and node.groups != 1:
            nodes[name] = ungrouped(node)  # NIR 1.0.8 reads a Conv2d's input as weight.shape[1] channels
    input_gain: dict[str, np.float32] = {}  # neuron -> the factor a folded average pooling leaves on its input
    for name, node in graph.nodes.items():
        if isinstance(node, nir.AvgPool2d):
            _sum_pool(name, node, nodes, edges, input_gain)
        elif isinstance(node, nir.I) and NodeMeta.of(node).role == "readout":
            _drop_readout(name, nodes, edges)
    for name, node in graph.nodes.items():
        if isinstance(node, nir.IF) and NodeMeta.of(node).subtracts:
            _integrate_and_fire(name, node, shapes[name], input_gain.get(name, np.float32(1)), nodes, edges)
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=with_meta(graph, profile=PROFILE), type_check=False)


def _refuse_unportable(graph: nir.NIRGraph) -> None:
    windowed = windowed_layers(graph)
    if windowed:
        neuron = NodeMeta.of(graph.nodes[windowed[0]]).neuron
        raise SnncError(f"layer '{windowed[0]}': {neuron} neurons fire from their whole window of input, which standard "
                        "NIR cannot say; the portable profile covers if and gn (model.nir keeps them for snnc)")
    pooled = [name for name, node in graph.nodes.items() if NodeMeta.of(node).pool == "max"]
    if pooled:
        raise SnncError(f"node '{pooled[0]}': max pooling has no standard NIR node; the portable profile needs "
                        "--maxpool avg (model.nir keeps it for snnc)")
    if GraphMeta.of(graph).precision != "float":
        raise SnncError("the portable profile is written from the float network (model.nir), not from a quantized one")
    for name, node in graph.nodes.items():
        meta = NodeMeta.of(node)
        if isinstance(node, nir.IF) and meta.max_spikes_per_step > 1 and not (meta.neuron and get_model(meta.neuron).graded):
            raise SnncError(f"layer '{name}': {meta.neuron or '?'} neurons emit up to {meta.max_spikes_per_step} "
                            "spikes per step, which standard NIR cannot say; the portable profile covers binary neurons and gn")


def _integrate_and_fire(name: str, node: nir.IF, shape: tuple[int, ...], gain: np.float32, nodes: dict, edges: list) -> None:
    """IF `name` → CubaLIF `name` with a recurrent synapse `name_reset` of weight −θ (× the input's gain)."""
    meta = NodeMeta.of(node)
    if not np.all(np.asarray(node.r) == 1):
        raise SnncError(f"layer '{name}': an input gain r other than 1 has no place in the portable neuron")
    threshold = np.broadcast_to(np.asarray(node.v_threshold, np.float32), shape) * gain
    v_init = np.broadcast_to(np.asarray(meta.v_init, np.float32), shape) * gain
    tagged = lambda role: NodeMeta(layer=meta.group or name, onnx_node=meta.onnx_node, role=role).as_metadata()
    ones = np.ones(shape, np.float32)
    nodes[name] = nir.CubaLIF(
        tau_syn=ones * np.float32(SYNAPSE_SECONDS), tau_mem=ones * np.float32(MEMBRANE_SECONDS), r=ones,
        v_leak=0 * ones, v_reset=0 * ones, w_in=ones * np.float32(SYNAPSE_SECONDS / STEP_SECONDS),
        v_threshold=np.nextafter(threshold - v_init, np.float32(-np.inf), dtype=np.float32), metadata=tagged("spikes"))
    reset = unique_name(f"{name}_reset", nodes)
    nodes[reset] = _diagonal_synapse(-threshold, tagged("reset"))
    if nodes[reset] is None:
        raise SnncError(f"layer '{name}': the portable profile needs one threshold per channel of a feature map")
    if len(shape) == 1:
        relay = unique_name(f"{name}_reset_relay", nodes)
        nodes[relay] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=0, metadata=tagged("reset"))
        edges += [(name, reset), (reset, relay), (relay, name)]
    else:
        edges += [(name, reset), (reset, name)]


def _scale_as_synapse(name: str, node: nir.Scale, shape: tuple[int, ...], nodes: dict) -> None:
    """A Scale (a spike amplitude) that is one factor per channel or feature becomes a diagonal synapse, which the
    consumers map; other scales stay standard `Scale` nodes."""
    synapse = _diagonal_synapse(np.broadcast_to(np.asarray(node.scale, np.float32), shape), node.metadata)
    if synapse is not None:
        nodes[name] = synapse


def _diagonal_synapse(factors: np.ndarray, metadata: dict) -> nir.NIRNode | None:
    """Multiplication by `factors` as a diagonal `Linear` (vectors) or 1×1 `Conv2d` (feature maps, one factor per
    channel), exact: each output sums one product and zeros. None where a feature map's factor varies in a channel."""
    if factors.ndim == 1:
        return nir.Linear(weight=np.diag(factors).astype(np.float32), metadata=metadata)
    per_channel = channel_factor(factors) if factors.ndim == 3 else None
    if per_channel is None:
        return None
    channels = factors.shape[0]
    weight = np.zeros((channels, channels, 1, 1), np.float32)
    weight[np.arange(channels), np.arange(channels), 0, 0] = per_channel
    return nir.Conv2d(input_shape=factors.shape[1:], weight=weight, stride=1, padding=0, dilation=1, groups=1,
                      bias=np.zeros(channels, np.float32), metadata=metadata)


def _sum_pool(name: str, node: nir.AvgPool2d, nodes: dict, edges: list, input_gain: dict) -> None:
    """AvgPool2d → SumPool2d with 1/(kh·kw) folded into the weights or the neuron that alone receive it."""
    kernel = np.broadcast_to(np.asarray(node.kernel_size).reshape(-1), 2)
    window = np.float32(np.prod(kernel))
    target = _sole_consumer(name, nodes, edges)
    weighted = target is not None and isinstance(nodes[target], (nir.Affine, nir.Linear, nir.Conv2d))
    neuron = target is not None and isinstance(nodes[target], nir.IF) and NodeMeta.of(nodes[target]).subtracts
    if not (weighted or neuron):
        return
    nodes[name] = nir.SumPool2d(kernel_size=np.array(kernel), stride=np.broadcast_to(np.asarray(node.stride).reshape(-1), 2).copy(),
                                padding=np.broadcast_to(np.asarray(node.padding).reshape(-1), 2).copy(), metadata=node.metadata)
    if neuron:
        input_gain[target] = window
        return
    weights = nodes[target]  # a new node: the compact graph's stays as it was
    nodes[target] = dataclasses.replace(weights, weight=np.ascontiguousarray(np.asarray(weights.weight, np.float32) / window))


def _sole_consumer(name: str, nodes: dict, edges: list) -> str | None:
    """The node that alone receives `name`'s output (through Flatten nodes) and nothing else, or None."""
    current = name
    while True:
        targets = [d for s, d in edges if s == current]
        if len(targets) != 1 or sum(d == targets[0] for _, d in edges) != 1:
            return None
        if not isinstance(nodes[targets[0]], nir.Flatten):
            return targets[0]
        current = targets[0]


def _drop_readout(name: str, nodes: dict, edges: list) -> None:
    """The Output takes the readout's input (snnc's readout integrates with r = 1)."""
    del nodes[name]
    sources, targets = [s for s, d in edges if d == name], [d for s, d in edges if s == name]
    edges[:] = [(s, d) for s, d in edges if name not in (s, d)] + [(s, d) for s in sources for d in targets]


PORTABLE_FILE = "model.portable.nir"


def write_portable(graph: nir.NIRGraph, path: Path) -> dict:
    """Write the portable form of the compiled (compact) network beside model.nir and read it back; the report's
    entry says what was written, or in one line why this network has no portable form."""
    try:
        portable = portable_nir(graph)
    except SnncError as err:
        return {"file": None, "reason": str(err)}
    nir.write(str(path), portable)
    mismatch = differences(portable, nir.read(str(path)))
    if mismatch:
        raise AssertionError(f"{path.name} does not read back as written: {mismatch[:5]}")
    return {"file": path.name, "nodes": len(portable.nodes), "read_back_identical": True, "step_seconds": STEP_SECONDS}
