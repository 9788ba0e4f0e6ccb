"""The job: its JSON schema, where its files may live, and how its status reads.

A job travels through Redis as JSON checked by ``JobSpec`` (never pickle, never the name of a
function): whoever can write to Redis can ask for work, but only for work this code knows.
Paths are stored relative to the configured roots and resolved again by the worker under its
own roots, so a submitter cannot name files outside them, and the worker, not the submitter,
decides where files land.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from worker.constants import Priority
from worker.description import check_partial
from worker.errors import JobError, SettingsError
from worker.kinds import Task
from worker.messages import redact
from worker.roots import MAX_PATH, resolve_inside
from worker.urls import check_http_url, redact_urls

__all__ = [
    "JobSpec",
    "check_options",
    "fingerprint",
    "new_job_id",
    "output_names",
    "outputs_for",
    "parse_spec",
    "resolve_input",
    "view",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")


def check_options(options: Mapping[str, Any], where: str = "options") -> dict[str, Any]:
    """A job's options, checked: a partial run description (how its video looks, is encoded
    and analysed: ``worker.description.PER_INPUT``) and, under ``card``, fields overriding its
    model's card. A job names no folders of its own: its masks are ``png`` (beside its
    results) or ``rle``. Returns them as JSON-ready data; ``ValueError`` says what is wrong."""
    rest = {k: v for k, v in options.items() if k != "card"}
    checked = check_partial(rest, where)
    if checked.get("masks") not in (None, "png", "rle"):
        raise ValueError(
            f"{where}: masks '{checked['masks']}': a job's masks go beside its results: "
            "expected 'png' or 'rle'"
        )
    if checked.get("tracks"):
        raise ValueError(
            f"{where}: tracks '{checked['tracks']}': a job names no files of its own; its "
            "results carry each object's id (track = true)"
        )
    card = options.get("card")
    if card is not None:
        if not isinstance(card, dict):
            raise ValueError(f"{where}: card: expected a table of card fields")
        checked["card"] = card
    return checked


class JobSpec(BaseModel):
    """What a job asks for. Paths are relative to the worker's roots (or an http(s) URL)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1  # schema version: a future change bumps it instead of guessing
    id: str = Field(pattern=r"^[0-9a-f]{32}$")
    input: str = Field(min_length=1, max_length=MAX_PATH)
    output: str | None = Field(None, min_length=1, max_length=MAX_PATH)
    model: str | None = Field(None, min_length=1, max_length=MAX_PATH)
    card: str | None = Field(None, min_length=1, max_length=MAX_PATH)
    task: Task | None = None
    max_frames: int | None = Field(None, ge=1)
    priority: Priority = "normal"
    deadline_s: float | None = Field(None, gt=0)
    key: str | None = Field(None, min_length=1, max_length=200)
    #: How its video is processed where it differs from the worker's own settings (flat
    #: names, as a pipeline file writes them; ``check_options``).
    options: dict[str, Any] | None = None

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        return check_options(v) if v else None

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


def new_job_id() -> str:
    return uuid.uuid4().hex


def parse_spec(raw: str) -> JobSpec:
    """A job from its JSON, or ``JobError`` saying which field is wrong."""
    try:
        return JobSpec.model_validate_json(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "job"
        raise JobError(f"job payload: {where}: {err['msg']}") from None


def _scheme(value: str) -> str | None:
    m = _SCHEME.match(value)
    # "C:" would be a drive letter on Windows; a scheme is longer than one letter.
    return m.group(1).lower() if m and len(m.group(1)) > 1 else None


def resolve_input(value: str, root: Path, schemes: tuple[str, ...]) -> Path | str:
    """A local input as a path inside ``root``, or an http(s) URL; anything else is refused."""
    scheme = _scheme(value)
    if scheme is None:
        return resolve_inside(value, root, "input")
    shown = redact(value)
    if scheme not in schemes:
        raise JobError(
            f"input '{shown}': URL scheme '{scheme}' is not allowed; "
            f"allowed: {', '.join(schemes)} (WORKER_URL_SCHEMES)"
        )
    if scheme == "file":
        parts = urlsplit(value)
        if parts.netloc not in ("", "localhost"):
            raise JobError(
                f"input '{shown}': file URLs name a local path, not host '{parts.netloc}'"
            )
        return resolve_inside(unquote(parts.path), root, "input")
    try:
        check_http_url(value, "input")
    except SettingsError as e:
        raise JobError(str(e)) from None
    return value


def stored_input(value: str, root: Path, schemes: tuple[str, ...]) -> str:
    """The input as a job stores it: a path relative to the root, or the URL as given."""
    resolved = resolve_input(value, root, schemes)
    if isinstance(resolved, str):
        return resolved
    return resolved.relative_to(root.resolve()).as_posix()


def outputs_for(spec: JobSpec, output_root: Path) -> tuple[Path, Path]:
    """Final video and results paths. Without ``output``: ``<job id>/<input stem>.mp4`` under the
    root, so a job run twice (a retry, a takeover) writes to the same two names, never to two."""
    if spec.output is not None:
        video = resolve_inside(spec.output, output_root, "output")
    else:
        stem = PurePosixPath(urlsplit(spec.input).path if _scheme(spec.input) else spec.input).stem
        video = resolve_inside(f"{spec.id}/{stem or 'video'}.mp4", output_root, "output")
    if video.suffix.lower() != ".mp4":
        raise JobError(f"output '{spec.output}': expected a file name ending in .mp4")
    return video, video.with_suffix(".jsonl")


def output_names(spec: JobSpec, output_root: Path) -> list[str]:
    """The job's outputs as the queue claims them: POSIX paths relative to the output root."""
    base = output_root.resolve()
    return [p.relative_to(base).as_posix() for p in outputs_for(spec, output_root)]


def fingerprint(spec: JobSpec) -> str:
    """What makes two submissions the same job: the spec without its id."""
    return spec.model_dump_json(exclude={"id"}, exclude_none=True)


def _number(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def view(h: dict[str, str]) -> dict[str, Any]:
    """A job hash from Redis as ``worker status`` prints it."""
    try:
        spec: dict[str, Any] = json.loads(h.get("spec", "{}"))
    except json.JSONDecodeError:
        spec = {}
    out: dict[str, Any] = {
        "id": h.get("id"),
        "state": h.get("state"),
        "priority": h.get("priority"),
        "attempts": int(h.get("attempts") or 0),
        "input": redact(spec["input"]) if isinstance(spec.get("input"), str) else None,
        "output": spec.get("output"),
        "model": spec.get("model"),
        "progress": json.loads(h["progress"]) if h.get("progress") else None,
        "result": json.loads(redact_urls(h["result"])) if h.get("result") else None,
        "error": redact_urls(h["error"]) if h.get("error") else None,
        "worker": h.get("worker") or None,
        "cancel_requested": h.get("cancel") == "1",
        "created": _number(h.get("created")),
        "started": _number(h.get("started")),
        "finished": _number(h.get("finished")),
        "deadline": _number(h.get("deadline")),
        "retry_at": _number(h.get("retry_at")),
        "key": h.get("key") or None,
    }
    return out
