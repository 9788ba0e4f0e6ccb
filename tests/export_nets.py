"""Small PyTorch networks for the export tests, importable as factories (``export_nets:...``).

``test_export`` puts this folder on PYTHONPATH for ``worker export`` subprocesses, the way a
user's own package would be found. Each network is a few kilobytes of weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SEGMENT_LABELS = ("background", "sky", "ground")
CLASSIFY_LABELS = ("blue", "green", "red", "other")


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class Classifier(nn.Module):
    """Conv-BN-ReLU x2, global average pool, linear: [N,3,H,W] -> [N,classes] logits."""

    def __init__(self, classes: int = len(CLASSIFY_LABELS)) -> None:
        super().__init__()
        self.features = nn.Sequential(_block(3, 8), _block(8, 16))
        self.head = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(x).mean(dim=(2, 3)))
        return logits

    def norm(self, block: int) -> nn.Module:
        """The BatchNorm of feature block ``block``."""
        stage = self.features[block]
        assert isinstance(stage, nn.Sequential)
        return stage[1]


class ChannelsLast(Classifier):
    """Takes channels-last input, [N,H,W,3] -> [N,classes]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 3, 1, 2))


class Segmenter(nn.Module):
    """Stride-4 encoder, 1x1 classifier, bilinear upsampling to stride 2 (like real segmenters,
    the mask is coarser than the input): [N,3,H,W] -> [N,classes,H/2,W/2] logits; returns a
    torchvision-style dict whose "out" entry is the one to export."""

    def __init__(self, classes: int = len(SEGMENT_LABELS)) -> None:
        super().__init__()
        self.encoder = nn.Sequential(_block(3, 8), _block(8, 16))
        self.classifier = nn.Conv2d(16, classes, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y: torch.Tensor = self.classifier(self.encoder(x))
        out = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
        return {"out": out, "aux": y}


def classifier(classes: int = len(CLASSIFY_LABELS)) -> Classifier:
    return Classifier(classes)


def channels_last() -> ChannelsLast:
    return ChannelsLast()


def segmenter() -> Segmenter:
    return Segmenter()


def randomized(net: nn.Module, seed: int) -> nn.Module:
    """Set every parameter and BatchNorm statistic from ``seed``: trained-looking weights,
    so an export that ignored them (kept the factory's own init) would answer differently."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, tensor in sorted(net.state_dict().items()):
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=g) * 0.5)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d) and m.running_var is not None:
                m.running_var.abs_().add_(0.5)
    return net.eval()


# --------------------------------------------------------------- networks export must refuse


class StuckInTraining(Classifier):
    """A "frozen BatchNorm" helper gone wrong: ``train()`` forces one layer back to training,
    so ``eval()`` leaves it using batch statistics."""

    def train(self, mode: bool = True) -> StuckInTraining:
        super().train(mode)
        self.norm(0).train(True)
        return self


class AlwaysDropout(Classifier):
    """Calls dropout with ``training=True`` whatever the module's mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x).mean(dim=(2, 3))
        logits: torch.Tensor = self.head(F.dropout(pooled, p=0.5, training=True))
        return logits


class BatchStatistics(Classifier):
    """Its BatchNorm keeps no running statistics: even in eval() it normalises each batch by
    the batch's own, so a frame's answer depends on the frames beside it."""

    def __init__(self) -> None:
        super().__init__()
        stage = self.features[1]
        assert isinstance(stage, nn.Sequential)
        stage[1] = nn.BatchNorm2d(16, track_running_stats=False)


def stuck_in_training() -> StuckInTraining:
    return StuckInTraining()


def always_dropout() -> AlwaysDropout:
    return AlwaysDropout()


def batch_statistics() -> BatchStatistics:
    return BatchStatistics()


class Resampler(nn.Module):
    """``grid_sample`` (ONNX GridSample, opset 16 and up) then a 1x1 classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.grid = nn.Parameter(torch.rand(1, 8, 8, 2) * 2 - 1)
        self.classifier = nn.Conv2d(3, len(SEGMENT_LABELS), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.grid.expand(x.shape[0], -1, -1, -1)
        logits: torch.Tensor = self.classifier(F.grid_sample(x, grid, align_corners=False))
        return logits


def resampler() -> Resampler:
    return Resampler()


class ShapeBranch(Classifier):
    """Python control flow on the input size: tracing keeps the branch taken at export size,
    so the export is wrong at any other size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if x.shape[-1] > 64:
            y = -y
        return y


def shape_branch() -> ShapeBranch:
    return ShapeBranch()


def broken_factory() -> nn.Module:
    raise RuntimeError("cannot build: config file missing")


# ------------------------------------------------------- networks export must judge fairly


class HighLogits(nn.Module):
    """A valid eval-mode segmenter whose logits reach ~1e4 on noise: in float32 a batch of 2
    rounds differently from a batch of 1 (by ~1e-3 here), which is arithmetic, not training
    mode; and ONNX Runtime differs from PyTorch by as much, relatively tiny."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.a = nn.Conv2d(3, 64, 3, padding=1)
        self.b = nn.Conv2d(64, 64, 3, padding=1)
        self.c = nn.Conv2d(64, 4, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1 * 8)
            self.c.weight.mul_(20)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.c(torch.relu(self.b(torch.relu(self.a(x)))))
        return y


def high_logits() -> HighLogits:
    return HighLogits()


class ValueBranch(Classifier):
    """Python control flow on the pixel values: the trace keeps the branch noise takes, so
    bright images get other answers from the export than from PyTorch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if float(x.mean()) > 1.0:
            y = -y
        return y


def value_branch() -> ValueBranch:
    return ValueBranch()
