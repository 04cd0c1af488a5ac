"""Torch definitions of the snnc model zoo.

Most networks here are plain feed-forward stacks trained for snnc, exporting to ONNX with ops the compiler
understands (Conv, BatchNormalization, Gemm/MatMul, AveragePool, Flatten/Reshape, Relu, and the QCFS pattern
Div -> Mul -> Add -> Floor -> Div -> Clip -> Mul). The ``*_maxpool`` models are trained the usual way instead
(plain ReLU, max pooling, input normalisation, residual blocks) and exported with the legacy TorchScript
exporter, like most published models: they are what a user brings, not what snnc would prefer.

QCFS is the quantization-clip-floor-shift activation of Bu et al., "Optimal ANN-SNN Conversion for
High-accuracy and Ultra-low-latency Spiking Neural Networks" (ICLR 2022):

    QCFS_{L,lam}(x) = lam / L * clip(floor(x * L / lam + 1/2), 0, L)

with one trainable threshold ``lam`` per layer. An ANN trained with it converts to an integrate-and-fire
SNN whose threshold is ``lam`` (and whose membrane starts at lam/2) with low conversion error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

# Initial threshold of every QCFS layer. The official code uses 8.0 (for VGG/ResNet without a BN right
# before the clip); here every QCFS but the classifier's hidden one follows a BatchNorm, whose output is
# roughly unit-variance, so a smaller start trains faster and more stably (see models/README.md).
QCFS_LAMBDA_INIT = 4.0


class _FloorSTE(torch.autograd.Function):
    """floor(x) forward, identity backward (straight-through estimator), as the official GradFloor."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


