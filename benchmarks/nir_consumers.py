"""snnc's portable NIR file (model.portable.nir) in the NIR consumers SpikingJelly, snnTorch and Norse, each through
its own loader: spikes per layer and predictions against snnc's reference runtime on the compact graph → the
"consumers" section of docs/nir.md. tests/test_nir_interop.py runs the same loaders on the digits CNN.

Run with `python -m benchmarks.nir_consumers [--samples N]`; the consumers are test dependencies (`make setup`
installs them with --no-deps).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import nir
import numpy as np
import torch

from benchmarks.sections import replace_section
from toolchain.api import compile as compile_model
from toolchain.errors import SnncError
from toolchain.ir.metadata import KEY
from toolchain.passes.portable_nir import STEP_SECONDS, portable_nir

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "nir.md"
TIMESTEPS = 8


def load_spikingjelly(path: Path) -> torch.nn.Module:
    from spikingjelly.activation_based import nir_exchange
    return nir_exchange.import_from_nir(str(path), dt=STEP_SECONDS, step_mode="s")


def load_snntorch(path: Path) -> torch.nn.Module:
    from snntorch.import_nir import import_from_nir
    return import_from_nir(nir.read(str(path)))  # its dt is fixed at 1e-4 s


def load_norse(path: Path) -> torch.nn.Module:
    from norse.torch import from_nir
    return from_nir(nir.read(str(path)), dt=STEP_SECONDS)


CONSUMERS = {"spikingjelly": load_spikingjelly, "snntorch": load_snntorch, "norse": load_norse}
VERSIONS = {"spikingjelly": "SpikingJelly 2.0.0", "snntorch": "snnTorch 1.0.0", "norse": "Norse 1.1.0"}


def spiking_layers(path: Path) -> dict[str, str]:
    """The consumer's module name of each CubaLIF (nirtorch writes dots as underscores) -> the layer it counts for."""
    return {name.replace(".", "_"): str(node.metadata[KEY]["layer"]) for name, node in nir.read(str(path)).nodes.items()
            if isinstance(node, nir.CubaLIF)}


def run_consumer(consumer: str, path: Path, x: np.ndarray, timesteps: int) -> tuple[dict[str, int], np.ndarray]:
    """Spikes per layer (summed over the CubaLIF nodes of each layer) and the Output summed over the steps, the
    file loaded by `consumer`'s own loader. Two of their bugs are worked around (docs/nir.md): snnTorch and Norse
    pass NIR's per-sample Flatten dims to torch, which then folds the batch in; nirtorch.load (Norse) returns the
    last node of its traversal, so the Output's value is read from its cache."""
    module, layer_of = CONSUMERS[consumer](path), spiking_layers(path)
    for submodule in module.modules():
        if isinstance(submodule, torch.nn.Flatten) and (submodule.start_dim, submodule.end_dim) == (0, -1):
            submodule.start_dim = 1
    spikes, outputs = {}, []
    for name, submodule in module.named_modules():
        layer = layer_of.get(name.rsplit(".", 1)[-1])
        if layer is not None and not isinstance(submodule, torch.nn.Identity):
            submodule.register_forward_hook(lambda _, __, out, layer=layer: spikes.__setitem__(
                layer, spikes.get(layer, 0) + int((out[0] if isinstance(out, tuple) else out).sum())))
    state = None
    with torch.no_grad():
        for _ in range(timesteps):
            output, state = module(torch.from_numpy(x)) if state is None else module(torch.from_numpy(x), state)
            outputs.append(state.cache["output"] if hasattr(state, "cache") else output)
    return spikes, torch.stack(outputs).sum(0).numpy()


# (zoo model, dataset, compile options): max pooling has no standard NIR node, so those models go with --maxpool avg
MODELS = [
    ("digits_cnn_qcfs8", "digits", {}),
    ("digits_mlp_relu", "digits", {}),
    ("mnist5k_cnn_qcfs4", "mnist5k", {}),
    ("mnist5k_cnn_relu", "mnist5k", {}),
    ("mnist5k_lenet_maxpool", "mnist5k", {"maxpool": "avg"}),
    ("fashion_vgg_qcfs8", "fashion", {}),
    ("fashion_resnet_maxpool", "fashion", {"maxpool": "avg"}),
]
NEURONS = {"if": {}, "gn": {"tau": 4}}


def measure(samples: int) -> list[str]:
    rows = []
    for model, data, options in MODELS:
        for neuron, neuron_options in NEURONS.items():
            network = compile_model(ROOT / "models" / "zoo" / f"{model}.onnx", neuron=neuron, data=data, timesteps=[TIMESTEPS],
                                    **neuron_options, **options)
            x = network.x[:samples]
            ours = network.run(x)
            cells = []
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "model.portable.nir"
                try:
                    nir.write(str(path), portable_nir(network.nir))
                except SnncError as err:
                    rows.append(f"| {model} | {neuron} | {sum(ours.spikes.values()):,} | no portable file: {err} | | |")
                    continue
                for consumer in CONSUMERS:
                    try:
                        spikes, readout = run_consumer(consumer, path, x, TIMESTEPS)
                    except Exception as err:  # a consumer's own failure is the measurement
                        cells.append(f"fails: {type(err).__name__}: {str(err).splitlines()[0][:70]}")
                        continue
                    differing = sum(abs(spikes.get(layer, 0) - count) for layer, count in ours.spikes.items())
                    agree = 100 * float((readout.argmax(1) == ours.predictions[-1]).mean())
                    cells.append("identical" if differing == 0 else f"{differing:,} spike{'s' * (differing > 1)} off, predictions {agree:.1f} % agree")
            rows.append(f"| {model} | {neuron} | {sum(ours.spikes.values()):,} | " + " | ".join(cells) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    header = [f"`python -m benchmarks.nir_consumers --samples {args.samples}`: the first {args.samples} test samples of each "
              f"zoo model at T = {TIMESTEPS}; spikes per layer of each consumer's run of model.portable.nir against "
              "snnc's reference runtime on model.nir (the sum of the absolute differences over the layers; "
              "\"identical\" means every layer's count is equal), and where they differ, the share of predictions that agree.",
              "",
              "| model | neuron | snnc's spikes | " + " | ".join(VERSIONS.values()) + " |",
              "|---|---|---|" + "---|" * len(VERSIONS)]
    DOC.write_text(replace_section(DOC.read_text(), "consumers", "\n".join(header + measure(args.samples))))


if __name__ == "__main__":
    main()
