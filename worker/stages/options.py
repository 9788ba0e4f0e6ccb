"""The settings that shape how a video is processed, as ``run_file`` arguments, and the
model they name (``configured_model``, for ``worker run`` and ``worker monitor``).

``worker run`` and ``worker serve`` both build them here, so a queued job is processed exactly
like the same file run by hand; only what a job itself says (input, outputs, max_frames) and
what the command owns (progress bar, cancel, lease fencing) are passed separately.
"""

from __future__ import annotations

from typing import TypedDict

from worker.models import Model, demo_model_path, load_model, resolve_model
from worker.settings import Settings
from worker.stages.speed import Speed

__all__ = ["RunOptions", "configured_model", "overrides_source", "run_options"]


class RunOptions(TypedDict):
    batch: int
    alpha: float
    top_k: int
    queue_size: int
    preset: str
    crf: int
    speed: Speed


def overrides_source(s: Settings) -> str:
    """Where the settings' card overrides came from, for errors."""
    if s.pipeline is not None:
        return f"pipeline '{s.pipeline}': [card]"
    return "setting WORKER_CARD_OVERRIDES"


def configured_model(s: Settings) -> Model:
    """The model the settings name (a repository name or a path; the demo model for the task
    if none), loaded with the settings' card overrides."""
    path = resolve_model(s.model, s.model_root) if s.model else demo_model_path(s.task or "segment")
    return load_model(
        path,
        card=s.card,
        overrides=s.card_overrides,
        overrides_from=overrides_source(s),
        task=s.task,
        provider=s.provider,
        threads=s.threads,
    )


def run_options(s: Settings) -> RunOptions:
    return RunOptions(
        batch=s.batch,
        alpha=s.alpha,
        top_k=s.top_k,
        queue_size=s.queue_size,
        preset=s.preset,
        crf=s.crf,
        speed=Speed.from_settings(s),
    )
