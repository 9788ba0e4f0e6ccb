"""Every option of the worker in one pydantic-settings class.

``Settings`` embeds every section of the run description (``worker.description``: look,
encode, analytics, speed, live), so each of those options is declared once, there, and its
flat name is the setting's; the rest (what to run, where results go, the queue, cameras, the
pages) is declared here. ``settings.run`` is the run description they make.

Precedence, highest first: CLI flags (passed as init arguments) > environment variables
(``WORKER_*``) > a pipeline file (``--pipeline``, see ``worker.pipeline_file``) > a ``.env``
file in the working directory > the defaults. Unknown keys in a pipeline file, unknown
``WORKER_*`` entries in ``.env`` and unknown init arguments are errors (``extra="forbid"``):
a misspelt option must not be silently ignored. Errors say in plain words which flag,
variable or file key is wrong and what was expected (``worker.messages``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import pydantic_settings
from pydantic import BaseModel, Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from worker.description import (
    CAMERA_NAME,
    Analytics,
    Encode,
    LineSpec,
    Live,
    Look,
    RunDescription,
    Speed,
    WatchSpec,
    ZoneSpec,
    check_partial,
)
from worker.errors import SettingsError
from worker.kinds import Task
from worker.messages import plain, tuple_length
from worker.pipeline_file import read_pipeline
from worker.urls import check_http_url

__all__ = ["ENV_PREFIX", "Settings", "load_settings"]

ENV_PREFIX = "WORKER_"

#: The pipeline file of the ``load_settings`` call being made and what it holds (a
#: classmethod builds the sources, so they cannot be arguments): the file is read once, by
#: ``load_settings``, and handed to its source here.
_PIPELINE: ContextVar[tuple[Path, dict[str, Any]] | None] = ContextVar("pipeline", default=None)
#: Fields whose values are never shown, not even in an error.
_SECRET_FIELDS = ("redis_url", "cameras", "webhook", "ui_password_hash")


#: List settings also written without JSON in the environment: one value, or values separated
#: by commas (``WORKER_WATCH='door:person>0.2'``, ``WORKER_URL_SCHEMES=file,http``).
_PLAIN_LISTS = ("watch", "url_schemes")
#: What the other structured settings look like as JSON, for the error that says so.
_JSON_EXAMPLES = {
    "zones": '[{"name": "door", "points": [[0.1, 0.2], [0.4, 0.2], [0.4, 0.9]]}]',
    "cameras": '{"door": "rtsp://host/stream"}',
    "camera_options": '{"door": {"every": 2}}',
    "card_overrides": '{"threshold": 0.4}',
}


class _PlainOrJson:
    """Structured settings in the environment or ``.env``: JSON; a list of rules or schemes
    also as plain text; anything else a plain error naming the variable and the JSON
    expected (not pydantic-settings' traceback)."""

    def decode_complex_value(self, field_name: str, field: Any, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)  # type: ignore[misc]
        except ValueError as e:
            if field_name in _PLAIN_LISTS and isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            example = _JSON_EXAMPLES.get(field_name, "")
            raise SettingsError(
                f"setting {ENV_PREFIX}{field_name.upper()}: expected JSON"
                + (f", e.g. {example}" if example else "")
                + f" ({e})"
            ) from None


class _WorkerEnv(_PlainOrJson, EnvSettingsSource):
    pass


class _WorkerDotEnv(_PlainOrJson, DotEnvSettingsSource):
    """``.env`` entries for us only: with ``extra="forbid"`` pydantic-settings would reject every
    other entry too, so a ``.env`` shared with other tools (``REDIS_URL=...``) would break us."""

    def __call__(self) -> dict[str, Any]:
        prefix = ENV_PREFIX.lower()
        return {
            k: v
            for k, v in super().__call__().items()
            if k in self.settings_cls.model_fields or k.lower().startswith(prefix)
        }


class Settings(BaseSettings, Look, Encode, Analytics, Speed, Live):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        validate_default=True,
        frozen=True,
    )

    # What to run.
    input: str | None = Field(
        None, description="video file to process (worker submit: or an http(s) URL)"
    )
    model: Path | None = Field(
        None, description="ONNX model: a repository name or a path; default: the demo model"
    )
    card: Path | None = Field(None, description="model card JSON; default: the model's card.json")
    card_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="card fields that override the model's card (a [card] table in a pipeline)",
    )
    task: Task | None = Field(None, description="override the task read from the card/graph")
    max_frames: int | None = Field(None, ge=1, description="stop after this many frames")

    # Where results go.
    output: Path | None = Field(None, description="annotated video; default <input>.<task>.mp4")
    results: Path | None = Field(None, description="JSON lines; default <input>.<task>.jsonl")
    events: str | None = Field(None, description="events to a .jsonl path or 'redis'")
    webhook: SecretStr | None = Field(
        None, description="events also POSTed as JSON to this http(s) URL; never printed"
    )

    # How it talks.
    quiet: bool = Field(False, description="no progress bar")
    debug: bool = Field(False, description="print tracebacks for unexpected errors")

    # The job queue (worker serve/submit/status/cancel/jobs/check).
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="redis:// or rediss://, may carry user:password; never printed or logged",
    )
    queue: str = Field("video", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Redis key prefix")
    input_root: Path = Field(Path("."), description="job inputs must resolve inside this folder")
    output_root: Path = Field(Path("."), description="job outputs must resolve inside this folder")
    model_root: Path = Field(
        Path("models"), description="the model repository; job models must resolve inside it"
    )
    url_schemes: tuple[Literal["file", "http", "https"], ...] = Field(
        ("file",), description="URL schemes a job input may use (JSON list); http(s) downloads"
    )
    download_max_mb: int = Field(2048, ge=1, description="largest http(s) input fetched")
    concurrency: int = Field(1, ge=1, le=64, description="jobs one serve process runs at once")
    burst: bool = Field(False, description="serve: drain the queue, then exit")
    lease_s: float = Field(45.0, gt=0, description="a job whose holder is silent this long moves")
    heartbeat_s: float = Field(1.0, gt=0, description="lease renewal, progress and cancel checks")
    grace_s: float = Field(25.0, ge=0, description="SIGTERM: time to finish before handing back")
    max_attempts: int = Field(5, ge=1, le=100, description="then the job is dead-lettered")
    retry_base_s: float = Field(5.0, gt=0, description="first retry delay; doubles per attempt")
    retry_max_s: float = Field(600.0, gt=0, description="longest retry delay")
    model_cache: int = Field(2, ge=1, le=16, description="models kept loaded per job slot")
    deadline_s: float | None = Field(None, gt=0, description="default job deadline after submit")
    idempotency_ttl_s: int = Field(7 * 86400, ge=1, description="how long a --key is remembered")
    result_ttl_s: int = Field(
        7 * 86400, ge=0, description="finished jobs (done, failed, cancelled) kept; 0: forever"
    )
    dead_ttl_s: int = Field(
        30 * 86400, ge=0, description="dead jobs and dead letters kept; 0: forever"
    )
    metrics_port: int = Field(9400, ge=0, le=65535, description="/metrics and /healthz; 0: off")
    metrics_host: str = Field(
        "", description="address /metrics and /healthz listen on; '': all interfaces"
    )
    heartbeat_dir: Path = Field(
        Path("/tmp"), description="serve writes video-worker-<pid>.heartbeat here, check reads"
    )
    heartbeat_file: Path | None = Field(
        None, description="one fixed heartbeat file instead (a single worker per host)"
    )

    # Live cameras (worker monitor); how each is processed is in the ``Live`` section.
    cameras: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='named cameras, JSON {"name": "rtsp://user:pw@host/path"}; never printed',
    )
    camera_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per camera, options of its own (look, encode, analytics): a "
        "[camera_options.NAME] table in a pipeline file",
    )
    duration: float | None = Field(None, gt=0, description="monitor: stop after this many s")
    ui: bool = Field(True, description="monitor: the camera and event pages on the metrics port")

    # Who may see the pages (worker monitor's and worker dashboard's). Needed whenever they
    # listen beyond loopback.
    ui_user: str = Field("admin", min_length=1, max_length=64, description="the pages' user")
    ui_password_hash: SecretStr | None = Field(
        None, description="the pages' password as 'worker password' prints it (a salted hash)"
    )
    ui_password_hash_file: Path | None = Field(
        None, description="a file holding that hash instead (a Docker or Kubernetes secret)"
    )
    ui_session_hours: float = Field(12.0, gt=0, le=24 * 30, description="a login lasts this long")

    # The queue's pages (worker dashboard): read-only, so local by default.
    dashboard_host: str = Field("127.0.0.1", description="address 'worker dashboard' listens on")
    dashboard_port: int = Field(9410, ge=1, le=65535, description="port of 'worker dashboard'")

    #: The pipeline file these settings were read with, if any (to name it in later errors).
    _pipeline: Path | None = PrivateAttr(None)

    @property
    def pipeline(self) -> Path | None:
        return self._pipeline

    @property
    def run(self) -> RunDescription:
        """How a video is processed, as these settings describe it."""
        return RunDescription.of(self)

    @field_validator("input", mode="before")
    @classmethod
    def _input_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, Path) else v

    @field_validator("webhook", "events", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        # "${EVENTS_WEBHOOK:-}" in a pipeline file, WORKER_WEBHOOK= in .env: none.
        return None if v == "" else v

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, v: SecretStr | None) -> SecretStr | None:
        # Malformed, its events would all be lost at run time: refused now.
        if v is not None:
            check_http_url(v.get_secret_value())
        return v

    @field_validator("cameras", "camera_options")
    @classmethod
    def _camera_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name in v:
            if not CAMERA_NAME.match(name):
                raise ValueError(
                    f"camera name '{name}': expected 1-64 letters, digits, '_', '-' or '.', "
                    "not starting with '.'"
                )
        return v

    @field_validator("camera_options")
    @classmethod
    def _camera_options(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {name: check_partial(opts, f"camera '{name}'") for name, opts in v.items()}

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
        pipeline = _PIPELINE.get()
        from_file = () if pipeline is None else (InitSettingsSource(settings_cls, pipeline[1]),)
        env = _WorkerEnv(settings_cls)
        dotenv = _WorkerDotEnv(settings_cls)
        return init_settings, env, *from_file, dotenv, file_secret_settings


@contextmanager
def _pipeline(path: Path | None, data: dict[str, Any]) -> Iterator[None]:
    token = _PIPELINE.set(None if path is None else (path, data))
    try:
        yield
    finally:
        _PIPELINE.reset(token)


#: Flags not named after their setting (one ``--zone`` per zone sets ``zones``).
_FLAGS = {"zones": "--zone"}


def _source(
    field: str, given: dict[str, Any], from_file: dict[str, Any], pipeline: Path | None
) -> str:
    """Who set ``field``, in precedence order: the flag, the environment, the file, .env."""
    if field in given:
        return f"setting {_FLAGS.get(field, '--' + field.replace('_', '-'))}"
    if f"{ENV_PREFIX}{field.upper()}" in os.environ:
        return f"setting {ENV_PREFIX}{field.upper()} (environment)"
    if field in from_file or (pipeline is not None and field == "card" and "card" in from_file):
        return f"pipeline '{pipeline}': key '{field}'"
    if field.upper().startswith(ENV_PREFIX):  # an unknown .env entry, named in full
        return f"setting {field.upper()} (.env)"
    return f"setting {ENV_PREFIX}{field.upper()} (.env)"


#: The tables a list setting may hold, for errors inside them: by the name pydantic gives a
#: union's member, and by the setting.
_TABLES: dict[str, type[BaseModel]] = {"WatchSpec": WatchSpec, "ZoneSpec": ZoneSpec}
_TABLE_OF: dict[str, type[BaseModel]] = {
    "watch": WatchSpec, "zones": ZoneSpec, "lines": LineSpec,
}  # fmt: skip


def _telling(errors: list[Any]) -> dict[str, Any]:
    """The error that says most: for a value that could be text or a table (a watch rule),
    the table's error (its field named) rather than "expected text"; the union's member
    names left out of where it is."""
    first = dict(errors[0])
    loc = tuple(first.get("loc") or ())
    if len(loc) > 2 and loc[2] in ("str", *_TABLES):
        inside = [
            dict(err)
            for err in errors
            if tuple(err.get("loc") or ())[:2] == loc[:2]
            and len(err.get("loc") or ()) > 2
            and err["loc"][2] in _TABLES
        ]
        # A misspelt key says more than the key it was meant to be ("abov", not "above").
        inside.sort(key=lambda err: err.get("type") != "extra_forbidden")
        first = inside[0] if inside else first
        where = tuple(first.get("loc") or ())
        first["loc"] = where[:2] + where[3:]
        first["known"] = _TABLES.get(str(where[2]))
    return first


def load_settings(pipeline: Path | None = None, **cli: Any) -> Settings:
    """Build settings from CLI values (``None`` means "not given") over the environment, the
    pipeline file (if any), .env and defaults."""
    given = {k: v for k, v in cli.items() if v is not None}
    from_file = read_pipeline(pipeline) if pipeline is not None else {}
    try:
        with _pipeline(pipeline, from_file):
            settings = Settings(**given)
        settings._pipeline = pipeline
        return settings
    except pydantic_settings.SettingsError as e:
        # A source could not read a value: ours say why in plain words; theirs, name it.
        if isinstance(e.__cause__, SettingsError):
            raise e.__cause__ from None
        raise SettingsError(str(e)) from None
    except UnicodeDecodeError as e:
        # The only text read here that is not checked already: .env.
        raise SettingsError(
            f"'.env': not UTF-8 text (byte 0x{e.object[e.start]:02x} at position {e.start}); "
            "expected KEY=value lines"
        ) from None
    except ValidationError as e:
        err: dict[str, Any] = _telling(e.errors())
        loc: tuple[Any, ...] = tuple(err.get("loc") or ())
        field = str(loc[0]) if loc else "?"
        if field in _SECRET_FIELDS:
            err.pop("input", None)
        lengths = {
            name: n
            for name, f in Settings.model_fields.items()
            if (n := tuple_length(f.annotation)) is not None
        }
        table = err.pop("known", None) or _TABLE_OF.get(field)
        known = table.model_fields if table is not None else Settings.model_fields
        where, what = plain(err, known=known, lengths=lengths)
        source = _source(field, given, from_file, pipeline)
        if err.get("type") == "extra_forbidden":
            # The key is the problem: name where it came from, then say it is unknown.
            # (A key inside a table, as a [[watch]] rule's: the setting and which value.)
            if len(loc) > 2 and isinstance(loc[1], int):
                source = f"{source} (value {loc[1] + 1})"
            elif source.startswith("pipeline"):
                source = f"pipeline '{pipeline}'"
            raise SettingsError(f"{source}: {what}") from e
        # Where in the value, unless the message names it already (a zone, a rule).
        detail = where[len(field) :].lstrip(".") if err.get("type") != "value_error" else ""
        raise SettingsError(f"{source}{f' ({detail})' if detail else ''}: {what}") from e
