"""Operation counts, energy and chip fit against independent references: fan-out by brute-force enumeration of
every path from every source neuron, energies and core counts computed by hand from the published figures."""

import math

import nir
import numpy as np
import pytest

from toolchain.chips import check_sources, load_chips
from targets.reference import ReferenceRuntime
from toolchain.costs import energy_report, resource_report, structure_of, synaptic_operations
from toolchain.report import operations_entry, target_entry

RNG = np.random.default_rng(0)


def spiking(shape, thresholds=None, **meta):
    thresholds = np.ones(shape, np.float32) if thresholds is None else np.asarray(thresholds, np.float32)
    return nir.IF(r=np.ones(shape, np.float32), v_threshold=thresholds, v_reset=np.zeros(shape, np.float32),
                  metadata={"snnc": meta} if meta else {})


def conv(weight, stride=1, padding=0, dilation=1, groups=1):
    weight = np.asarray(weight, np.float32)
    return nir.Conv2d(input_shape=None, weight=weight, stride=(stride, stride), padding=(padding, padding),
                      dilation=(dilation, dilation), groups=groups, bias=np.zeros(weight.shape[0], np.float32))


def affine(weight):
    weight = np.asarray(weight, np.float32)
    return nir.Affine(weight=weight, bias=np.zeros(weight.shape[0], np.float32))


def network(source_shape, middle: dict, edges: list, dest_shape, classes=2, input_node=None, input_shape=None):
    """input → [input_node] → s → (middle) → d → [flatten] → fc → readout → output."""
    input_shape = source_shape if input_shape is None else input_shape
    nodes = {"input": nir.Input(input_type={"input": np.array(input_shape)}), "s": spiking(source_shape), **middle,
             "d": spiking(dest_shape), "fc": affine(np.ones((classes, math.prod(dest_shape)))),
             "readout": nir.I(r=np.ones(classes, np.float32)), "output": nir.Output(output_type={"output": np.array([classes])})}
    tail = [("fc", "readout"), ("readout", "output")]
    if len(dest_shape) > 1:
        nodes["flat"] = nir.Flatten(input_type={"input": np.array(dest_shape)}, start_dim=0, end_dim=-1)
        tail += [("d", "flat"), ("flat", "fc")]
    else:
        tail.append(("d", "fc"))
    head = [("input", "s")]
    if input_node is not None:
        nodes["in"] = input_node
        head = [("input", "in"), ("in", "s")]
    return nir.NIRGraph(nodes=nodes, edges=head + edges + tail, type_check=False)


def window_output(size, kernel, stride, padding, dilation=1):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def successors(node, element, out_shape):
    """Every output element `element` of the node's input reaches, one entry per connection (brute force)."""
    if isinstance(node, nir.Conv2d):
        c, y, x = element
        c_out, c_in_group, kh, kw = node.weight.shape
        group = c // c_in_group
        per_group = c_out // node.groups
        found = []
        for o in range(group * per_group, (group + 1) * per_group):
            for i in range(out_shape[1]):
                for j in range(out_shape[2]):
                    for ky in range(kh):
                        for kx in range(kw):
                            if (i * node.stride[0] - node.padding[0] + ky * node.dilation[0] == y
                                    and j * node.stride[1] - node.padding[1] + kx * node.dilation[1] == x
                                    and node.weight[o, c % c_in_group, ky, kx] != 0):
                                found.append((o, i, j))
        return found
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        c, y, x = element
        k, s, p = int(node.kernel_size[0]), int(node.stride[0]), int(node.padding[0])
        return [(c, i, j) for i in range(out_shape[1]) for j in range(out_shape[2])
                for ky in range(k) for kx in range(k) if i * s - p + ky == y and j * s - p + kx == x]
    if isinstance(node, nir.Flatten):
        return [(int(np.ravel_multi_index(element, tuple(node.input_type["input"]))),)]
    if isinstance(node, nir.Affine):
        return [(o,) for o in range(node.weight.shape[0]) if node.weight[o, element[0]] != 0]
    if isinstance(node, nir.Scale):
        return [element] if node.scale[element] != 0 else []
    raise AssertionError(type(node))


def brute_fanout(graph, shapes: dict, source="s", target="d") -> np.ndarray:
    """Paths from every neuron of `source` into `target`, walking the edges one connection at a time."""
    consumers = {}
    for a, b in graph.edges:
        consumers.setdefault(a, []).append(b)

    def paths(name, element) -> int:
        total = 0
        for consumer in consumers.get(name, []):
            if consumer == target:
                total += 1
            elif not isinstance(graph.nodes[consumer], nir.IF):
                total += sum(paths(consumer, e) for e in successors(graph.nodes[consumer], element, shapes[consumer]))
        return total

    fan = np.zeros(shapes[source], np.int64)
    for element in np.ndindex(*shapes[source]):
        fan[element] = paths(source, element)
    return fan


