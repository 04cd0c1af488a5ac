"""Torch definitions of the snnc model zoo.

Every network here is a plain feed-forward stack that exports to ONNX with ops the compiler understands
(Conv, BatchNormalization, Gemm/MatMul, AveragePool, Flatten/Reshape, Relu, and the QCFS pattern
Div -> Mul -> Add -> Floor -> Div -> Clip -> Mul).

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
    ]
}
