"""A model ready to run: the graph, its card and one probe run, resolved into one object.

Resolution order for every field: explicit override (``task=``) > card > what the graph says >
default. A probe run on a blank input tells the real output shape, so dynamic or missing
output shapes in the graph are no obstacle.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from worker.errors import CardError, ModelError
from worker.kinds import Task
from worker.models.card import ModelCard, card_from_metadata, resolve_card
from worker.models.cpu import cpu_flags, saturates_int8_weights
from worker.models.engine import Engine
from worker.models.forms import detect_form, yolo_anchors
from worker.models.graph import GraphInfo, read_graph, remember_probe
from worker.models.palette import voc_color, voc_palette
from worker.models.repository import card_path_for
from worker.ops.postprocess import NO_CLASS

__all__ = ["MAX_CLASSES", "Kind", "Model", "load_model"]

log = logging.getLogger(__name__)

#: How the output becomes an answer. scores: [N,C] classification; multiclass: [N,C,H,W] argmax;
#: multilabel: [N,C,H,W] each class thresholded; binary: [N,1,H,W] or [N,H,W] thresholded;
#: class_map: integer [N,H,W] or [N,1,H,W] already argmaxed. boxes_*: a YOLO detector's head
#: (``worker.ops.detect``: v8, v5, or e2e with NMS inside).
Kind = Literal[
    "scores", "multiclass", "multilabel", "binary", "class_map",
    "boxes_v8", "boxes_v5", "boxes_e2e", "boxes_v8seg",
]  # fmt: skip

#: How a detector is fed and read where its card does not say: as Ultralytics does.
_DETECT_DEFAULTS: dict[str, Any] = {
    "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "resize": "letterbox", "pad": 114,
    "threshold": 0.25,
}  # fmt: skip
#: Masks are uint8 and 255 marks pixels the model did not see (outside a centre crop).
MAX_CLASSES = NO_CLASS


@dataclass(frozen=True)
class Model:
    path: Path
    card_path: Path | None
    graph: GraphInfo
    engine: Engine
    task: Task
    kind: Kind
    labels: tuple[str, ...]
    colors: np.ndarray[Any, np.dtype[np.uint8]]  # (256, 3) RGB, class i -> colors[i]
    color_order: Literal["rgb", "bgr"]
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: Literal["stretch", "letterbox", "center_crop"]
    interpolation: Literal["linear", "area", "antialias"]
    input_hw: tuple[int, int]
    crop_from: int
    activation: Literal["softmax", "sigmoid", "none"]
    threshold: float
    background: int | None
    output_shape: tuple[int, ...]  # as seen on the probe run, batch first (the first output)
    notes: list[str] = field(default_factory=list)
    iou: float = 0.7  # detect: NMS overlap
    max_det: int = 300  # detect: boxes per frame at most
    pad: int = 0  # letterbox border grey
    #: card field -> where it came from: overrides, card file, model metadata or default
    card_sources: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def batch(self) -> int | None:
        """The fixed batch size of the graph, or None when it is dynamic."""
        return self.graph.batch

    def label(self, index: int) -> str:
        return self.labels[index] if 0 <= index < len(self.labels) else f"class_{index}"

    def color(self, index: int) -> tuple[int, int, int]:
        """Class ``index``'s RGB colour: the card's or the palette's for the first 256 (the
        table a mask is painted through), the palette's rule beyond them (ImageNet's 1000
        classes, LVIS's 1203)."""
        if 0 <= index < len(self.colors):
            r, g, b = self.colors[index]
            return int(r), int(g), int(b)
        return voc_color(index)

    def describe(self) -> dict[str, Any]:
        """What ``worker inspect`` prints: the graph as read and the card as it takes effect."""
        g = self.graph
        dynamic = [
            n
            for n, d in (("batch", g.batch), ("height", g.height), ("width", g.width))
            if d is None
        ]
        return {
            "model": str(self.path),
            "card": str(self.card_path) if self.card_path else None,
            "opset": g.opset,
            "input": g.input.describe(),
            "output": g.output.describe(),
            "probe_output_shape": list(self.output_shape),
            "layout": g.layout,
            "dynamic_dims": dynamic,
            "final_op": g.final_op,
            "task": self.task,
            "output_kind": self.kind,
            "provider": self.engine.provider,
            "effective_card": {
                "task": self.task,
                "labels": list(self.labels)
                if len(self.labels) <= 64
                else [*self.labels[:64], f"... ({len(self.labels)} in all)"],
                "colors": [list(map(int, c)) for c in self.colors[: min(len(self.labels), 64)]],
                "color_order": self.color_order,
                "scale": self.scale,
                "mean": list(self.mean),
                "std": list(self.std),
                "resize": self.resize,
                "interpolation": self.interpolation,
                "input_size": list(self.input_hw),
                "crop_from": self.crop_from,
                "activation": self.activation,
                "multi_label": self.kind == "multilabel",
                "threshold": self.threshold,
                "background": self.background,
            },
            # Where each card field came from; "default" fields are inferred from the graph
            # (task, labels, input size) or the card's defaults.
            "card_sources": self.card_sources,
            "notes": self.notes,
        }


