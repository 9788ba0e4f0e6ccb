"""Real architectures for the benchmarks, as ``worker export`` factories: torchvision's
MobileNetV3-Small classifier and LR-ASPP (MobileNetV3-Large) segmenter, random weights (no
download), BatchNorm statistics set so activations have trained-like ranges.

torchvision is not a dependency. Install the build that matches your torch (for the CPU
torch the tests use, the one on PyTorch's own index). Where only PyPI is reachable, its
torchvision wheel carries C++ operators built for another torch; these two models use none of
them, so the import below skips registering them.
"""

from __future__ import annotations

import sys
import types

import torch
from torch import nn

# The PyPI wheel's C++ ops do not load beside a CPU torch; their meta registrations are the
# only import that needs them.
sys.modules.setdefault(
    "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
)

import torchvision  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: E402


def _settle(net: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return net.eval()


def mobilenet_v3_small() -> nn.Module:
    net = torchvision.models.mobilenet_v3_small(weights=None)
    with torch.no_grad():
        # Random weights give near-tied logits, whose top-1 flips on any rounding; trained
        # ones are decisive. Spread them so agreement measures the model, not the ties.
        net.classifier[-1].weight.mul_(50)
    return _settle(net, 1)


def lraspp() -> nn.Module:
    net = torchvision.models.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=21
    )
    return _settle(net, 2)
