"""The model card: what the graph cannot say (labels, colours, preprocessing).

A card is ``card.json`` in the model's folder (``<model>.json`` beside a bare model), or a
path given with ``--card``; a model exported by ``worker export`` also carries its card in its
own metadata (``METADATA_KEY``), which a card file overrides field by field. Every field is
optional; anything missing is inferred from the graph or defaulted (see ``worker.models.model``).
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.errors import CardError
from worker.messages import plain, tuple_length

__all__ = [
    "METADATA_KEY",
    "ModelCard",
    "ResolvedCard",
    "card_from_metadata",
    "load_card",
    "resolve_card",
    "ultralytics_card",
]

Channel = Annotated[float, Field(allow_inf_nan=False)]
Rgb = tuple[
    Annotated[int, Field(ge=0, le=255)],
    Annotated[int, Field(ge=0, le=255)],
    Annotated[int, Field(ge=0, le=255)],
]


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Literal["segment", "classify", "detect"] | None = None
    labels: list[str] | None = Field(None, min_length=1)
    colors: list[Rgb] | None = Field(None, min_length=1)
    color_order: Literal["rgb", "bgr"] = "rgb"
    scale: Channel = 1.0 / 255.0
    mean: tuple[Channel, Channel, Channel] = (0.485, 0.456, 0.406)
    std: tuple[Channel, Channel, Channel] = (0.229, 0.224, 0.225)
    resize: Literal["stretch", "letterbox", "center_crop"] = "stretch"
    interpolation: Literal["linear", "area", "antialias"] = "linear"
    input_size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] | None = None
    crop_from: Annotated[int, Field(ge=1)] | None = None
    activation: Literal["auto", "softmax", "sigmoid", "none"] = "auto"
    multi_label: bool = False
    threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    background: Annotated[int, Field(ge=0)] | None = Field(0)
    # Detectors: boxes overlapping a better one of their class by more than ``iou`` go (NMS);
    # at most ``max_det`` per frame; letterbox borders of grey ``pad`` (Ultralytics: 114).
    iou: Annotated[float, Field(gt=0.0, le=1.0)] = 0.7
    max_det: Annotated[int, Field(ge=1, le=10_000)] = 300
    pad: Annotated[int, Field(ge=0, le=255)] = 0

    @field_validator("std")
    @classmethod
    def _std_nonzero(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s == 0 for s in v):
            raise ValueError("std must not contain 0")
        return v


def _problems(e: ValidationError) -> str:
    lengths = {
        name: n
        for name, f in ModelCard.model_fields.items()
        if (n := tuple_length(f.annotation)) is not None
    }
    said = []
    for err in e.errors():
        where, what = plain(err, known=ModelCard.model_fields, lengths=lengths)
        said.append(what if err["type"] == "extra_forbidden" else f"{where or 'card'}: {what}")
    return "; ".join(said)


#: The key of an ONNX model's ``metadata_props`` that carries its card as JSON (written by
#: ``worker export``; Ultralytics keeps its model's names and sizes there the same way), so a
#: model file describes itself when no card travels with it.
METADATA_KEY = "video_worker.card"


@dataclass(frozen=True)
class ResolvedCard:
    card: ModelCard
    #: field -> where its value came from: "overrides" (a pipeline's [card]), "card file",
    #: "model metadata" or "default".
    sources: dict[str, str]


def _fields(text: str, where: str) -> dict[str, Any]:
    """The card fields set in ``text`` (JSON); ``CardError`` naming ``where`` if they are not
    a valid card."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CardError(f"{where}: not valid JSON ({e})") from e
    except RecursionError:
        raise CardError(f"{where}: nested too deeply to be a card") from None
    if not isinstance(data, dict):
        raise CardError(f"{where}: expected a JSON object, got {type(data).__name__}")
    try:
        return ModelCard.model_validate(data).model_dump(exclude_unset=True)
    except ValidationError as e:
        raise CardError(f"{where}: {_problems(e)}") from e


def _read_card_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CardError(f"model card '{path}': cannot read ({e.strerror or e})") from e
    except UnicodeDecodeError:
        raise CardError(f"model card '{path}': not UTF-8 text; expected JSON") from None
    return _fields(text, f"model card '{path}'")


def card_from_metadata(props: Mapping[str, str], model: Path) -> dict[str, Any]:
    """The card fields a model carries in its metadata (``METADATA_KEY``), else what an
    Ultralytics export says of itself; {} if neither."""
    text = props.get(METADATA_KEY)
    if text is None:
        return ultralytics_card(props)
    return _fields(text, f"model '{model}': its embedded card (metadata '{METADATA_KEY}')")


def ultralytics_card(props: Mapping[str, str]) -> dict[str, Any]:
    """The card an Ultralytics export implies: ``names`` (a Python dict literal, read with
    ``ast.literal_eval``, never run) -> labels, ``imgsz`` -> input size, ``task``, and how
    Ultralytics feeds its models (RGB 0..1, no mean or std, letterboxed on grey 114). {} for
    a model that is not one; a field it states oddly is left to the defaults."""
    if "names" not in props or "stride" not in props:
        return {}
    out: dict[str, Any] = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    task = props.get("task")
    if task == "classify":
        out["task"] = task
    if task in ("detect", "segment"):  # Ultralytics' "segment" is instances: boxes and masks
        out |= {"task": "detect", "resize": "letterbox", "pad": 114, "threshold": 0.25}
    try:
        names = ast.literal_eval(props["names"])
        size = ast.literal_eval(props.get("imgsz", "None"))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return out
    if isinstance(names, dict) and names and sorted(names) == list(range(len(names))):
        out["labels"] = [str(names[i]) for i in range(len(names))]
    if isinstance(size, list | tuple) and len(size) == 2 and all(isinstance(v, int) for v in size):
        out["input_size"] = (int(size[0]), int(size[1]))
    try:
        return ModelCard.model_validate(out).model_dump(exclude_unset=True)
    except ValidationError:
        return {}


def resolve_card(
    path: Path | None,
    overrides: Mapping[str, Any] | None = None,
    *,
    overrides_from: str = "",
    embedded: Mapping[str, Any] | None = None,
) -> ResolvedCard:
    """The card in effect, field by field: ``overrides`` (a pipeline file's ``[card]``) over
    the card file ``path`` over the model's ``embedded`` card over the defaults; with where
    each field came from. Errors name the file or source and the offending field."""
    layers = [
        ("model metadata", dict(embedded or {})),
        ("card file", _read_card_file(path) if path is not None else {}),
    ]
    merged: dict[str, Any] = {}
    sources = {name: "default" for name in ModelCard.model_fields}
    for source, fields in layers:
        merged.update(fields)
        sources.update({name: source for name in fields})
    if overrides:
        try:
            card = ModelCard.model_validate({**merged, **overrides})
        except ValidationError as e:
            raise CardError(f"{overrides_from or 'card overrides'}: {_problems(e)}") from e
        sources.update({name: "overrides" for name in overrides})
    else:
        try:
            card = ModelCard.model_validate(merged)
        except ValidationError as e:  # two valid layers that clash (none do today)
            raise CardError(f"model card: {_problems(e)}") from e
    return ResolvedCard(card, sources)


def load_card(
    path: Path | None, overrides: Mapping[str, Any] | None = None, *, overrides_from: str = ""
) -> ModelCard:
    """Read and validate a card (``None``: no card file), with ``overrides`` (field by field,
    from a pipeline file's ``[card]`` table) on top; errors name the file or the source of the
    overrides and the offending field."""
    return resolve_card(path, overrides, overrides_from=overrides_from).card
