"""snnc's NIR files in independent NIR consumers (docs/nir.md, "What each consumer does").

The compact model.nir by NIR's standard meaning: SpikingJelly's nir_exchange (through nirtorch) must fire exactly
the spikes snnc's reference runtime fires on the same file read without snnc's metadata.

The portable profile (`portable_nir`, written as model.portable.nir): SpikingJelly 2.0.0, snnTorch 1.0.0 and
Norse 1.1.0 load it with their own NIR loaders, at the time step the file is written for, and must fire, per
layer, exactly the spikes the reference runtime fires on the compact graph with snnc's semantics (soft reset,
v_init, group neurons). Nothing of theirs is replaced; two of their bugs are worked around by the runner
(`benchmarks.nir_consumers.run_consumer`, which also writes docs/nir.md's table) and reported as theirs there: snnTorch and Norse flatten the batch dimension (NIR's Flatten dims count from the first
per-sample dim), and the deprecated `nirtorch.load` that Norse uses returns the last node of its traversal, not
the Output, and runs nodes in depth-first order: where branches meet (expanded group neurons) that is not
exact, and the test asserts that documented difference instead.
"""

import nir
import nirtorch
import numpy as np
import pytest
import torch

from benchmarks.nir_consumers import CONSUMERS, run_consumer, spiking_layers
from targets.reference import ReferenceRuntime
from tests.conftest import ZOO
from toolchain.data import fit_to_input, load_dataset
from toolchain.errors import SnncError
from toolchain.frontend import import_onnx, load_onnx
from toolchain.neurons.gn import DEFAULT_TAU
from toolchain.ir.metadata import KEY
from toolchain.passes import calibrate_thresholds, canonicalise, expand_group_neurons, lower_to_nir
from toolchain.passes.portable_nir import portable_nir

nir_exchange = pytest.importorskip(
    "spikingjelly.activation_based.nir_exchange",
    reason="`make setup` installs spikingjelly==2.0.0, nirtorch==2.6 and loguru with --no-deps")

TIMESTEPS, SAMPLES = 8, 40
NEURON_OPTIONS = {"if": {}, "gn": {"tau": DEFAULT_TAU}}


@pytest.fixture(scope="module")
def digits():
    return fit_to_input(load_dataset("digits").x_test[:SAMPLES], (1, 8, 8), "digits")


@pytest.fixture(scope="module")
def compact():
    """What `snnc compile models/zoo/digits_cnn_qcfs8.onnx --neuron NEURON` writes as model.nir."""
    ann = canonicalise(import_onnx(ZOO / "digits_cnn_qcfs8.onnx", "error"))
    return {neuron: lower_to_nir(ann, neuron, options) for neuron, options in NEURON_OPTIONS.items()}


def _without_snnc_semantics(graph: nir.NIRGraph) -> nir.NIRGraph:
    """The same network by NIR's standard meaning, ending at the last weighted node instead of the readout."""
    readout = next(name for name, node in graph.nodes.items() if isinstance(node, nir.I))
    last = next(src for src, dst in graph.edges if dst == readout)
    output = next(dst for src, dst in graph.edges if src == readout)
    for node in graph.nodes.values():
        if isinstance(node, nir.IF):
            node.metadata = {}
    nodes = {name: node for name, node in graph.nodes.items() if name != readout}
    edges = [edge for edge in graph.edges if readout not in edge] + [(last, output)]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={}, type_check=False)


def test_spikingjelly_fires_what_the_reference_runtime_fires(tmp_path, compact, digits):
    # What `snnc compile --neuron gn --target nir` writes (QCFS thresholds need no calibration).
    nir.write(str(tmp_path / "model.nir"), expand_group_neurons(compact["gn"]))
    graph = _without_snnc_semantics(nir.read(str(tmp_path / "model.nir")))

    ours = ReferenceRuntime(graph).run(digits, TIMESTEPS)

    module = nir_exchange.import_from_nir(graph, dt=1.0, step_mode="s")
    theirs = {}
    for name, submodule in module.named_modules():
        if type(submodule).__name__ == "_NIRStatefulModule":  # SpikingJelly's wrapper of each IF node
            submodule.register_forward_hook(lambda _, __, out, name=name: theirs.__setitem__(name, theirs.get(name, 0) + int(out[0].sum())))
    state, outputs = None, []
    with torch.no_grad():
        for _ in range(TIMESTEPS):
            output, state = module(torch.from_numpy(digits), state)
            outputs.append(output)

    assert len(theirs) == len(ours.spikes) == 3 * DEFAULT_TAU  # three layers of τ binary members each
    assert theirs == {name.replace(".", "_"): count for name, count in ours.spikes.items()}
    assert all(count > 0 for count in theirs.values())
    np.testing.assert_allclose(torch.stack(outputs).sum(0).numpy(), ours.readout, rtol=1e-5, atol=1e-4)


INSTALL = {"snntorch": "snntorch==1.0.0", "norse": "norse==1.1.0"}


