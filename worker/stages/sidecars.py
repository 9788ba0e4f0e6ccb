"""What a file run writes besides its video and JSON lines, each optional:

- **masks** (``--masks``): per processed frame, the class map at the frame's size as a
  lossless indexed PNG ``<frame>.png`` (palette from the card; multi-label: the bits, see
  ``worker.ops.masks``) in a folder, or COCO run-length encoding per label in the frame's
  JSON line (``"rle"``);
- **events** (watch rules): JSON lines, with a JPEG snapshot of the peak frame each;
- **the summary picture**: coverage (or top-1 score) over time per label and per zone, with
  the event spans marked, as a PNG next to the results.

Where they go is decided once (``SidecarPaths.plan``); folders and files appear whole when
the run commits, like the video, or not at all.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.description import Analytics
from worker.errors import SettingsError
from worker.models import Model
from worker.ops.masks import bits_png, indexed_png, instance_ids, instance_png, rle_per_label
from worker.ops.postprocess import NO_CLASS
from worker.stages.atomic import AtomicDir, AtomicFile
from worker.stages.events import EventLog
from worker.stages.frames import Answer, Item
from worker.stages.loop import Output, Picture, Record
from worker.stages.records import MaskMaps, Recorder

if TYPE_CHECKING:
    from worker.ops.rules import Rule

__all__ = ["SidecarPaths", "Sidecars"]

Emit = Callable[[dict[str, Any]], None]


def _is_file_path(path: Path | None) -> bool:
    return path is not None and str(path) != "-" and not str(path).startswith("/dev/")


@dataclass(frozen=True)
class SidecarPaths:
    """Where a file run's extra outputs go (None: not written)."""

    masks: Path | str | None = None  # a folder for PNGs, or "rle"
    events_file: Path | None = None  # events as JSON lines, published with the outputs
    snapshots: Path | None = None  # a folder for the events' JPEGs
    picture: Path | None = None  # the summary picture
    tracks: Path | None = None  # the tracks, MOT Challenge text

    @classmethod
    def plan(
        cls,
        analytics: Analytics,
        *,
        results: Path,
        output: Path | None,
        rules: bool,
        events_elsewhere: bool = False,
    ) -> SidecarPaths:
        """Beside the results (``<stem>.events.jsonl``, ``<stem>.events/``, ``<stem>.masks/``,
        ``<stem>.png``), or beside the video when the results go to stdout. ``rules``: there
        are watch rules; ``events_elsewhere``: their events go to a sink of their own
        (``--events``), not to a file beside the results."""
        anchor = results if _is_file_path(results) else output if _is_file_path(output) else None
        stem = anchor.with_suffix("") if anchor is not None else None

        def beside(suffix: str) -> Path | None:
            return stem.with_name(f"{stem.name}{suffix}") if stem is not None else None

        masks: Path | str | None = None
        if analytics.masks == "rle":
            masks = "rle"
        elif analytics.masks == "png":
            masks = beside(".masks")
            if masks is None:
                raise SettingsError("--masks png: no results or output file to put them beside")
        elif analytics.masks:
            masks = Path(analytics.masks)
        return cls(
            masks=masks,
            events_file=beside(".events.jsonl") if rules and not events_elsewhere else None,
            snapshots=beside(".events") if rules and analytics.snapshots else None,
            picture=beside(".png") if analytics.picture else None,
            tracks=Path(analytics.tracks) if analytics.tracks else None,
        )


