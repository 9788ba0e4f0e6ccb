"""The model card: what the graph cannot say (labels, colours, preprocessing).

A card is ``card.json`` in the model's folder (``<model>.json`` beside a bare model), or a
path given with ``--card``. Every field is
optional; anything missing is inferred from the graph or defaulted (see ``worker.models.model``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.errors import CardError
from worker.messages import plain, tuple_length

__all__ = ["ModelCard", "load_card"]

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


def load_card(
    path: Path | None, overrides: Mapping[str, Any] | None = None, *, overrides_from: str = ""
) -> ModelCard:
    """Read and validate a card (``None``: no card file), with ``overrides`` (field by field,
    from a pipeline file's ``[card]`` table) on top; errors name the file or the source of the
    overrides and the offending field."""
    base: dict[str, Any] = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise CardError(f"model card '{path}': cannot read ({e.strerror or e})") from e
        except UnicodeDecodeError:
            raise CardError(f"model card '{path}': not UTF-8 text; expected JSON") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise CardError(f"model card '{path}': not valid JSON ({e})") from e
        if not isinstance(data, dict):
            raise CardError(
                f"model card '{path}': expected a JSON object, got {type(data).__name__}"
            )
        try:
            base = ModelCard.model_validate(data).model_dump(exclude_unset=True)
        except ValidationError as e:
            raise CardError(f"model card '{path}': {_problems(e)}") from e
    if not overrides:
        return ModelCard.model_validate(base)
    try:
        return ModelCard.model_validate({**base, **overrides})
    except ValidationError as e:
        raise CardError(f"{overrides_from or 'card overrides'}: {_problems(e)}") from e
