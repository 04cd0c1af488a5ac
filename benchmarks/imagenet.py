"""ImageNet-size networks on the reference runtime: ResNet-18 and VGG-16 at 3×224×224, `if` and `gn` at T=32.

    python -m benchmarks.imagenet [--images 4] [--device cpu]   → prints a Markdown table and writes it into
                                                                   docs/performance.md (its own section)

Both networks are written here in plain torch (no torchvision) with random weights (seed 0), ReLU activations and
max pooling (snnc's default spiking max pooling), exported to ONNX in a temporary folder and compiled through the
Python API, calibrated on the same few seeded random images they then run on (a .npz of uniform [0, 1) inputs;
the weights are random, so accuracy means nothing and the SNN bias calibration is skipped). Each (network, neuron)
is measured in its own subprocess, so that its peak resident memory (max RSS) is its own: that peak covers the
whole process, compile and run. snnc's time is one run of every image after a warm-up run of one image; the ANN's
(onnxruntime, the same images in one batch) is the best of 3, and the dense floor for T steps is
(f₁ + T·(1 − f₁)) ANN forward passes as in benchmarks/runtime.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.runtime import first_layer_share
from benchmarks.sections import replace_section

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = ("resnet18", "vgg16")
NEURONS = ("if", "gn")
STEPS = 32
IMAGES = 4
THREADS = 2
INPUT_SHAPE = (3, 224, 224)
CLASSES = 1000
SECTION = "imagenet"
VGG16_WIDTHS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def resnet18():
    """ResNet-18 (He et al. 2016, the torchvision layout): 7×7 stem, 3×3 max pooling, four stages of two basic
    blocks, global average pooling (as a 7×7 average pool) and a 1000-way classifier."""
    import torch
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, channels_in: int, channels: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(channels_in, channels, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(channels)
            self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(channels)
            self.relu = nn.ReLU()
            self.shortcut = nn.Identity() if stride == 1 and channels_in == channels else nn.Sequential(
                nn.Conv2d(channels_in, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + self.shortcut(x))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    channels = 64
    for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(channels, width, stride), BasicBlock(width, width, 1)]
        channels = width
    layers += [nn.AvgPool2d(7), nn.Flatten(), nn.Linear(512, CLASSES)]
    return nn.Sequential(*layers)


def vgg16():
    """VGG-16 (configuration D of Simonyan & Zisserman 2015): thirteen 3×3 convolutions, five 2×2 max poolings and
    the 4096-4096-1000 classifier (no dropout: it is inference)."""
    from torch import nn

    layers, channels = [], 3
    for width in VGG16_WIDTHS:
        if width == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        channels = width
    layers += [nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, CLASSES)]
    return nn.Sequential(*layers)


BUILDERS = {"resnet18": resnet18, "vgg16": vgg16}


def export(network: str, folder: Path) -> Path:
    """The network with random weights (seed 0; He initialisation for the convolutions, so that activations keep
    their scale through the depth) as ONNX in `folder`."""
    import torch

    torch.manual_seed(0)
    net = BUILDERS[network]().eval()
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = folder / f"{network}.onnx"
    torch.onnx.export(net, (torch.rand(1, *INPUT_SHAPE),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    return path


def write_images(folder: Path, images: int) -> Path:
    """Seeded uniform [0, 1) images with random labels as a .npz (snnc's --data format)."""
    rng = np.random.default_rng(0)
    path = folder / "images.npz"
    np.savez(path, x=rng.uniform(0, 1, (images, *INPUT_SHAPE)).astype(np.float32), y=rng.integers(0, CLASSES, images))
    return path


def measure(kind: str, network: str, neuron: str, folder: Path, device: str) -> dict:
    """One measurement, inside its own subprocess: the ANN in onnxruntime, or snnc's compile and run."""
    import torch

    torch.set_num_threads(THREADS)
    model, data = folder / f"{network}.onnx", folder / "images.npz"
    with np.load(data) as archive:
        x = archive["x"]
    if kind == "ann":
        from toolchain.frontend import load_onnx
        from toolchain.onnx_runtime import session

        sess = session(load_onnx(model), THREADS)
        name = sess.get_inputs()[0].name
        sess.run(None, {name: x})
        times = []
        for _ in range(3):
            start = time.perf_counter()
            sess.run(None, {name: x})
            times.append(time.perf_counter() - start)
        return {"seconds": min(times)}
    import snnc

    start = time.perf_counter()
    net = snnc.compile(model, neuron=neuron, data=str(data), timesteps=(STEPS,), samples=len(x), calibration_samples=len(x),
                       snn_calibration=False, threads=THREADS, device=device)
    compiled = time.perf_counter() - start
    net.run(x[:1])  # warm-up: first touches of the largest signals' memory, lazy initialisations
    start = time.perf_counter()
    result = net.run(x)
    seconds = time.perf_counter() - start
    spikes = sum(result.spikes.values()) / len(x)
    return {"seconds": seconds, "compile_seconds": compiled, "f1": first_layer_share(net.nir), "spikes_per_image": spikes}


def in_subprocess(kind: str, network: str, neuron: str, folder: Path, device: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.imagenet", "--measure", kind, network, neuron, str(folder), "--device", device]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=3600)
    if result.returncode:
        lines = result.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {result.returncode}"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(networks: list[str], neurons: list[str], images: int, device: str, folder: Path) -> str:
    header = ["network", "neuron", "T", "images", "ANN (ms/image)", "floor (ms/image)", "snnc (ms/image)", "images/s",
              "snnc / floor", "spikes/image", "compile (s)", "peak MB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for network in networks:
        export(network, folder)
        ann = in_subprocess("ann", network, "if", folder, device)
        print(f"{network} ANN: {ann}", file=sys.stderr, flush=True)
        for neuron in neurons:
            ours = in_subprocess("snnc", network, neuron, folder, device)
            print(f"{network} {neuron}: {ours}", file=sys.stderr, flush=True)
            if "error" in ours or "error" in ann:
                lines.append(f"| {network} | {neuron} | {STEPS} | {images} | failed: {(ours.get('error') or ann.get('error'))[:80]} |" + " — |" * 7)
                continue
            ann_per_image, per_image = ann["seconds"] / images, ours["seconds"] / images
            floor = (ours["f1"] + STEPS * (1 - ours["f1"])) * ann_per_image
            lines.append("| " + " | ".join([
                network, neuron, str(STEPS), str(images), f"{1000 * ann_per_image:.0f}", f"{1000 * floor:.0f}",
                f"{1000 * per_image:.0f}", f"{1 / per_image:.3f}", f"{per_image / floor:.2f}×",
                f"{ours['spikes_per_image']:.3g}", f"{ours['compile_seconds']:.1f}", f"{ours['peak_mb']:.0f}"]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", nargs=4, metavar=("KIND", "NETWORK", "NEURON", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--neurons", default=",".join(NEURONS))
    parser.add_argument("--images", type=int, default=IMAGES)
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--note", default="", help="a sentence on the conditions of the run, printed under the table")
    parser.add_argument("--output", default=str(ROOT / "docs" / "performance.md"))
    args = parser.parse_args()
    if args.measure:
        kind, network, neuron, folder = args.measure
        entry = measure(kind, network, neuron, Path(folder), args.device)
        entry["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(entry))
        return
    with tempfile.TemporaryDirectory() as folder:
        write_images(Path(folder), args.images)
        body = table(args.networks.split(","), args.neurons.split(","), args.images, args.device, Path(folder))
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    text = "\n".join([
        "## ImageNet-size networks (ResNet-18, VGG-16 at 3×224×224, T=32)", "",
        "<!-- generated by `python -m benchmarks.imagenet`; do not edit by hand -->", "",
        f"Measured on {today} on this machine ({machine}), device `{args.device}`, {THREADS} threads, {args.images} "
        f"seeded random images per network: random weights (seed 0), calibrated on those images; snnc's time is one "
        "run of all images after a warm-up image, the ANN's (onnxruntime, same images, one batch) the best of 3; peak MB "
        "is the whole process's resident peak (compile and run). images/s counts images through all T steps.", "",
        body, "", *([args.note, ""] if args.note else []),
    ])
    print(text)
    output = Path(args.output)
    output.write_text(replace_section(output.read_text() if output.exists() else "", SECTION, text))


if __name__ == "__main__":
    main()