class _Masks(Output):
    """Each processed frame's class map, at the frame's size: a PNG in a folder, or RLE in the
    frame's record. An instance segmenter's: a 16-bit PNG of instance ids (k: the frame's
    k-th object) in the folder; its RLE is per object, in the record already."""

    def __init__(
        self, model: Model, maps: MaskMaps, folder: AtomicDir | None, recorder: Recorder | None
    ) -> None:
        self.model, self.maps, self.folder = model, maps, folder
        self.recorder = recorder

    def processed(self, item: Item, answer: Answer, record: Record, picture: Picture) -> None:
        if answer.class_map is None:
            if answer.protos is not None and self.folder is not None and self.recorder:
                ids = instance_ids(self.recorder.last_masks, item.frame.image.shape[:2])
                (self.folder.temp / f"{item.frame.index:06d}.png").write_bytes(instance_png(ids))
                self.folder.used = True
            return  # a classifier has no mask; a detector's boxes are in the record
        m, frame = self.model, item.frame
        where = self.maps(frame.image.shape[:2], answer.class_map.shape[:2])
        bits = answer.bits
        full_bits = where.restore(bits.astype(np.uint32), fill=0) if bits is not None else None
        full = where.restore(answer.class_map) if full_bits is None else None
        if self.folder is None:
            record["rle"] = rle_per_label(full, full_bits, m.labels)
            return
        if full_bits is not None:
            data = bits_png(full_bits, len(m.labels))
        else:
            assert full is not None
            palette = np.asarray(m.colors[:256], dtype=np.uint8)
            data = indexed_png(full, palette, transparent=NO_CLASS)
        (self.folder.temp / f"{frame.index:06d}.png").write_bytes(data)
        self.folder.used = True