def pool(kernel, stride, padding=0):
    return nir.AvgPool2d(kernel_size=np.array([kernel, kernel]), stride=np.array([stride, stride]), padding=np.array([padding, padding]))


def _grouped_strided():
    weight = RNG.uniform(-1, 1, (6, 2, 3, 3))
    weight[0, 1, 0, 0] = weight[3, 0, 2, 1] = weight[5, 1, 1, 1] = 0.0  # zero weights are no synapses
    out = window_output(7, 3, 2, 1)
    graph = network((4, 7, 7), {"c": conv(weight, stride=2, padding=1, groups=2)}, [("s", "c"), ("c", "d")], (6, out, out))
    return graph, {"s": (4, 7, 7), "c": (6, out, out)}


def _pool_then_conv():
    graph = network((2, 8, 8), {"p": pool(2, 2), "c": conv(RNG.uniform(-1, 1, (3, 2, 3, 3)), padding=1)},
                    [("s", "p"), ("p", "c"), ("c", "d")], (3, 4, 4))
    return graph, {"s": (2, 8, 8), "p": (2, 4, 4), "c": (3, 4, 4)}


def _padded_pool_flatten_affine():
    weight = RNG.uniform(-1, 1, (4, 18))
    weight[:, 5] = 0.0
    middle = {"p": pool(3, 2, padding=1), "f": nir.Flatten(input_type={"input": np.array([2, 3, 3])}, start_dim=0, end_dim=-1),
              "a": affine(weight)}
    graph = network((2, 5, 5), middle, [("s", "p"), ("p", "f"), ("f", "a"), ("a", "d")], (4,))
    return graph, {"s": (2, 5, 5), "p": (2, 3, 3), "f": (18,), "a": (4,)}


def _residual():
    middle = {"c": conv(RNG.uniform(-1, 1, (2, 2, 3, 3)), padding=1), "k": nir.Scale(scale=np.full((2, 6, 6), 0.5, np.float32))}
    graph = network((2, 6, 6), middle, [("s", "c"), ("c", "d"), ("s", "k"), ("k", "d")], (2, 6, 6))
    return graph, {"s": (2, 6, 6), "c": (2, 6, 6), "k": (2, 6, 6)}


def _dilated():
    graph = network((1, 9, 9), {"c": conv(RNG.uniform(-1, 1, (2, 1, 3, 3)), padding=2, dilation=2)}, [("s", "c"), ("c", "d")], (2, 9, 9))
    return graph, {"s": (1, 9, 9), "c": (2, 9, 9)}


@pytest.mark.parametrize("build", [_grouped_strided, _pool_then_conv, _padded_pool_flatten_affine, _residual, _dilated])
def test_fanout_and_synops_equal_a_brute_force_count(build):
    graph, shapes = build()
    structure = structure_of(graph)
    expected = brute_fanout(graph, shapes)
    np.testing.assert_array_equal(structure.fanout[("s", "d")], expected)
    spikes = RNG.integers(0, 50, shapes["s"])
    synops = synaptic_operations(structure, {"s": spikes[None].astype(np.float64), "d": np.zeros((1, *structure.layers["d"].shape))}, 1)
    assert synops["d"][0] == int((spikes * expected).sum())
    assert structure.synapses("d") == int(expected.sum())


def test_corner_edge_and_centre_of_a_padded_convolution():
    graph = network((1, 5, 5), {"c": conv(np.ones((7, 1, 3, 3)), padding=1)}, [("s", "c"), ("c", "d")], (7, 5, 5))
    fan = structure_of(graph).fanout[("s", "d")][0]
    assert (fan[0, 0], fan[0, 2], fan[2, 2]) == (4 * 7, 6 * 7, 9 * 7)


def test_macs_are_output_positions_times_nonzero_weights():
    weight = np.ones((6, 1, 3, 3), np.float32)
    weight[0, 0, 0, 0] = weight[4, 0, 1, 2] = 0.0
    graph = network((1, 7, 7), {"c": conv(weight, stride=2, padding=1)}, [("s", "c"), ("c", "d")], (6, 4, 4),
                    input_node=conv(np.ones((1, 1, 1, 1))))
    structure = structure_of(graph)
    assert structure.input_macs["s"] == structure.macs["s"] == 7 * 7  # the 1x1 convolution on the analog input
    assert structure.macs["d"] == 6 * 4 * 4 * 1 * 3 * 3 - 2 * 4 * 4  # C_out·H_out·W_out·C_in·k², less the zero weights
    assert structure.macs["readout"] == 2 * 6 * 4 * 4 and structure.input_macs["d"] == 0


