"""Watched conditions: turn per-frame results into events.

A rule reads ``LABEL>THRESHOLD`` or ``LABEL>THRESHOLD@N``: for a segmenter, the label's
coverage (fraction of the frame) above the threshold; for a classifier, the label's score.
It must hold for ``N`` consecutive processed frames (default 1) before a ``start`` event, and
an ``end`` event follows on the first frame where it no longer holds. Plain functions over the
records the ``Annotator`` makes; no I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Rule", "Watcher", "parse_rule"]

_RULE = re.compile(
    r"^\s*(?P<label>[^<>@]+?)\s*>\s*(?P<thr>[0-9]*\.?[0-9]+)\s*(@\s*(?P<n>\d+))?\s*$"
)


@dataclass(frozen=True)
class Rule:
    label: str
    threshold: float
    frames: int = 1

    @property
    def text(self) -> str:
        return f"{self.label}>{self.threshold:g}@{self.frames}"


def parse_rule(text: str, labels: Sequence[str] | None = None) -> Rule:
    """``ValueError`` with what was expected when ``text`` is not a rule or names an unknown
    label (``labels``: the model's)."""
    m = _RULE.match(text)
    if m is None:
        raise ValueError(
            f"'{text}' is not a watch rule; expected LABEL>THRESHOLD[@FRAMES], e.g. person>0.2@5"
        )
    label, thr = m["label"], float(m["thr"])
    n = int(m["n"]) if m["n"] else 1
    if not 0.0 <= thr <= 1.0:
        raise ValueError(f"'{text}': threshold {thr:g} is outside 0..1")
    if n < 1:
        raise ValueError(f"'{text}': frames must be at least 1")
    if labels is not None and label not in labels:
        known = ", ".join(labels)
        raise ValueError(f"'{text}': the model has no label '{label}' (it has: {known})")
    return Rule(label, thr, n)


def value_of(rule: Rule, record: dict[str, Any]) -> float:
    """The rule's measure in one frame's record: coverage (segment) or score (classify)."""
    if "coverage" in record:
        return float(record["coverage"].get(rule.label, 0.0))
    for t in record.get("top", ()):
        if t["label"] == rule.label:
            return float(t["score"])
    return 0.0  # not in the top-k: below any threshold worth watching


class Watcher:
    """The rules of one camera, with the state each needs between frames."""

    def __init__(self, camera: str, rules: Sequence[Rule]) -> None:
        self.camera = camera
        self.rules = list(rules)
        self._streak = [0] * len(self.rules)
        self._active = [False] * len(self.rules)

    def update(self, record: dict[str, Any], wall: float) -> list[dict[str, Any]]:
        """Events this frame causes (usually none)."""
        events: list[dict[str, Any]] = []
        for i, rule in enumerate(self.rules):
            v = value_of(rule, record)
            if v > rule.threshold:
                self._streak[i] += 1
                if not self._active[i] and self._streak[i] >= rule.frames:
                    self._active[i] = True
                    events.append(self._event("start", rule, v, record, wall))
            else:
                self._streak[i] = 0
                if self._active[i]:
                    self._active[i] = False
                    events.append(self._event("end", rule, v, record, wall))
        return events

    def _event(
        self, kind: str, rule: Rule, value: float, record: dict[str, Any], wall: float
    ) -> dict[str, Any]:
        return {
            "type": "watch",
            "event": kind,
            "camera": self.camera,
            "rule": rule.text,
            "label": rule.label,
            "value": round(value, 6),
            "frame": record.get("frame"),
            "time": round(wall, 3),
        }
