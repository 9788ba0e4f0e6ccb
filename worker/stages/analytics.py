"""The analytics section made real for one model: zones as polygons, watch rules checked
against the model's labels and the zones defined."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

from worker.description import Analytics, LineSpec, WatchSpec, ZoneSpec
from worker.errors import SettingsError
from worker.models import Model
from worker.ops.zones import Zone, ZoneSet

if TYPE_CHECKING:
    from worker.ops.rules import Rule

# worker.ops.rules is imported where there are rules to read: 3 ms of every start.

__all__ = ["check_objects", "follows_objects", "lines_for", "rules_for", "zones_for"]


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


def lines_for(specs: Sequence[LineSpec], camera: str | None = None) -> list[LineSpec]:
    """The lines of one input or camera, as ``zones_for`` chooses zones."""
    chosen = [line for line in specs if line.camera is None or line.camera == camera]
    names = [line.name for line in chosen]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise SettingsError(f"lines: the name '{dup}' is used twice")
    return chosen


def _per_object(watch: Sequence[str | WatchSpec]) -> bool:
    """Whether a watch rule is per object (``door:person loiter=30s``); a rule that does not
    parse is not (``rules_for`` says what is wrong with it)."""
    for w in watch:
        if isinstance(w, WatchSpec):
            if w.above is None:
                return True
            continue
        from worker.ops.rules import parse_rule

        try:
            if parse_rule(w).each:
                return True
        except ValueError:
            continue
    return False


def follows_objects(analytics: Analytics) -> bool:
    """Whether objects get track ids: asked for (``--track``, ``--tracks``), or needed by
    lines to count or per-object rules."""
    a = analytics
    return a.track or bool(a.tracks) or bool(a.lines) or _per_object(a.watch)


def check_objects(analytics: Analytics, model: Model) -> None:
    """``SettingsError`` if the run asks to track or count objects it will not have: a
    detector's boxes, or a segmenter's regions (``--regions``)."""
    has = model.task == "detect" or (analytics.regions and model.task == "segment")
    asked = [
        flag for flag, on in (("--line", analytics.lines), ("--track", analytics.track),
                              ("--tracks", analytics.tracks),
                              ("--watch ZONE:LABEL loiter=S", _per_object(analytics.watch)))
        if on
    ]  # fmt: skip
    if asked and not has:
        what = "a classifier" if model.task == "classify" else "a segmenter without --regions"
        raise SettingsError(
            f"{asked[0]}: model '{model.path.name}' is {what}: it finds no objects to follow; "
            "use a detector, or --regions with a segmenter"
        )


def rules_for(
    watch: Sequence[str | WatchSpec],
    model: Model,
    zone_names: Collection[str],
    where: str = "--watch",
) -> list[Rule]:
    """The watch rules, checked against the model's labels and the zones defined."""
    if not watch:
        return []
    from worker.ops.rules import Rule, check_rule, parse_rule

    labels = list(model.labels)
    names = list(zone_names)
    counts = model.task == "detect"  # a detector's rules count objects
    rules = []
    for w in watch:
        try:
            if isinstance(w, str):
                rules.append(parse_rule(w, labels, names, counts=counts))
            else:
                rule = Rule(
                    label=w.label,
                    threshold=w.above or 0.0,
                    each=w.above is None,
                    frames=w.frames,
                    zone=w.zone,
                    start_s=w.start_s,
                    end_s=w.end_s,
                    min_s=w.min_s,
                    loiter_s=w.loiter_s,
                )
                rules.append(check_rule(rule, labels, names, counts=counts))
        except ValueError as e:
            raise SettingsError(f"{where} {e}") from e
    return rules