def _graded_neuron_network():
    """input → ×2.5 → one group neuron (θ' = 1, up to 4 spikes, v_init 0.5) → 3 outputs → readout.
    u: 0.5 → 3.0 (3 spikes, 0) → 2.5 (2, 0.5) → 3.0 (3) → 2.5 (2): spikes 3, 2, 3, 2; messages every step."""
    group = spiking((1,), neuron="gn", reset="subtract", max_spikes_per_step=4, v_init=np.array([0.5], np.float32))
    return nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([1])}), "in": affine([[2.5]]), "g": group,
        "out": affine(np.ones((3, 1))), "readout": nir.I(r=np.ones(3, np.float32)), "output": nir.Output(output_type={"output": np.array([3])}),
    }, edges=[("input", "in"), ("in", "g"), ("g", "out"), ("out", "readout"), ("readout", "output")], type_check=False)


def test_energy_per_inference_by_hand():
    graph = _graded_neuron_network()
    structure = structure_of(graph)
    result = ReferenceRuntime(graph).run(np.ones((1, 1), np.float32), 4, per_neuron_steps=(2, 4))
    entry = {**target_entry(result, np.zeros(1, int), [2, 4], np.zeros(1, int)), **operations_entry(structure, result, structure.macs)}
    assert entry["synops"] == {"g": 0, "readout": 30} and entry["graded_synops"] == {"g": 0, "readout": 12}
    energy = energy_report(entry, load_chips())
    # 45 nm fp32: MAC 4.6 pJ, add 0.9 pJ. ANN: 4 MACs. SNN at T=2: the input layer's 1 MAC twice + 15 events.
    fp32 = energy["cmos45-fp32"]
    assert fp32["ann_pj"] == pytest.approx(4.6 * 4)
    assert fp32["snn_pj"]["2"] == pytest.approx(4.6 * 1 * 2 + 0.9 * 15)
    assert fp32["snn_pj_input_once"]["4"] == pytest.approx(4.6 * 1 + 0.9 * 30)
    assert fp32["spikes_per_synapse"]["2"] == pytest.approx(15 / 3)
    assert fp32["break_even_spikes_per_synapse"]["2"] == pytest.approx((4.6 * 4 - 4.6 * 2) / (0.9 * 3))
    # Loihi 1: synaptic op 23.6, neuron update 81, spike 1.7 pJ; 4 ANN units, 4 SNN neurons (1 + 3 readout).
    loihi = energy["loihi1"]
    assert loihi["ann_pj"] == pytest.approx(23.6 * 4 + (81 + 1.7) * 4)
    assert loihi["snn_pj"]["4"] == pytest.approx(23.6 * 1 * 4 + 23.6 * 30 + 81 * 4 * 4 + 1.7 * 10)
    assert energy["truenorth"]["snn_pj"]["4"] == pytest.approx(26 * 4 + 26 * 30)
    assert all(model["source"] for model in energy.values())


def test_loihi1_splits_a_dense_layer_by_synapse_memory():
    """2048 → 100 dense: per input axon, 100 weights of 8 bits in blocks of 64 (+10 header bits, 64-bit words) take
    576 + 320 = 896 bits, 2048 axons 1,835,008 bits > 1 Mbit; two cores of 50 take 448 bits per axon, 917,504."""
    graph = network((2048,), {"a": affine(np.ones((100, 2048)))}, [("s", "a"), ("a", "d")], (100,), classes=10)
    loihi = resource_report({"loihi1": load_chips()["loihi1"]}, graph, graph)["loihi1"]
    cores = {row["layer"]: row["cores"] for row in loihi["layers"]}
    assert cores == {"s": 2, "d": 2, "readout": 1} and loihi["cores"] == 5 and loihi["chips"] == 1 and loihi["fits"]
    d = next(row for row in loihi["layers"] if row["layer"] == "d")
    assert d["totals"]["synapse_bits"] == 2048 * 448 * 2 and d["max_per_core"]["input_axons"] == 2048
    assert "synapse memory" in d["reason"]