class _Series(Output):
    """Per label and per zone, the values over time the summary picture plots."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.series: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.zones: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(
            lambda: defaultdict(list)
        )

    def processed(self, item: Item, answer: Answer, record: Record, picture: Picture) -> None:
        t = item.frame.time
        if "coverage" in record:
            for label in self.labels:
                self.series[label].append((t, float(record["coverage"].get(label, 0.0))))
        elif "counts" in record:  # a detector: how many of each label
            for label in self.labels:
                self.series[label].append((t, float(record["counts"].get(label, 0))))
        elif record.get("top"):
            best = record["top"][0]
            self.series[best["label"]].append((t, float(best["score"])))
        for zone, value in record.get("zones", {}).items():
            if "top" in value:
                if value["top"]:
                    best = value["top"][0]
                    self.zones[zone][best["label"]].append((t, float(best["score"])))
            elif "counts" in value:
                for label in self.labels:
                    self.zones[zone][label].append((t, float(value["counts"].get(label, 0))))
            else:
                for label in self.labels:
                    self.zones[zone][label].append((t, float(value.get(label, 0.0))))


class _Tracks(Output):
    """Every tracked object as a line of MOT Challenge text (frame, id, x, y, w, h, score,
    -1, -1, -1; frames from 1), as TrackEval and py-motmetrics read it."""

    def __init__(self, target: AtomicFile) -> None:
        # Written as frames come (a long video's tracks need not fit in memory); closed by
        # ``Sidecars.finish`` or ``discard``.
        self.file = target.temp.open("w", encoding="utf-8")

    def processed(self, item: Item, answer: Answer, record: Record, picture: Picture) -> None:
        f = item.frame.index + 1
        for o in record.get("objects", ()):
            if o.get("id"):
                x1, y1, x2, y2 = o["box"]
                score = o.get("score", 1.0)
                self.file.write(
                    f"{f},{o['id']},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{score:.4f},"
                    "-1,-1,-1\n"
                )

    def close(self) -> None:
        self.file.close()


class Sidecars:
    """The extra outputs of one file run: ``outputs`` for its frame loop, ``events`` for the
    watch rules; ``finish`` after the last frame, then ``commit`` (or ``discard``)."""

    def __init__(
        self,
        model: Model,
        maps: MaskMaps,
        paths: SidecarPaths,
        *,
        input_name: str,
        rules: Sequence[Rule] = (),
        emit: Emit | None = None,
        video: Path | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        """``recorder``: where an instance segmenter's masks are read for mask pictures."""
        self.model = model
        self._opened: list[AtomicDir | AtomicFile] = []
        try:
            self.mask_dir = (
                self._dir(Path(paths.masks), "masks", r"\d{6,}\.png")
                if paths.masks is not None and paths.masks != "rle"
                else None
            )
            self.events_file = (
                self._file(paths.events_file, "events")
                if paths.events_file is not None and rules
                else None
            )
            self.snap_dir = (
                self._dir(paths.snapshots, "snapshots", r"[^/]+\.jpg")
                if paths.snapshots and rules
                else None
            )
            self.picture = self._file(paths.picture, "picture") if paths.picture else None
            self.tracks = self._file(paths.tracks, "tracks") if paths.tracks else None
        except BaseException:
            self.discard()
            raise
        self._lines: list[str] = []
        self._emit_to = emit
        self.events = EventLog(
            "input",
            input_name,
            rules,
            self._emit,
            snapshots=self.snap_dir.temp if self.snap_dir is not None else None,
            # A file's event is recorded where it happens in the output video, which keeps
            # the input's timestamps.
            locate=(lambda t: {"file": str(video), "offset_s": round(t, 3)}) if video else None,
        )
        self.spans: list[tuple[float, float, str]] = []
        self.series = _Series(model.labels) if self.picture is not None else None
        self.outputs: list[Output] = []
        self._tracks = _Tracks(self.tracks) if self.tracks is not None else None
        if self._tracks is not None:
            self.outputs.append(self._tracks)
        if paths.masks is not None:
            self.outputs.append(_Masks(model, maps, self.mask_dir, recorder))
        if self.series is not None:
            self.outputs.append(self.series)

    def _dir(self, final: Path, what: str, ours: str) -> AtomicDir:
        return AtomicDir(final, what, ours, into=self._opened)

    def _file(self, final: Path, what: str) -> AtomicFile:
        return AtomicFile(final, what, into=self._opened)

    def _emit(self, event: dict[str, Any]) -> None:
        if event.get("event") == "end":
            scope = f"{event['zone']}:" if event.get("zone") else ""
            self.spans.append((event["start"], event["end"], f"{scope}{event['label']}"))
        # Snapshots are named where they will be once committed, not in the temporary folder.
        if self.snap_dir is not None:
            final = self.snap_dir.final
            named = [(k, event.get(k)) for k in ("snapshot", "crop")]
            shots = {k: str(final / Path(v).name) for k, v in named if v}
            event = {**event, **shots}
        if self.events_file is not None:
            self._lines.append(json.dumps(event, separators=(",", ":")))
        if self._emit_to is not None:
            self._emit_to(event)

    def finish(self, last_time: float) -> None:
        """The run's frames are done (the last at ``last_time``): close open events, write the
        files (not yet public)."""
        if self._tracks is not None:
            self._tracks.close()
        if self.events:
            self.events.finish(last_time)
        if self.events_file is not None:
            text = "".join(f"{line}\n" for line in self._lines)
            self.events_file.temp.write_text(text, encoding="utf-8")
        if self.snap_dir is not None and self.events.written:
            self.snap_dir.used = True
        if self.picture is not None and self.series is not None:
            from worker.ops.plot import run_picture

            axis = {"classify": "top-1 score", "detect": "objects"}.get(self.model.task, "coverage")
            colors = {label: self.model.color(i) for i, label in enumerate(self.model.labels)}
            picture = run_picture(
                self.series.series,
                self.series.zones,
                self.spans,
                title=self.events.name,
                y_label=axis,
                colors=colors,
            )
            self.picture.temp.write_bytes(picture)

    def commit(self) -> dict[str, str | None]:
        """Publish every sidecar; where each went (None: nothing was written)."""
        out: dict[str, str | None] = {}
        for name, item in (
            ("masks", self.mask_dir),
            ("events", self.events_file),
            ("snapshots", self.snap_dir),
            ("picture", self.picture),
            ("tracks", self.tracks),
        ):
            if item is None:
                continue
            committed = item.commit()
            out[name] = None if committed is None else str(committed)
        return out

    def discard(self) -> None:
        tracks: _Tracks | None = getattr(self, "_tracks", None)  # (None if __init__ failed)
        if tracks is not None:
            tracks.close()
        for item in self._opened:
            item.discard()

    def describe(self) -> dict[str, Any]:
        return {
            "started": self.events.started,
            "ended": self.events.ended,
            "dropped_short": self.events.dropped,
            "snapshots": len(self.events.written),
        }