def _input_hw(g: GraphInfo, card: ModelCard) -> tuple[int, int]:
    if g.height is not None and g.width is not None:
        if card.input_size is not None and tuple(card.input_size) != (g.height, g.width):
            raise CardError(
                f"model '{g.path}': card input_size {list(card.input_size)} contradicts the "
                f"graph's fixed input {g.input.describe()}"
            )
        return g.height, g.width
    if card.input_size is None:
        raise ModelError(
            f"model '{g.path}': input {g.input.describe()} has dynamic height/width; "
            "set input_size [h, w] in the model card"
        )
    return card.input_size[0], card.input_size[1]


def _probe(
    g: GraphInfo, engine: Engine, hw: tuple[int, int], every: bool = False
) -> list[tuple[int, ...]]:
    """The output shapes on a blank input: the first only, or (``every``) all of them."""
    n = g.batch or 1
    shape = (n, 3, *hw) if g.layout == "NCHW" else (n, *hw, 3)
    blank = np.zeros(shape, dtype=g.input.dtype)
    try:
        if every:
            return [tuple(int(d) for d in o.shape) for o in engine.run_all(blank)]
        return [engine.output_shape(blank)]
    except Exception as e:
        raise ModelError(
            f"model '{g.path}': ONNX Runtime failed on a blank input shaped {list(shape)}: {e}"
        ) from e


def _kind(g: GraphInfo, task: Task | None, card: ModelCard, shape: tuple[int, ...]) -> Kind:
    expected = "expected [N,C] (classify) or [N,C,H,W], [N,1,H,W], [N,H,W] (segment)"
    where = f"model '{g.path}': output {g.output.name} shaped {list(shape)}"
    rank = len(shape)
    task = task or card.task or ("classify" if rank == 2 else "segment")
    integer = np.issubdtype(g.output.dtype, np.integer)
    if task == "classify":
        if rank != 2 or integer:
            raise ModelError(f"{where} ({g.output.dtype}) cannot be classified; {expected}")
        return "scores"
    if rank == 4 and shape[1] == 1 and not integer and card.multi_label:
        # One channel with multi_label (a sigmoid text or foreground map): one label, painted
        # where it is on. A card that wants the binary reading says so with two labels.
        return "multilabel"
    if rank == 3 or (rank == 4 and shape[1] == 1):
        return "class_map" if integer else "binary"
    if rank == 4 and not integer:
        return "multilabel" if card.multi_label else "multiclass"
    raise ModelError(f"{where} ({g.output.dtype}) cannot be segmented; {expected}")


def _labels(g: GraphInfo, kind: Kind, card: ModelCard, shape: tuple[int, ...]) -> tuple[str, ...]:
    n = {
        "scores": shape[-1], "multiclass": shape[1], "multilabel": shape[1], "binary": 2,
        "boxes_v8": shape[1] - 4, "boxes_v5": shape[-1] - 5, "boxes_v8seg": shape[1] - 4 - 32,
    }.get(kind, len(card.labels) if card.labels else MAX_CLASSES)  # fmt: skip
    if kind in ("multiclass", "multilabel", "binary", "class_map") and n > MAX_CLASSES:
        raise ModelError(
            f"model '{g.path}': {n} classes; segmentation supports at most {MAX_CLASSES}"
        )
    if kind == "multilabel" and n > 32:
        raise ModelError(
            f"model '{g.path}': {n} classes; multi-label segmentation supports at most 32"
        )
    if card.labels is None:
        return tuple(f"class_{i}" for i in range(n))
    if len(card.labels) != n:
        raise CardError(
            f"model '{g.path}': card has {len(card.labels)} labels but the output "
            f"{list(shape)} has {n} classes"
        )
    return tuple(card.labels)