def floor_ste(x: torch.Tensor) -> torch.Tensor:
    """Floor with a straight-through gradient; a plain ``Floor`` in inference and in ONNX export."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _FloorSTE.apply(x)
    return torch.floor(x)


class QCFS(nn.Module):
    """Quantization-clip-floor-shift activation with L levels and a trainable scalar threshold lambda."""

    def __init__(self, levels: int, lam: float | None = None) -> None:
        super().__init__()
        if levels < 1:
            raise ValueError(f"QCFS needs at least one level, got {levels}")
        self.levels = int(levels)
        self.lam = nn.Parameter(torch.tensor(float(QCFS_LAMBDA_INIT if lam is None else lam)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x / self.lam
        y = floor_ste(y * self.levels + 0.5) / self.levels
        y = torch.clamp(y, 0.0, 1.0)
        return y * self.lam

    def extra_repr(self) -> str:
        return f"levels={self.levels}, lam={self.lam.item():.4f}"


def _conv_block(cin: int, cout: int, k: int, pad: int, act: Callable[[], nn.Module], bn: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=pad, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(act())
    return layers


def digits_mlp_relu() -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(64, 128), nn.ReLU(),
        nn.Linear(128, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )


def digits_cnn_qcfs8() -> nn.Sequential:
    q = lambda: QCFS(8)  # noqa: E731
    return nn.Sequential(
        *_conv_block(1, 16, 3, 1, q, bn=True),
        *_conv_block(16, 32, 3, 1, q, bn=True),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(512, 64), q(),
        nn.Linear(64, 10),
    )


def _mnist5k_cnn(act: Callable[[], nn.Module], bn: bool) -> nn.Sequential:
    return nn.Sequential(
        *_conv_block(1, 16, 5, 0, act, bn),   # 28 -> 24
        nn.AvgPool2d(2),                      # -> 12
        *_conv_block(16, 32, 5, 0, act, bn),  # -> 8
        nn.AvgPool2d(2),                      # -> 4
        nn.Flatten(),                         # 32*4*4 = 512
        nn.Linear(512, 128), act(),
        nn.Linear(128, 10),
    )


def mnist5k_cnn_qcfs4() -> nn.Sequential:
    return _mnist5k_cnn(lambda: QCFS(4), bn=True)


def mnist5k_cnn_relu() -> nn.Sequential:
    return _mnist5k_cnn(nn.ReLU, bn=False)


def fashion_vgg_qcfs8() -> nn.Sequential:
    """Small VGG-style net; the first pooling comes early so that an epoch of 60k images takes ~40 s on 2 cores."""
    q = lambda: QCFS(8)  # noqa: E731
    return nn.Sequential(
        *_conv_block(1, 16, 3, 1, q, bn=True),   # 28x28
        nn.AvgPool2d(2),                         # -> 14x14
        *_conv_block(16, 32, 3, 1, q, bn=True),
        *_conv_block(32, 32, 3, 1, q, bn=True),
        nn.AvgPool2d(2),                         # -> 7x7
        *_conv_block(32, 64, 3, 1, q, bn=True),
        nn.AvgPool2d(2),                         # -> 3x3 (floor: last row/column of the 7x7 map dropped)
        nn.Flatten(),                            # 64*3*3 = 576
        nn.Dropout(0.2),
        nn.Linear(576, 128), q(),
        nn.Linear(128, 10),
    )


# Mean and standard deviation of the MNIST training pixels, the constants published LeNet code normalises with.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


class Normalize(nn.Module):
    """``(x - mean) / std`` as a layer of the model, so the ONNX file takes raw [0, 1] pixels."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([mean]).reshape(1, 1, 1, 1))
        self.register_buffer("std", torch.tensor([std]).reshape(1, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={float(self.mean):g}, std={float(self.std):g}"


class LeNet(nn.Module):
    """LeNet-5 as the PyTorch tutorials write it: conv-ReLU-MaxPool twice, three linear layers, and the flatten
    spelled ``x.view(x.size(0), -1)`` (the TorchScript exporter turns it into Shape/Gather/Concat/Reshape)."""

    def __init__(self) -> None:
        super().__init__()
        self.normalize = Normalize(MNIST_MEAN, MNIST_STD)
        self.conv1 = nn.Conv2d(1, 6, 5)    # 28 -> 24, pool -> 12
        self.conv2 = nn.Conv2d(6, 16, 5)   # 12 -> 8, pool -> 4
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize(x)
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = x.view(x.size(0), -1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def mnist5k_lenet_maxpool() -> nn.Module:
    return LeNet()


class BasicBlock(nn.Module):
    """The ResNet basic block (He et al. 2016): two 3x3 conv+BN, identity shortcut or 1x1 conv+BN downsampling."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class SmallResNet(nn.Module):
    """torchvision's ResNet layout scaled down for 28x28 inputs: 3x3 stem conv+BN+ReLU, MaxPool(3, 2, pad 1),
    one BasicBlock per stage, global average pooling (AdaptiveAvgPool2d(1)), torch.flatten, linear."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)  # 28 -> 14
        stages, cin = [], widths[0]
        for i, width in enumerate(widths):
            stages.append(BasicBlock(cin, width, stride=1 if i == 0 else 2))  # 14 -> 14 -> 7 -> 4
            cin = width
        self.layers = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layers(x))
        return self.fc(torch.flatten(x, 1))


def fashion_resnet_maxpool() -> nn.Module:
    return SmallResNet()


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: how to build it, what it is trained on, and how."""

    name: str
    build: Callable[[], nn.Module]
    dataset: str
    input_shape: tuple[int, int, int]
    epochs: int
    lr: float
    batch_size: int
    weight_decay: float = 0.0
    description: str = ""
    # "dynamo" (opset 18) for the models trained for snnc; "torchscript" (opset 13) for those trained the usual way.
    exporter: str = "dynamo"
    threads: int = 2


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry("digits_mlp_relu", digits_mlp_relu, "digits", (1, 8, 8), epochs=60, lr=2e-3, batch_size=32,
                 description="Flatten -> Linear(64,128) ReLU -> Linear(128,64) ReLU -> Linear(64,10)"),
        ZooEntry("digits_cnn_qcfs8", digits_cnn_qcfs8, "digits", (1, 8, 8), epochs=60, lr=2e-3, batch_size=32,
                 description="Conv(1->16,3,p1)+BN+QCFS(8) -> Conv(16->32,3,p1)+BN+QCFS(8) -> AvgPool(2) -> "
                             "Flatten -> Linear(512,64)+QCFS(8) -> Linear(64,10)"),
        ZooEntry("mnist5k_cnn_qcfs4", mnist5k_cnn_qcfs4, "mnist5k", (1, 28, 28), epochs=30, lr=2e-3, batch_size=64,
                 description="Conv(1->16,5)+BN+QCFS(4) -> AvgPool(2) -> Conv(16->32,5)+BN+QCFS(4) -> AvgPool(2) -> "
                             "Flatten -> Linear(512,128)+QCFS(4) -> Linear(128,10)"),
        ZooEntry("mnist5k_cnn_relu", mnist5k_cnn_relu, "mnist5k", (1, 28, 28), epochs=30, lr=2e-3, batch_size=64,
                 description="Conv(1->16,5) ReLU -> AvgPool(2) -> Conv(16->32,5) ReLU -> AvgPool(2) -> "
                             "Flatten -> Linear(512,128) ReLU -> Linear(128,10)"),
        ZooEntry("fashion_vgg_qcfs8", fashion_vgg_qcfs8, "fashion", (1, 28, 28), epochs=6, lr=2e-3, batch_size=128,
                 description="Conv(1->16,3,p1)+BN+QCFS(8) -> AvgPool(2) -> Conv(16->32,3,p1)+BN+QCFS(8) -> "
                             "Conv(32->32,3,p1)+BN+QCFS(8) -> AvgPool(2) -> Conv(32->64,3,p1)+BN+QCFS(8) -> "
                             "AvgPool(2) -> Flatten -> Dropout(0.2) -> Linear(576,128)+QCFS(8) -> Linear(128,10)"),
        ZooEntry("mnist5k_lenet_maxpool", mnist5k_lenet_maxpool, "mnist5k", (1, 28, 28), epochs=30, lr=2e-3,
                 batch_size=64, exporter="torchscript", threads=1,
                 description="Normalize((x-0.1307)/0.3081) -> Conv(1->6,5) ReLU -> MaxPool(2) -> Conv(6->16,5) ReLU -> "
                             "MaxPool(2) -> view(batch,-1) -> Linear(256,120) ReLU -> Linear(120,84) ReLU -> "
                             "Linear(84,10)"),
        ZooEntry("fashion_resnet_maxpool", fashion_resnet_maxpool, "fashion", (1, 28, 28), epochs=8, lr=2e-3,
                 batch_size=128, exporter="torchscript", threads=1,
                 description="Conv(1->16,3,p1)+BN ReLU -> MaxPool(3,s2,p1) -> BasicBlock(16->16) -> "
                             "BasicBlock(16->32,s2, 1x1 conv+BN shortcut) -> BasicBlock(32->64,s2, 1x1 conv+BN "
                             "shortcut) -> GlobalAvgPool -> Flatten -> Linear(64,10); BasicBlock(a->b) = "
                             "Conv(a->b,3,p1)+BN ReLU -> Conv(b->b,3,p1)+BN, + shortcut, ReLU"),
    ]
}
