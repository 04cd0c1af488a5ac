"""snnc's model.nir in an independent NIR consumer: SpikingJelly's nir_exchange (through nirtorch) must read it and
fire exactly the spikes snnc's reference runtime fires when it runs the same file by NIR's standard meaning.

The differences docs/nir.md lists are taken out so that the comparison is exact: the IF nodes lose their snnc
metadata (our runtime then resets to v_reset and starts at 0, as NIR and SpikingJelly's IFNode do), the group
neurons are already binary members (`--target nir`), and the readout integrator, which SpikingJelly does not
map, is dropped: its sum over steps is compared with the sum of SpikingJelly's per-step outputs. SpikingJelly
fires at v ≥ θ and NIR at v > θ; identical counts show that no potential of this data lands exactly on θ.
"""

import nir
import numpy as np
import pytest
import torch

from targets.reference import ReferenceRuntime
from toolchain.data import fit_to_input, load_dataset
from toolchain.frontend import import_onnx
from toolchain.neurons.gn import DEFAULT_TAU
from toolchain.passes import canonicalise, expand_group_neurons, lower_to_nir

nir_exchange = pytest.importorskip(
    "spikingjelly.activation_based.nir_exchange",
    reason="`make setup` installs spikingjelly==2.0.0, nirtorch==2.6 and loguru with --no-deps")

TIMESTEPS, SAMPLES = 8, 40


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


def test_spikingjelly_fires_what_the_reference_runtime_fires(tmp_path, zoo):
    # What `snnc compile --neuron gn --target nir` writes (QCFS thresholds need no calibration).
    ann = canonicalise(import_onnx(zoo / "digits_cnn_qcfs8.onnx", "error"))
    nir.write(str(tmp_path / "model.nir"), expand_group_neurons(lower_to_nir(ann, "gn", {"tau": DEFAULT_TAU})))
    graph = _without_snnc_semantics(nir.read(str(tmp_path / "model.nir")))
    x = fit_to_input(load_dataset("digits").x_test[:SAMPLES], (1, 8, 8), "digits")

    ours = ReferenceRuntime(graph).run(x, TIMESTEPS)

    module = nir_exchange.import_from_nir(graph, dt=1.0, step_mode="s")
    theirs = {}
    for name, submodule in module.named_modules():
        if type(submodule).__name__ == "_NIRStatefulModule":  # SpikingJelly's wrapper of each IF node
            submodule.register_forward_hook(lambda _, __, out, name=name: theirs.__setitem__(name, theirs.get(name, 0) + int(out[0].sum())))
    state, outputs = None, []
    with torch.no_grad():
        for _ in range(TIMESTEPS):
            output, state = module(torch.from_numpy(x), state)
            outputs.append(output)

    assert len(theirs) == len(ours.spikes) == 3 * DEFAULT_TAU  # three layers of τ binary members each
    assert theirs == {name.replace(".", "_"): count for name, count in ours.spikes.items()}
    assert all(count > 0 for count in theirs.values())
    np.testing.assert_allclose(torch.stack(outputs).sum(0).numpy(), ours.readout, rtol=1e-5, atol=1e-4)