def load_model(
    path: Path,
    *,
    card: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    overrides_from: str = "",
    task: Task | None = None,
    provider: str = "auto",
    threads: int = 0,
    lanes: int = 1,
    cache_dir: Path | None = None,
) -> Model:
    """Read, check, load and probe a model; raise ``ModelError``/``CardError`` with the reason.

    ``threads``, ``lanes``: see ``Engine`` (a pipeline's lanes share the CPU's cores).
    ``cache_dir``: where what was read and probed is kept, so the next load of the same bytes
    skips reading the graph (and importing onnx) and the probe run.

    The card is ``card`` if given, else the one that travels with the model (``card.json`` in
    its folder, ``<model>.json`` beside a bare model), with ``overrides`` on top, field by field
    (``overrides_from`` names where they came from, for errors).
    """
    g = read_graph(path, cache_dir)
    beside = card_path_for(path)
    card_path: Path | None = card if card is not None else beside if beside.is_file() else None
    embedded = card_from_metadata(g.metadata, path)
    resolved = resolve_card(card_path, overrides, overrides_from=overrides_from, embedded=embedded)
    c = resolved.card
    hw = _input_hw(g, c)
    # ONNX Runtime reads the file itself (the bytes just checked; weights in external files
    # are found relative to it): serialising the parsed protobuf again took longer.
    engine = Engine(str(path), provider=provider, threads=threads, lanes=lanes, name=str(path))
    if g.int8_weights and engine.device == "cpu" and saturates_int8_weights(cpu_flags()):
        log.warning(
            "model '%s': int8 weights on a CPU without VNNI, where ONNX Runtime's int8 "
            "kernels can saturate and answer unlike the float model; 'worker export "
            "--quantize int8' on this CPU gives uint8 weights",
            path,
        )
    # Two outputs, the second 32 prototypes: an instance segmenter's head and prototypes.
    protos = len(g.outputs) == 2 and g.outputs[1].shape is not None and len(g.outputs[1].shape) == 4
    probe_key = f"{hw[0]}x{hw[1]}{'+' if protos else ''}"
    seen = g.probes.get(probe_key)
    if seen:
        shapes = [tuple(s) for s in seen]
    else:
        engine.load()  # a model ONNX Runtime cannot load says so here, not at its first frame
        shapes = _probe(g, engine, hw, every=protos)
        remember_probe(g, cache_dir, probe_key, shapes)
    shape = shapes[0]
    metadata = g.metadata
    want = task or c.task
    second = shapes[1] if len(shapes) == 2 else None
    form = detect_form(shape, hw, metadata, second) if want in (None, "detect") else None
    if form is None and second is not None and second[1] == 32:
        raise ModelError(
            f"model '{path}': outputs {list(shape)} and {list(second)} look like an instance "
            f"segmenter's head and prototypes, but the head is not YOLOv8/11's [N, 4 + "
            f"classes + 32, {yolo_anchors(*hw)}] at {hw[0]}x{hw[1]}; not supported"
        )
    if want == "detect" and form is None:
        raise ModelError(
            f"model '{path}': output {g.output.name} shaped {list(shape)} is not a detector "
            f"head this worker reads; expected YOLOv8/11 [N, 4 + classes, "
            f"{yolo_anchors(*hw)}] or YOLOv5 [N, {3 * yolo_anchors(*hw)}, 5 + classes] at "
            f"{hw[0]}x{hw[1]}, or [N, K, 6] with NMS inside (Ultralytics metadata task=detect)"
        )
    kind: Kind = f"boxes_{form}" if form else _kind(g, task, c, shape)  # type: ignore[assignment]
    if form is not None:
        # Fed and read as Ultralytics does, where the card does not say otherwise.
        c = c.model_copy(
            update={k: v for k, v in _DETECT_DEFAULTS.items() if resolved.sources[k] == "default"}
        )
    labels = _labels(g, kind, c, shape)
    notes: list[str] = []

    if c.activation != "auto":
        activation = c.activation
    elif g.final_op in ("Softmax", "Sigmoid") or kind == "class_map":
        activation = "none"
    else:
        activation = "sigmoid" if kind in ("binary", "multilabel") else "softmax"

    if "background" in c.model_fields_set and form is None:
        background = c.background
    else:
        background = None if kind == "multilabel" or form else 0
    if background is not None and kind != "scores" and background >= len(labels):
        raise CardError(
            f"model '{path}': card background {background} is not a class index "
            f"(0..{len(labels) - 1})"
        )

    colors = voc_palette(256)
    if c.colors:
        if len(c.colors) > 256:
            raise CardError(f"model '{path}': card has {len(c.colors)} colors; at most 256")
        colors[: len(c.colors)] = np.array(c.colors, dtype=np.uint8)
    if kind != "scores" and background != 0 and not c.colors and len(labels) < 256:
        # VOC's colour 0 is black: right for a background left unpainted, invisible for a
        # class that is painted (multi-label, background null). It gets the first colour no
        # other class uses instead.
        colors[0] = colors[len(labels)]
    if overrides:
        notes.append(f"card fields overridden: {', '.join(sorted(overrides))}")
    if g.input.dtype == np.uint8:
        notes.append("uint8 input: pixels are fed as they are; scale/mean/std are not applied")

    return Model(
        path=path,
        card_path=card_path,
        graph=g,
        engine=engine,
        task="classify" if kind == "scores" else "detect" if form else "segment",
        kind=kind,
        labels=labels,
        colors=colors,
        color_order=c.color_order,
        scale=c.scale,
        mean=c.mean,
        std=c.std,
        resize=c.resize,
        interpolation=c.interpolation,
        input_hw=hw,
        crop_from=c.crop_from or max(hw),
        activation=activation,
        threshold=c.threshold,
        background=background,
        output_shape=shape,
        notes=notes,
        card_sources=resolved.sources,
        iou=c.iou,
        max_det=c.max_det,
        pad=c.pad,
    )