def test_loihi1_counts_each_core_from_every_source():
    """s (64) dense into d (2000), t (64) into d's neurons 600..1399. Two cores of 1000 do not fit: the first holds
    64 × 9024 (s: 15 blocks of 576 and 40 weights in 384) + 64 × 7616 (t: 400 sparse synapses of 8 + 10 index
    bits) > 1 Mbit. Three cores of 668, 668, 664 hold 64·6016 + 64·1344, 128·6016 and 64·6016 + 64·1216 bits."""
    to_middle = np.zeros((2000, 64))
    to_middle[600:1400] = 1.0
    nodes = {"input": nir.Input(input_type={"input": np.array([64])}), "s": spiking((64,)), "t": spiking((64,)),
             "a": affine(np.ones((2000, 64))), "b": affine(to_middle), "d": spiking((2000,)),
             "fc": affine(np.ones((2, 2000))), "readout": nir.I(r=np.ones(2, np.float32)),
             "output": nir.Output(output_type={"output": np.array([2])})}
    edges = [("input", "s"), ("input", "t"), ("s", "a"), ("t", "b"), ("a", "d"), ("b", "d"), ("d", "fc"), ("fc", "readout"),
             ("readout", "output")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    loihi = resource_report({"loihi1": load_chips()["loihi1"]}, graph, graph)["loihi1"]
    d = next(row for row in loihi["layers"] if row["layer"] == "d")
    assert d["cores"] == 3 and d["max_per_core"]["input_axons"] == 128
    assert d["totals"]["synapse_bits"] == 64 * 6016 + 64 * 1344 + 128 * 6016 + 64 * 6016 + 64 * 1216


def test_loihi1_names_a_layer_that_cannot_fit():
    graph = network((5000,), {"a": affine(np.ones((4, 5000)))}, [("s", "a"), ("a", "d")], (4,))
    loihi = resource_report({"loihi1": load_chips()["loihi1"]}, graph, graph)["loihi1"]
    assert not loihi["fits"]
    assert "d: does not fit: even one neuron per core needs 5000 input axons (limit 4096 per core)" in loihi["findings"]


def test_loihi1_takes_eight_thresholds_per_core():
    thresholds = np.broadcast_to(np.arange(1, 17, dtype=np.float32)[:, None, None], (16, 8, 8))
    graph = network((16, 8, 8), {"c": conv(np.ones((2, 16, 1, 1)))}, [("s", "c"), ("c", "d")], (2, 8, 8))
    graph.nodes["s"] = spiking((16, 8, 8), thresholds)
    loihi = resource_report({"loihi1": load_chips()["loihi1"]}, graph, graph)["loihi1"]
    s = next(row for row in loihi["layers"] if row["layer"] == "s")
    assert s["cores"] == 2 and s["max_per_core"]["thresholds"] == 8 and "threshold" in s["reason"]


def _speck_network(stride=1):
    """input (2, 16, 16) → conv → s (4, 16, 16) → pool 2 → conv → d (8, n, n) → flatten → fc → readout (10)."""
    size = window_output(8, 3, stride, 1)
    middle = {"p": pool(2, 2), "c": conv(np.ones((8, 4, 3, 3)), stride=stride, padding=1)}
    return network((4, 16, 16), middle, [("s", "p"), ("p", "c"), ("c", "d")], (8, size, size), classes=10,
                   input_node=conv(np.ones((4, 2, 3, 3)), padding=1), input_shape=(2, 16, 16))


def test_speck_memory_by_the_sinabs_formulas():
    """K = c·2^(⌈log2 kx·ky⌉ + ⌈log2 f⌉), N = f·2^(⌈log2 fx⌉ + ⌈log2 fy⌉); fc over (8, 8, 8) is an 8x8 kernel."""
    speck = resource_report({"speck": load_chips()["speck"]}, _speck_network(), _speck_network())["speck"]
    memory = {row["layer"]: (row["kernel_memory"], row["neuron_memory"]) for row in speck["layers"]}
    assert memory == {"s": (2 * 2 ** (4 + 2), 4 * 2 ** (4 + 4)), "d": (4 * 2 ** (4 + 3), 8 * 2 ** (3 + 3)),
                      "readout": (8 * 2 ** (6 + 4), 10)}
    assert speck["fits"] and speck["cores"] == 3 and all(row["core"] is not None for row in speck["layers"])
    assert any("analog input" in finding for finding in speck["findings"])


def test_speck_refuses_a_stride_it_does_not_have():
    speck = resource_report({"speck": load_chips()["speck"]}, _speck_network(stride=3), _speck_network(stride=3))["speck"]
    assert not speck["fits"] and any("stride (3, 3)" in finding for finding in speck["findings"])


def test_speck_names_a_layer_no_core_can_hold():
    """64 → 128 channels, 3x3: K = 64 · 2^(4 + 7) = 131072 kernel entries; the largest Speck core holds 65536."""
    graph = network((64, 4, 4), {"c": conv(np.ones((128, 64, 3, 3)), padding=1)}, [("s", "c"), ("c", "d")], (128, 4, 4))
    speck = resource_report({"speck": load_chips()["speck"]}, graph, graph)["speck"]
    assert not speck["fits"] and any(f.startswith("d needs 131072 kernel") and "no Speck core" in f for f in speck["findings"])


def test_every_chip_number_names_its_source():
    chips = load_chips()
    assert {"cmos45nm", "loihi1", "loihi2", "speck", "spinnaker1", "spinnaker2", "truenorth"} <= set(chips)
    with pytest.raises(ValueError, match="bare number"):
        check_sources({"limits": {"cores": 9}}, "x.toml")
    with pytest.raises(ValueError, match="without a source"):
        check_sources({"limits": {"cores": {"value": 9, "source": " "}}}, "x.toml")