@pytest.mark.parametrize("neuron", ["if", "gn"])
@pytest.mark.parametrize("consumer", list(CONSUMERS))
def test_consumers_fire_snncs_spikes_from_the_portable_file(consumer, neuron, tmp_path, compact, digits):
    if consumer in INSTALL:
        pytest.importorskip(consumer, reason=f"`make setup` installs {INSTALL[consumer]} with --no-deps")
    path = tmp_path / "model.portable.nir"
    nir.write(str(path), portable_nir(compact[neuron]))
    layer_of = spiking_layers(path)

    ours = ReferenceRuntime(compact[neuron]).run(digits, TIMESTEPS)
    spikes, readout = run_consumer(consumer, path, digits, TIMESTEPS)

    assert len(layer_of) == (3 * DEFAULT_TAU if neuron == "gn" else 3)
    if (consumer, neuron) == ("norse", "gn"):
        # their bug (nirtorch.load): nodes run in depth-first order from the input, so conv2, reached through the
        # first member of gn1, reads the other members' spikes of the previous step. The layer before the first
        # fan-in is exact; the later ones are not.
        assert spikes["gn1"] == ours.spikes["gn1"]
        assert spikes["gn2"] != ours.spikes["gn2"] and spikes["gn3"] != ours.spikes["gn3"]
        return
    assert spikes == ours.spikes and all(count > 0 for count in spikes.values())
    np.testing.assert_allclose(readout, ours.readout, rtol=1e-5, atol=1e-4)
    assert (readout.argmax(1) == ours.predictions[-1]).all()


def test_windowed_neurons_have_no_portable_form():
    ann = canonicalise(import_onnx(ZOO / "digits_cnn_qcfs8.onnx", "error"))
    with pytest.raises(SnncError, match="layer 'parallel1': parallel neurons fire from their whole window"):
        portable_nir(lower_to_nir(ann, "parallel"))


POOLED = {
    # if1's spike amplitude is a Scale (no weights follow before if2), which becomes a diagonal 1×1 Conv2d, and 1/4 goes into it
    "spikes": lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2), torch.nn.ReLU(),
                                          torch.nn.Flatten(), torch.nn.Linear(64, 10)),
    # the pooled input goes straight into if1, whose threshold and reset take the 4
    "input": lambda: torch.nn.Sequential(torch.nn.AvgPool2d(2), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16, 10)),
}


@pytest.mark.parametrize("pooled", list(POOLED))
@pytest.mark.parametrize("consumer", list(CONSUMERS))
def test_average_pooling_is_sum_pooling_with_the_mean_folded_in(consumer, pooled, tmp_path, digits):
    """Torch exports whose average pooling has no weights right after it."""
    if consumer in INSTALL:
        pytest.importorskip(consumer, reason=f"`make setup` installs {INSTALL[consumer]} with --no-deps")
    torch.manual_seed(0)
    onnx_path = tmp_path / "pooled.onnx"
    torch.onnx.export(POOLED[pooled]().eval(), (torch.from_numpy(digits[:2]),), str(onnx_path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {0: "b"}})
    ann = calibrate_thresholds(canonicalise(import_onnx(onnx_path, "error")), load_onnx(onnx_path), digits, 99.9, False, 1)
    compact = lower_to_nir(ann, "if")
    path = tmp_path / "model.portable.nir"
    nir.write(str(path), portable_nir(compact))
    portable = nir.read(str(path))
    assert isinstance(portable.nodes["pool1"], nir.SumPool2d)
    if pooled == "spikes":
        amplitude = next(name for name, node in compact.nodes.items() if isinstance(node, nir.Scale))
        np.testing.assert_array_equal(portable.nodes[amplitude].weight[:, :, 0, 0] * 4, np.diag(compact.nodes[amplitude].scale[:, 0, 0]))
    else:
        np.testing.assert_array_equal(portable.nodes["if1_reset"].weight[0, 0, 0, 0], -4 * compact.nodes["if1"].v_threshold.flat[0])

    ours = ReferenceRuntime(compact).run(digits, TIMESTEPS)
    spikes, readout = run_consumer(consumer, path, digits, TIMESTEPS)

    assert spikes == ours.spikes and all(count > 0 for count in spikes.values())
    np.testing.assert_allclose(readout, ours.readout, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("consumer", list(CONSUMERS))
def test_grouped_convolutions_are_written_dense(consumer, tmp_path, digits):
    """A MobileNet-style depthwise block: NIR 1.0.8's type inference ignores `groups` (nir.read refuses a grouped
    Conv2d), so the portable file writes it dense, zeros between the groups, and the consumers still fire snnc's spikes."""
    if consumer in INSTALL:
        pytest.importorskip(consumer, reason=f"`make setup` installs {INSTALL[consumer]} with --no-deps")
    torch.manual_seed(0)
    onnx_path = tmp_path / "depthwise.onnx"
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3, padding=1, groups=4),
                              torch.nn.ReLU(), torch.nn.Conv2d(4, 8, 1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(512, 10))
    torch.onnx.export(net.eval(), (torch.from_numpy(digits[:2]),), str(onnx_path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "b"}})
    ann = calibrate_thresholds(canonicalise(import_onnx(onnx_path, "error")), load_onnx(onnx_path), digits, 99.9, False, 1)
    compact = lower_to_nir(ann, "if")
    path = tmp_path / "model.portable.nir"
    nir.write(str(path), portable_nir(compact))
    grouped, dense = compact.nodes["conv2"], nir.read(str(path)).nodes["conv2"]
    assert grouped.groups == 4 and dense.groups == 1
    np.testing.assert_array_equal(dense.weight[[0, 1, 2, 3], [0, 1, 2, 3]], grouped.weight[:, 0])
    assert np.count_nonzero(dense.weight) == np.count_nonzero(grouped.weight)

    ours = ReferenceRuntime(compact).run(digits, TIMESTEPS)
    spikes, readout = run_consumer(consumer, path, digits, TIMESTEPS)

    assert spikes == ours.spikes and all(count > 0 for count in spikes.values())
    np.testing.assert_allclose(readout, ours.readout, rtol=1e-5, atol=1e-4)
