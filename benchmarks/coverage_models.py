"""The architectures of the ONNX coverage matrix (docs/coverage.md), in plain torch: torchvision's layer structure
(ResNet-18, VGG-11-BN, MobileNetV2, SqueezeNet 1.1, a DenseNet) and the usual flatten idioms, at small widths and
small inputs so that the whole matrix runs in a few minutes on two cores. Weights are seeded and random; every
BatchNorm gets random running statistics, so that folding it is not the identity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu=nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), relu(inplace=True))


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: two 3×3 convs with BN, a 1×1 conv + BN downsample when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    def __init__(self, width: int = 8, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, cin = [], width
        for stage, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
            stride = 1 if stage == 0 else 2
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class VGG11BN(nn.Module):
    """torchvision's VGG-11-BN: on ImageNet's 224×224 the map before AdaptiveAvgPool2d((7,7)) is 7×7 and the pool is
    an identity; on a 32×32 input the map is 1×1, so the pool replicates each channel 49 times for the classifier;
    on a 64×64 input (Tiny ImageNet's) it is 2×2, so the pool's bins overlap. Torch's legacy exporter writes the
    pool only where the map's size is a multiple of 7."""

    def __init__(self, width: int = 4, classes: int = 10, hidden: int = 32):
        super().__init__()
        plan = [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"]
        layers, cin = [], 3
        for item in plan:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, item * width, 3, padding=1), nn.BatchNorm2d(item * width), nn.ReLU(inplace=True)]
                cin = item * width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(cin * 49, hidden), nn.ReLU(True), nn.Dropout(),
                                        nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(), nn.Linear(hidden, classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn_relu(cin, hidden, 1, relu=nn.ReLU6)] if expand != 1 else []
        layers += [conv_bn_relu(hidden, hidden, 3, stride, groups=hidden, relu=nn.ReLU6),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        # (expansion, channels, repeats, stride) as torchvision's, at an eighth of the width and fewer stages
        plan = [(1, 4, 1, 1), (6, 8, 2, 2), (6, 8, 3, 2), (6, 16, 2, 2), (6, 24, 1, 1)]
        layers, cin = [conv_bn_relu(3, 4, 3, 2, relu=nn.ReLU6)], 4
        for expand, cout, repeats, stride in plan:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(conv_bn_relu(cin, 64, 1, relu=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU(inplace=True))
        self.expand1x1 = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU(inplace=True))
        self.expand3x3 = nn.Sequential(nn.Conv2d(squeeze, expand, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x):
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], 1)


class SqueezeNet11(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(16, 4, 8), Fire(16, 4, 8), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(16, 8, 16), Fire(32, 8, 16), nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(32, 12, 24), Fire(48, 12, 24), Fire(48, 16, 32), Fire(64, 16, 32))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(64, classes, 1), nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d((1, 1)))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.layers = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, 2 * growth, 1, bias=False),
                                    nn.BatchNorm2d(2 * growth), nn.ReLU(inplace=True),
                                    nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.layers(x)], 1)


class DenseNet(nn.Module):
    """torchvision's DenseNet structure: stem conv + BN + ReLU + MaxPool, dense blocks, transitions with AvgPool."""

    def __init__(self, growth: int = 4, blocks=(2, 2, 2), classes: int = 10):
        super().__init__()
        layers, channels = [nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                            nn.MaxPool2d(3, 2, 1)], 8
        for index, count in enumerate(blocks):
            for _ in range(count):
                layers.append(DenseLayer(channels, growth))
                channels += growth
            if index != len(blocks) - 1:
                layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels // 2, 1, bias=False),
                           nn.AvgPool2d(2, 2)]
                channels //= 2
        layers += [nn.BatchNorm2d(channels)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(F.relu(self.features(x)), (1, 1))
        return self.classifier(torch.flatten(x, 1))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.layers(x)


FLATTENS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "view": lambda x: x.view(x.size(0), -1),
    "torch.flatten": lambda x: torch.flatten(x, 1),
    "reshape": lambda x: x.reshape(x.shape[0], -1),
    "nn.Flatten": nn.Flatten(),
}


class LeNet(nn.Module):
    """LeNet-5 on 1×28×28 with one of the common flatten idioms between the features and the classifier."""

    def __init__(self, flatten: str):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
        self.flatten = FLATTENS[flatten]
        self.classifier = nn.Sequential(nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]  # one sample, without the batch


ARCHITECTURES = [
    Architecture("ResNet-18", ResNet18, (3, 32, 32)),
    Architecture("VGG-11-BN, 224×224", VGG11BN, (3, 224, 224)),
    Architecture("VGG-11-BN", VGG11BN, (3, 32, 32)),
    Architecture("VGG-11-BN, 64×64", VGG11BN, (3, 64, 64)),
    Architecture("MobileNetV2", MobileNetV2, (3, 32, 32)),
    Architecture("SqueezeNet 1.1", SqueezeNet11, (3, 32, 32)),
    Architecture("DenseNet", DenseNet, (3, 32, 32)),
    Architecture("MLP (nn.Flatten)", MLP, (1, 28, 28)),
    *[Architecture(f"LeNet ({idiom})", lambda idiom=idiom: LeNet(idiom), (1, 28, 28)) for idiom in FLATTENS],
]


def seeded_model(architecture: Architecture, seed: int = 0) -> nn.Module:
    """The architecture with seeded random weights and random BatchNorm running statistics, in eval mode."""
    torch.manual_seed(seed)
    model = architecture.build()
    generator = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            count = module.num_features
            module.running_mean.copy_(torch.randn(count, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(count, generator=generator) * 0.5 + 0.75)
            module.weight.data.copy_(torch.rand(count, generator=generator) * 0.5 + 0.75)
            module.bias.data.copy_(torch.randn(count, generator=generator) * 0.1)
    return model.eval()
