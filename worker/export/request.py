"""What ``worker export`` is asked to do (``ExportRequest``), checked before any work, and
what follows from it alone: the axes to leave dynamic, the shapes to verify at, the card.

torch is not imported here: ``worker export --help`` and a refused request need none of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from worker.errors import ExportError
from worker.export.exporter import opset_range
from worker.models.card import ModelCard

#: What an export is asked to trace at most: it runs the model on random inputs of this size.
_MAX_BATCH = 64
_MAX_SIDE = 8192

__all__ = [
    "CARD_FLAGS",
    "DIMS",
    "ExportRequest",
    "card_fields",
    "describe_tensor",
    "input_axes",
    "output_axes",
    "output_classes",
    "validate_request",
    "verify_shapes",
]

Dim = Literal["batch", "height", "width"]
DIMS: tuple[Dim, ...] = ("batch", "height", "width")
#: Card fields a user sets with flags; the rest of the card follows from the model.
CARD_FLAGS = (
    "color_order",
    "scale",
    "mean",
    "std",
    "resize",
    "interpolation",
    "crop_from",
    "activation",
)


@dataclass(frozen=True)
class ExportRequest:
    factory: str  # module:function returning an nn.Module
    weights: Path
    input_shape: tuple[int, int, int, int]  # NCHW or NHWC: the 3-channel axis tells
    output: Path  # models/m.onnx; the card goes beside it (models/m.json)
    dynamic: frozenset[str] = frozenset({"batch"})
    opset: int = 17
    task: Literal["segment", "classify"] | None = None
    labels: tuple[str, ...] | None = None
    card: Mapping[str, Any] = field(default_factory=dict)  # CARD_FLAGS the user gave
    samples: Path | None = None
    rtol: float = 1e-3  # outputs match within atol + rtol * |PyTorch's| (torch.onnx's guide)
    atol: float = 1e-5
    min_agreement: float = 0.99  # the worker's answers (top-1, mask pixels) that must match
    simplify: bool = True
    half: bool = False  # float16 weights and activations (inputs and outputs stay float32)
    quantize: Literal["int8"] | None = None  # static QDQ, calibrated on the samples
    factory_kwargs: Mapping[str, Any] = field(default_factory=dict)
    trust_weights: bool = False
    input_name: str = "image"
    output_name: str = "output"

    @property
    def layout(self) -> Literal["NCHW", "NHWC"]:
        return "NCHW" if self.input_shape[1] == 3 else "NHWC"

    @property
    def hw(self) -> tuple[int, int]:
        s = self.input_shape
        return (s[2], s[3]) if self.layout == "NCHW" else (s[1], s[2])


def validate_request(req: ExportRequest) -> ModelCard:
    """Refuse bad requests before any work; returns the card the flags describe."""
    s = req.input_shape
    if len(s) != 4 or any(d < 1 for d in s) or 3 not in (s[1], s[3]):
        raise ExportError(
            f"--input-shape {','.join(map(str, s))}: expected 4 positive sizes with 3 colour "
            "channels, N,3,H,W (NCHW) or N,H,W,3 (NHWC), e.g. 1,3,512,512"
        )
    n, (h, w) = s[0], req.hw
    if n > _MAX_BATCH or max(h, w) > _MAX_SIDE:
        raise ExportError(
            f"--input-shape {','.join(map(str, s))}: at most a batch of {_MAX_BATCH} and "
            f"{_MAX_SIDE} pixels a side (the export runs the model on it, twice)"
        )
    unknown = sorted(set(req.dynamic) - set(DIMS))
    if unknown:
        raise ExportError(
            f"--dynamic {','.join(unknown)}: unknown; choose from {', '.join(DIMS)} (or none)"
        )
    low, high = opset_range()
    if not low <= req.opset <= high:
        raise ExportError(f"--opset {req.opset}: this torch exports opsets {low} to {high}")
    if req.output.suffix.lower() != ".onnx":
        raise ExportError(f"--output '{req.output}': expected a path ending in .onnx")
    for flag, value in (("--rtol", req.rtol), ("--atol", req.atol)):
        if not 0 <= value < float("inf"):
            raise ExportError(f"{flag} {value:g}: expected a number, 0 or more")
    if req.rtol == 0 and req.atol == 0:
        raise ExportError("--rtol and --atol are both 0: give at least one a positive value")
    if req.half and req.quantize:
        raise ExportError("--half and --quantize: choose one")
    if req.quantize and req.samples is None:
        raise ExportError(
            "--quantize int8 needs --samples DIR: images like the ones the model will see, "
            "to calibrate the int8 ranges"
        )
    if not 0 < req.min_agreement <= 1:
        raise ExportError(
            f"--min-agreement {req.min_agreement:g}: expected a fraction above 0, at most 1"
        )
    if not req.input_name or not req.output_name or req.input_name == req.output_name:
        raise ExportError("--input-name and --output-name must be two different names")
    try:
        return ModelCard.model_validate({"task": req.task, "labels": req.labels, **req.card})
    except ValidationError as e:
        err = e.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "card"
        raise ExportError(f"--{name.replace('_', '-')}: {err['msg']}") from e


def input_axes(req: ExportRequest) -> dict[int, str]:
    """The input's dynamic axes, named."""
    axes = {0: "batch"} if "batch" in req.dynamic else {}
    h_axis = 2 if req.layout == "NCHW" else 1
    if "height" in req.dynamic:
        axes[h_axis] = "height"
    if "width" in req.dynamic:
        axes[h_axis + 1] = "width"
    return axes


