"""What a file run writes besides its video and JSON lines, each optional:

- **masks** (``--masks``): per processed frame, the class map at the frame's size as a
  lossless indexed PNG ``<frame>.png`` (palette from the card; multi-label: the bits, see
  ``worker.ops.masks``) in a folder, or COCO run-length encoding per label in the frame's
  JSON line (``"rle"``);
- **events** (watch rules): JSON lines, with a JPEG snapshot of the peak frame each;
- **the summary picture**: coverage (or top-1 score) over time per label and per zone, with
  the event spans marked, as a PNG next to the results.

Folders and files appear whole when the run commits, like the video, or not at all.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from worker.models import Model
from worker.ops.masks import bits_png, indexed_png, rle_per_label
from worker.ops.postprocess import NO_CLASS
from worker.ops.rules import Rule
from worker.stages.atomic import AtomicDir, AtomicFile
from worker.stages.events import EventLog
from worker.stages.frames import Answer, Frame
from worker.stages.writer import Annotator

__all__ = ["Sidecars"]

Array = np.ndarray[Any, Any]
Emit = Callable[[dict[str, Any]], None]


class Sidecars:
    def __init__(
        self,
        model: Model,
        annotate: Annotator,
        *,
        input_name: str,
        masks: Path | str | None = None,
        rules: Sequence[Rule] = (),
        emit: Emit | None = None,
        events_file: Path | None = None,
        snapshots: Path | None = None,
        picture: Path | None = None,
        video: Path | None = None,
    ) -> None:
        self.model = model
        self.annotate = annotate
        self.rle = masks == "rle"
        self._opened: list[AtomicDir | AtomicFile] = []
        try:
            self.mask_dir = (
                self._dir(Path(masks), "masks", r"\d{6,}\.png")
                if masks is not None and not self.rle
                else None
            )
            self.events_file = (
                self._file(events_file, "events") if events_file is not None and rules else None
            )
            self.snap_dir = (
                self._dir(snapshots, "snapshots", r"[^/]+\.jpg") if snapshots and rules else None
            )
            self.picture = self._file(picture, "picture") if picture is not None else None
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
        self.series: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.zone_series: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.spans: list[tuple[float, float, str]] = []
        self.last_time = 0.0

    def _dir(self, final: Path, what: str, ours: str) -> AtomicDir:
        d = AtomicDir(final, what, ours)
        self._opened.append(d)
        return d

    def _file(self, final: Path, what: str) -> AtomicFile:
        f = AtomicFile(final, what)
        self._opened.append(f)
        return f

    def _emit(self, event: dict[str, Any]) -> None:
        if event.get("event") == "end":
            scope = f"{event['zone']}:" if event.get("zone") else ""
            self.spans.append((event["start"], event["end"], f"{scope}{event['label']}"))
        # Snapshots are named where they will be once committed, not in the temporary folder.
        if event.get("snapshot") and self.snap_dir is not None:
            event = {**event, "snapshot": str(self.snap_dir.final / Path(event["snapshot"]).name)}
        if self.events_file is not None:
            self._lines.append(json.dumps(event, separators=(",", ":")))
        if self._emit_to is not None:
            self._emit_to(event)

    # -- per processed frame ---------------------------------------------------------------------

    def frame(
        self, frame: Frame, answer: Answer, record: dict[str, Any], picture: Callable[[], Array]
    ) -> None:
        """After ``record`` was made, before it is written: masks, events, series."""
        if self.rle or self.mask_dir is not None:
            self._masks(frame, answer, record)
        if self.events:
            self.events.update(record, frame.time, picture)
        self.last_time = frame.time
        if self.picture is not None:
            self._collect(record, frame.time)

    def _masks(self, frame: Frame, answer: Answer, record: dict[str, Any]) -> None:
        if answer.class_map is None:
            return  # a classifier has no mask
        m = self.model
        where = self.annotate.mask_map(frame.image.shape[:2], answer.class_map.shape[:2])
        full_bits = (
            where.restore(answer.bits.astype(np.uint32), fill=0)
            if answer.bits is not None
            else None
        )
        full = where.restore(answer.class_map) if full_bits is None else None
        if self.rle:
            record["rle"] = rle_per_label(full, full_bits, m.labels)
        if self.mask_dir is not None:
            if full_bits is not None:
                data = bits_png(full_bits, len(m.labels))
            else:
                assert full is not None
                palette = np.asarray(m.colors[:256], dtype=np.uint8)
                data = indexed_png(full, palette, transparent=NO_CLASS)
            (self.mask_dir.temp / f"{frame.index:06d}.png").write_bytes(data)
            self.mask_dir.used = True

    def _collect(self, record: dict[str, Any], t: float) -> None:
        if "coverage" in record:
            for label in self.model.labels:
                self.series[label].append((t, float(record["coverage"].get(label, 0.0))))
        elif record.get("top"):
            best = record["top"][0]
            self.series[best["label"]].append((t, float(best["score"])))
        for zone, value in record.get("zones", {}).items():
            if "top" in value:
                if value["top"]:
                    best = value["top"][0]
                    self.zone_series[zone][best["label"]].append((t, float(best["score"])))
            else:
                for label in self.model.labels:
                    self.zone_series[zone][label].append((t, float(value.get(label, 0.0))))

    # -- the end ---------------------------------------------------------------------------------

    def finish(self) -> None:
        """The run's frames are done: close open events, write the files (not yet public)."""
        if self.events:
            self.events.finish(self.last_time)
        if self.events_file is not None:
            text = "".join(f"{line}\n" for line in self._lines)
            self.events_file.temp.write_text(text, encoding="utf-8")
        if self.snap_dir is not None and self.events.written:
            self.snap_dir.used = True
        if self.picture is not None:
            from worker.ops.plot import run_picture

            axis = "top-1 score" if self.model.task == "classify" else "coverage"
            rgb = self.model.colors
            colors = {
                label: (int(rgb[i][0]), int(rgb[i][1]), int(rgb[i][2]))
                for i, label in enumerate(self.model.labels)
            }
            picture = run_picture(
                self.series,
                self.zone_series,
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
        ):
            if item is None:
                continue
            committed = item.commit()
            out[name] = None if committed is None else str(committed)
        return out

    def discard(self) -> None:
        for item in self._opened:
            item.discard()

    def describe(self) -> dict[str, Any]:
        return {
            "started": self.events.started,
            "ended": self.events.ended,
            "dropped_short": self.events.dropped,
            "snapshots": len(self.events.written),
        }
