"""The settings that shape how a video is processed, as ``run_file`` arguments, and the
model they name (``configured_model``, for ``worker run`` and ``worker monitor``).

``worker run`` and ``worker serve`` both build them here, so a queued job is processed exactly
like the same file run by hand; only what a job itself says (input, outputs, max_frames) and
what the command owns (progress bar, cancel, lease fencing) are passed separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict

from worker.errors import SettingsError
from worker.models import Model, demo_model_path, load_model, resolve_model
from worker.ops.rules import Rule, check_rule, parse_rule
from worker.ops.zones import Zone, ZoneSet
from worker.settings import Settings, WatchSpec, ZoneSpec
from worker.sinks import EventSink, open_sinks
from worker.stages.runner import Extras
from worker.stages.speed import Speed

__all__ = [
    "RunOptions",
    "configured_model",
    "extras_for",
    "overrides_source",
    "rules_for",
    "run_options",
    "zones_for",
]


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


def zones_for(specs: Sequence[ZoneSpec], camera: str | None = None) -> ZoneSet | None:
    """The zones of one input (``camera`` None: the zones that name no camera) or of one
    camera (its own and those that name none); None if there are none."""
    chosen = [z for z in specs if z.camera is None or z.camera == camera]
    names = [z.name for z in chosen]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise SettingsError(f"zones: the name '{dup}' is used twice")
    zones = [Zone(z.name, tuple(z.points), z.units) for z in chosen]
    return ZoneSet(zones) if zones else None


def rules_for(
    watch: Sequence[str | WatchSpec], model: Model, zones: ZoneSet | None, where: str = "--watch"
) -> list[Rule]:
    """The watch rules, checked against the model's labels and the zones defined."""
    labels = list(model.labels)
    names = [z.name for z in zones.zones] if zones else []
    rules = []
    for w in watch:
        try:
            if isinstance(w, str):
                rules.append(parse_rule(w, labels, names))
            else:
                rule = Rule(
                    label=w.label,
                    threshold=w.above,
                    frames=w.frames,
                    zone=w.zone,
                    start_s=w.start_s,
                    end_s=w.end_s,
                    min_s=w.min_s,
                    loiter_s=w.loiter_s,
                )
                rules.append(check_rule(rule, labels, names))
        except ValueError as e:
            raise SettingsError(f"{where} {e}") from e
    return rules


def _is_file_path(path: Path | None) -> bool:
    return path is not None and str(path) != "-" and not str(path).startswith("/dev/")


def extras_for(
    s: Settings, model: Model, *, results: Path, output: Path | None, name: str | None = None
) -> tuple[Extras, EventSink | None]:
    """What the settings ask of a file run beyond video and results, and the event sink they
    name (``--events``, ``--webhook``), opened: the caller closes it after the run.

    Extra files sit beside the results (``<stem>.events.jsonl``, ``<stem>.events/``,
    ``<stem>.masks/``, ``<stem>.png``), or beside the video when the results go to stdout."""
    zones = zones_for(s.zones)
    rules = rules_for(s.watch, model, zones)
    anchor = results if _is_file_path(results) else output if _is_file_path(output) else None
    stem = anchor.with_suffix("") if anchor is not None else None
    masks: Path | str | None = None
    if s.masks == "rle":
        masks = "rle"
    elif s.masks == "png":
        if stem is None:
            raise SettingsError("--masks png: no results or output file to put them beside")
        masks = stem.with_name(f"{stem.name}.masks")
    elif s.masks:
        masks = Path(s.masks)
    sink = None
    if rules and (s.events or s.webhook):
        webhook = s.webhook.get_secret_value() if s.webhook else None
        sink = open_sinks(s.events, webhook, s.redis_url.get_secret_value(), s.queue)
    extras = Extras(
        zones=zones,
        rules=rules,
        draw_zones=s.draw_zones,
        every=s.every,
        fps=s.fps,
        masks=masks,
        events_file=(
            stem.with_name(f"{stem.name}.events.jsonl") if rules and stem and not s.events else None
        ),
        emit=sink.write if sink is not None else None,
        snapshots=stem.with_name(f"{stem.name}.events") if rules and stem and s.snapshots else None,
        picture=stem.with_name(f"{stem.name}.png") if s.picture and stem else None,
    )
    return extras, sink