def output_axes(rank: int, req: ExportRequest) -> dict[int, str]:
    axes = {0: "batch"} if "batch" in req.dynamic else {}
    spatial = {"height", "width"} & req.dynamic
    if rank >= 3 and spatial:
        h_axis = rank - 2  # [N,C,h,w] or [N,h,w]
        if "height" in spatial:
            axes[h_axis] = "out_height"
        if "width" in spatial:
            axes[h_axis + 1] = "out_width"
    return axes


def output_classes(shape: tuple[int, ...], integer: bool) -> int | None:
    """Labels a card needs for this output: None where the output cannot say (class maps)."""
    if len(shape) == 2:
        return shape[1]
    if integer:
        return None
    if len(shape) == 3 or shape[1] == 1:
        return 2  # a single map thresholded: background and the class
    return shape[1]


def verify_shapes(req: ExportRequest) -> list[tuple[int, int, int]]:
    n, (h, w) = req.input_shape[0], req.hw
    shapes = [(n, h, w)]
    if "batch" in req.dynamic:
        shapes.append((2 if n != 2 else 3, h, w))
    if {"height", "width"} & req.dynamic:
        shapes.append(
            (
                1 if "batch" in req.dynamic else n,
                2 * h if "height" in req.dynamic else h,
                2 * w if "width" in req.dynamic else w,
            )
        )
    return shapes


def card_fields(base: ModelCard, task: str, req: ExportRequest) -> dict[str, Any]:
    """The card written beside the model: how to preprocess, spelled out even where it is
    the default, so the file says it without the reader knowing our defaults."""
    card: dict[str, Any] = {"task": task}
    if req.labels is not None:
        card["labels"] = list(req.labels)
    card.update(
        color_order=base.color_order,
        scale=base.scale,
        mean=list(base.mean),
        std=list(base.std),
        resize=base.resize,
    )
    if {"height", "width"} & req.dynamic:
        card["input_size"] = list(req.hw)  # the graph cannot say: the export size
    for name in ("interpolation", "crop_from", "activation"):
        if name in req.card:
            card[name] = getattr(base, name)
    return card


def describe_tensor(name: str, shape: tuple[int, ...], axes: Mapping[int, str]) -> str:
    return f"{name}[{','.join(axes.get(i, str(d)) for i, d in enumerate(shape))}]"
