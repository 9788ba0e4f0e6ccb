"""Inference stage: micro-batches of frames -> one model run -> one answer per frame."""

from __future__ import annotations

from typing import Any

import numpy as np

from models import Model
from pipelines.frames import Answer
from pipelines.postprocess import classify, segment
from pipelines.preprocess import InputPlan, preprocess

__all__ = ["Inferencer", "plan_for"]


def plan_for(model: Model) -> InputPlan:
    return InputPlan(
        hw=model.input_hw,
        layout=model.graph.layout,
        dtype=model.graph.input.dtype,
        rgb=model.color_order == "rgb",
        scale=model.scale,
        mean=model.mean,
        std=model.std,
        resize=model.resize,
        crop_from=model.crop_from,
    )


class Inferencer:
    """Runs a model on lists of frames, padding to the graph's batch size where it is fixed."""

    def __init__(self, model: Model, *, top_k: int = 5) -> None:
        self.model = model
        self.plan = plan_for(model)
        self.top_k = top_k

    def __call__(self, images: list[np.ndarray[Any, Any]]) -> list[Answer]:
        m = self.model
        n = len(images)
        fixed = m.batch
        answers: list[Answer] = []
        step = fixed or n
        for start in range(0, n, step):
            chunk = images[start : start + step]
            if fixed and len(chunk) < fixed:
                # A fixed-batch graph needs full batches: repeat the last frame, drop its answers.
                chunk = chunk + [chunk[-1]] * (fixed - len(chunk))
            out = m.engine.run(preprocess(chunk, self.plan))
            answers.extend(self._answers(out)[: n - start])
        return answers

    def _answers(self, out: np.ndarray[Any, Any]) -> list[Answer]:
        m = self.model
        if m.kind == "scores":
            return [Answer(top=t) for t in classify(out, m.activation, self.top_k)]
        maps, bits = segment(out, m.kind, m.activation, m.threshold)
        if bits is None:
            return [Answer(class_map=c) for c in maps]
        return [Answer(class_map=c, bits=b) for c, b in zip(maps, bits, strict=True)]
