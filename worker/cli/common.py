"""What several commands do with their settings: load the model they name."""

from __future__ import annotations

from worker.models import Model, demo_model_path, load_model, resolve_model
from worker.settings import Settings

__all__ = ["configured_model", "overrides_source"]


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
