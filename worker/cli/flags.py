"""Command-line flags that several subcommands share, declared once so their names, types and
help agree (each is also a setting: flags only override ``WORKER_*``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from worker.errors import SettingsError

__all__ = [
    "add_analytics_flags",
    "add_look_flags",
    "add_model_flags",
    "add_pipeline_flag",
    "analytics_cli",
]


def add_pipeline_flag(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--pipeline",
        type=Path,
        metavar="FILE.toml",
        help=f"a pipeline file describing {what}; flags and WORKER_* variables override it",
    )


def add_model_flags(p: argparse.ArgumentParser, *, batch_help: str) -> None:
    """Which model, on what, how: --model --card --task --provider --batch --threads."""
    p.add_argument(
        "--model",
        type=Path,
        help="model name in the repository (WORKER_MODEL_ROOT, default ./models) or .onnx path "
        "(default: the demo model)",
    )
    p.add_argument("--card", type=Path, help="model card JSON (default: the model's own card)")
    p.add_argument("--task", choices=["segment", "classify"])
    p.add_argument("--provider", choices=["auto", "cuda", "cpu"])
    p.add_argument("--batch", type=int, help=batch_help)
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (0: auto)")


def add_look_flags(p: argparse.ArgumentParser) -> None:
    """How the annotated video looks: --alpha --top-k --preset --crf."""
    p.add_argument("--alpha", type=float, help="mask opacity, 0..1")
    p.add_argument("--top-k", type=int, dest="top_k", help="classify: labels per frame")
    p.add_argument("--preset", help="libx264 preset (default ultrafast)")
    p.add_argument("--crf", type=int, help="libx264 quality, 0..51 (default 23)")


def add_analytics_flags(p: argparse.ArgumentParser) -> None:
    """Zones, watch rules, events and frame-rate control, for files and cameras alike."""
    p.add_argument(
        "--zone", action="append", dest="zone_flags", metavar="NAME=X,Y X,Y X,Y[ px]",
        help="a named polygon, points as fractions of width,height (or pixels with ' px'); "
        "repeat per zone",
    )  # fmt: skip
    p.add_argument(
        "--no-zones", action="store_false", dest="draw_zones", default=None,
        help="do not draw the zones in the video",
    )  # fmt: skip
    p.add_argument(
        "--watch", action="append", metavar="[ZONE:]LABEL>THRESHOLD[@N] [end=2s ...]",
        help="an event rule: start after N frames (and start=S s) above, end after end=S s "
        "below, drop shorter than min=S, loiter=S in the zone; repeat per rule",
    )  # fmt: skip
    p.add_argument("--events", help="events to a .jsonl file, or 'redis' (WORKER_REDIS_URL)")
    p.add_argument("--webhook", help="events also POSTed as JSON to this http(s) URL")
    p.add_argument(
        "--no-snapshots", action="store_false", dest="snapshots", default=None,
        help="no JPEG of an event's peak frame",
    )  # fmt: skip
    p.add_argument("--every", type=int, help="process every Nth frame only")
    p.add_argument("--fps", type=float, help="process at most F frames per second")


def _zone(text: str) -> dict[str, object]:
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
            f"--zone '{text}': expected NAME=X,Y X,Y X,Y (fractions 0..1, or pixels with a "
            "trailing ' px'), e.g. door=0.1,0.2 0.4,0.2 0.4,0.9"
        ) from None
    return {"name": name, "points": points, "units": units}


def analytics_cli(args: argparse.Namespace) -> dict[str, Any]:
    """The analytics flags as settings (``zones`` from ``--zone``), the rest left as given."""
    cli = dict(vars(args))
    zone_flags = cli.pop("zone_flags", None)
    if zone_flags:
        cli["zones"] = [_zone(z) for z in zone_flags]
    return cli
