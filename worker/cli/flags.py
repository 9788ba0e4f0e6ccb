"""The flag table: every command-line flag that sets a setting, in groups the subcommands
share, so a flag's name, type, choices and help agree wherever it appears.

A flag's type and help come from its setting's declaration (``worker.description`` or
``worker.settings``); the table says only which flag sets which setting, and how (a value, a
switch on or off, a repeatable value). Flags override ``WORKER_*`` variables and pipeline
files; a flag not given is ``None`` and leaves them be (``settings_args``).
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from worker.errors import SettingsError
from worker.settings import Settings

__all__ = [
    "ANALYTICS",
    "ENCODE",
    "EVENTS",
    "FILE_OUTPUTS",
    "LOOK",
    "MODEL",
    "Flag",
    "add_flags",
    "add_pipeline_flag",
    "settings_args",
]


def _named_points(text: str, flag: str, form: str, example: str) -> dict[str, object]:
    """``NAME=X,Y X,Y ...[ px]`` as {name, points, units}; a plain error naming ``flag``."""
    name, sep, rest = text.partition("=")
    tokens = rest.split()
    units = "fraction"
    if tokens and tokens[-1] == "px":
        units, tokens = "px", tokens[:-1]
    try:
        points = [tuple(float(v) for v in t.split(",")) for t in tokens]
        if not sep or not name or any(len(pt) != 2 for pt in points):
            raise ValueError
    except ValueError:
        raise SettingsError(
            f"{flag} '{text}': expected {form} (fractions 0..1, or pixels with a trailing "
            f"' px'), e.g. {example}"
        ) from None
    return {"name": name, "points": points, "units": units}


def _zone(text: str) -> dict[str, object]:
    """``--zone NAME=X,Y X,Y X,Y[ px]`` as a zone setting."""
    return _named_points(text, "--zone", "NAME=X,Y X,Y X,Y", "door=0.1,0.2 0.4,0.2 0.4,0.9")


def _line(text: str) -> dict[str, object]:
    """``--line NAME=X,Y X,Y[ px]`` as a line setting."""
    return _named_points(text, "--line", "NAME=X,Y X,Y", "gate=0,0.5 1,0.5")


@dataclass(frozen=True)
class Flag:
    """``--flag`` sets the setting ``setting``: with a value (``value``, read as ``type``), to
    true or false (``on``, ``off``), or once per repetition into a list (``append``, each
    value read by ``parse``)."""

    setting: str
    name: str | None = None  # default: --the-setting
    kind: Literal["value", "on", "off", "append"] = "value"
    help: str | None = None  # default: the setting's description
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None
    type: Callable[[str], Any] | None = None  # default: from the setting's annotation

    @property
    def flag(self) -> str:
        return self.name or "--" + self.setting.replace("_", "-")


MODEL = (
    Flag("model", help="model name in the repository (WORKER_MODEL_ROOT, default ./models) or "
         ".onnx path (default: the demo model)"),
    Flag("card", help="model card JSON (default: the model's own card)"),
    Flag("task"),
    Flag("provider"),
    Flag("batch"),
    Flag("threads"),
    Flag("lanes"),
)  # fmt: skip
LOOK = (
    Flag("alpha"),
    Flag("top_k"),
    Flag("line_width"),
    Flag("draw_zones", "--no-zones", "off", help="do not draw the zones in the video"),
)
ENCODE = (
    Flag("preset", help="libx264 preset (default ultrafast)"),
    Flag("crf"),
)
ANALYTICS = (
    Flag("zones", "--zone", "append", metavar="NAME=X,Y X,Y X,Y[ px]", parse=_zone,
         help="a named polygon, points as fractions of width,height (or pixels with ' px'); "
         "repeat per zone"),
    Flag("watch", kind="append", metavar="[ZONE:]LABEL>THRESHOLD[@N] [end=2s ...]",
         help="an event rule: start after N frames (and start=S s) above, end after end=S s "
         "below, drop shorter than min=S, loiter=S in the zone; ZONE:LABEL loiter=S: each "
         "tracked object that long in the zone; repeat per rule"),
    Flag("snapshots", "--no-snapshots", "off", help="no JPEG of an event's peak frame"),
    Flag("every", help="process every Nth frame only"),
    Flag("fps", help="process at most F frames per second"),
    Flag("lines", "--line", "append", metavar="NAME=X,Y X,Y[ px]", parse=_line,
         help="a named line objects are counted crossing (in: to its right walking from the "
         "first point to the second); repeat per line; tracks the objects"),
    Flag("track", kind="on"),
    Flag("anchor"),
    Flag("regions", kind="on"),
    Flag("min_area"),
    Flag("measure", kind="on"),
    Flag("px_per_unit"),
    Flag("unit"),
)  # fmt: skip
FILE_OUTPUTS = (
    Flag("masks", help="'png' (a folder beside the results), a folder, or 'rle' (in the JSON)"),
    Flag("picture", "--no-picture", "off", help="no summary PNG beside the results"),
    Flag("tracks", metavar="FILE"),
)
EVENTS = (
    Flag("events", help="events to a .jsonl file, or 'redis' (WORKER_REDIS_URL)"),
    Flag("webhook", help="events also POSTed as JSON to this http(s) URL"),
)


def _value_type(annotation: Any) -> tuple[Callable[[str], Any] | None, list[str] | None]:
    """(the type a flag's text becomes, its choices) for a setting's annotation."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is Literal:
        return None, [str(a) for a in typing.get_args(annotation)]
    if args and typing.get_origin(annotation) is not None and len(args) == 1:
        return _value_type(args[0])
    if annotation in (int, float, Path):
        return annotation, None
    return None, None


def add_flags(p: argparse.ArgumentParser, *groups: Iterable[Flag]) -> None:
    for group in groups:
        for f in group:
            field = Settings.model_fields[f.setting]
            help_ = f.help or field.description or ""
            if f.kind in ("on", "off"):
                action = "store_true" if f.kind == "on" else "store_false"
                p.add_argument(f.flag, action=action, dest=f.setting, default=None, help=help_)
                continue
            if f.kind == "append":
                p.add_argument(f.flag, action="append", dest=f.setting, metavar=f.metavar,
                               help=help_)  # fmt: skip
                continue
            kind, choices = _value_type(field.annotation)
            said = "default" in help_ or "0:" in help_
            if field.default not in (None, 0) and not callable(field.default) and not said:
                help_ += f" (default {field.default})"
            p.add_argument(f.flag, dest=f.setting, type=f.type or kind or str, choices=choices,
                           metavar=f.metavar, help=help_)  # fmt: skip


def add_pipeline_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--pipeline",
        type=Path,
        metavar="FILE.toml",
        help=f"a pipeline file describing {what}; flags and WORKER_* variables override it",
    )


def settings_args(args: argparse.Namespace, *groups: Iterable[Flag]) -> dict[str, Any]:
    """The flags of ``groups`` that were given, as settings (repeated values parsed)."""
    out: dict[str, Any] = {}
    for group in groups:
        for f in group:
            value = getattr(args, f.setting, None)
            if value is None:
                continue
            if f.parse is not None:
                value = [f.parse(v) for v in value]
            out[f.setting] = value
    return out
