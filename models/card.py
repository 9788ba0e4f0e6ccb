"""The model card: what the graph cannot say (labels, colours, preprocessing).

A card is ``<model>.json`` beside the model, or a path given with ``--card``. Every field is
optional; anything missing is inferred from the graph or defaulted (see ``models.model``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.errors import CardError

__all__ = ["ModelCard", "card_path_for", "load_card"]

Channel = Annotated[float, Field(allow_inf_nan=False)]
Rgb = tuple[
    Annotated[int, Field(ge=0, le=255)],
    Annotated[int, Field(ge=0, le=255)],
    Annotated[int, Field(ge=0, le=255)],
]


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task: Literal["segment", "classify"] | None = None
    labels: list[str] | None = Field(None, min_length=1)
    colors: list[Rgb] | None = Field(None, min_length=1)
    color_order: Literal["rgb", "bgr"] = "rgb"
    scale: Channel = 1.0 / 255.0
    mean: tuple[Channel, Channel, Channel] = (0.485, 0.456, 0.406)
    std: tuple[Channel, Channel, Channel] = (0.229, 0.224, 0.225)
    resize: Literal["stretch", "letterbox", "center_crop"] = "stretch"
    input_size: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] | None = None
    crop_from: Annotated[int, Field(ge=1)] | None = None
    activation: Literal["auto", "softmax", "sigmoid", "none"] = "auto"
    multi_label: bool = False
    threshold: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.5
    background: Annotated[int, Field(ge=0)] | None = Field(0)

    @field_validator("std")
    @classmethod
    def _std_nonzero(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s == 0 for s in v):
            raise ValueError("std must not contain 0")
        return v


def card_path_for(model: Path) -> Path:
    """The card that travels with a model: ``models/x.onnx`` -> ``models/x.json``."""
    return model.with_suffix(".json")


def load_card(path: Path) -> ModelCard:
    """Read and validate a card; errors name the file and the offending field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CardError(f"model card '{path}': cannot read ({e.strerror or e})") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CardError(f"model card '{path}': not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise CardError(f"model card '{path}': expected a JSON object, got {type(data).__name__}")
    try:
        return ModelCard.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'card'}: {err['msg']}" for err in e.errors()
        )
        raise CardError(f"model card '{path}': {problems}") from e
