"""Every option of the worker in one pydantic-settings class.

Precedence, highest first: CLI flags (passed as init arguments) > environment variables
(``WORKER_*``) > a ``.env`` file in the working directory > the defaults below. Unknown
``WORKER_*`` entries in ``.env`` and unknown init arguments are errors (``extra="forbid"``):
a misspelt option must not be silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from worker.errors import SettingsError

__all__ = ["ENV_PREFIX", "Settings", "load_settings"]

ENV_PREFIX = "WORKER_"

Provider = Literal["auto", "cuda", "cpu"]
Task = Literal["segment", "classify"]


class _WorkerDotEnv(DotEnvSettingsSource):
    """``.env`` entries for us only: with ``extra="forbid"`` pydantic-settings would reject every
    other entry too, so a ``.env`` shared with other tools (``REDIS_URL=...``) would break us."""

    def __call__(self) -> dict[str, Any]:
        prefix = ENV_PREFIX.lower()
        return {
            k: v
            for k, v in super().__call__().items()
            if k in self.settings_cls.model_fields or k.lower().startswith(prefix)
        }


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        validate_default=True,
    )

    # What to run.
    input: Path | None = Field(None, description="video file to process")
    model: Path | None = Field(None, description="ONNX model; default: the built-in demo model")
    card: Path | None = Field(None, description="model card JSON; default: <model>.json beside it")
    task: Task | None = Field(None, description="override the task read from the card/graph")

    # Where results go.
    output: Path | None = Field(None, description="annotated video; default <input>.<task>.mp4")
    results: Path | None = Field(None, description="JSON lines; default <input>.<task>.jsonl")

    # How to run.
    provider: Provider = Field("auto", description="auto: CUDA when it really loads, else CPU")
    batch: int = Field(0, ge=0, le=256, description="frames per inference call; 0: per provider")
    threads: int = Field(0, ge=0, le=256, description="ONNX Runtime intra-op threads; 0: auto")
    queue_size: int = Field(8, ge=1, le=1024, description="frames held between two stages")
    max_frames: int | None = Field(None, ge=1, description="stop after this many frames")

    # How it looks.
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="mask opacity over the frame")
    top_k: int = Field(5, ge=1, le=100, description="classify: labels reported per frame")
    preset: str = Field("veryfast", description="libx264 preset")
    crf: int = Field(23, ge=0, le=51, description="libx264 constant rate factor")

    # How it talks.
    quiet: bool = Field(False, description="no progress bar")
    debug: bool = Field(False, description="print tracebacks for unexpected errors")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Spelled out rather than inherited so the precedence is visible here.
        return init_settings, env_settings, _WorkerDotEnv(settings_cls), file_secret_settings


def load_settings(**cli: Any) -> Settings:
    """Build settings from CLI values (``None`` means "not given") over env, .env and defaults."""
    given = {k: v for k, v in cli.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        if field in given:
            source = f"--{field.replace('_', '-')}"
        elif field.upper().startswith(ENV_PREFIX):  # an unknown .env entry, named in full
            source = f"{field.upper()} (.env)"
        else:
            source = f"{ENV_PREFIX}{field.upper()} (environment or .env)"
        raise SettingsError(f"setting {source}: {err['msg']}") from e
