"""Watch rules: turn per-frame results into events people act on.

A rule watches one value per frame: a label's coverage (segmenter) or score (classifier),
of the whole frame or of one zone (``door:person>0.2``), against a threshold, with
Frigate-style hysteresis so a flickering mask does not make a flurry of events:

- *start* once the value has stayed above the threshold for ``frames`` consecutive processed
  frames and ``start_s`` seconds (and ``loiter_s`` seconds: "in the zone that long");
- *end* only once it has stayed at or below the threshold for ``end_s`` seconds (the
  "inertia"); coming back above before that continues the same event;
- an event shorter than ``min_s`` is dropped: its start is announced only once it has lasted
  that long (with its true start time).

Text form: ``[ZONE:]LABEL>THRESHOLD[@FRAMES][ key=value ...]`` with keys ``start``, ``end``,
``min``, ``loiter`` in seconds (``10``, ``2.5s``), e.g. ``door:person>0.2@3 end=2s min=1s``.
``LABEL>THRESHOLD@FRAMES`` alone means what it always did: start after FRAMES frames above,
end on the first frame below. ``>=`` reads better for counts: ``door:person>=3``.

A rule with a zone and ``loiter=`` but no threshold, ``door:person loiter=30s``, is *per
object*: one event per tracked object staying in the zone that long (``worker.ops.dwell``;
its ``end=`` is the time outside that ends a stay, 1 s by default). ``Tracker`` leaves such
rules alone.

Times are the caller's: video time for files, receive time for cameras. Plain data, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

__all__ = ["Rule", "Tracker", "Transition", "parse_rule", "value_of"]

_CORE = re.compile(
    r"^\s*(?:(?P<zone>[A-Za-z0-9_.-]+)\s*:\s*)?(?P<label>[^<>@:=]+?)\s*(?:(?P<op>>=?)\s*"
    r"(?P<thr>[0-9]*\.?[0-9]+)\s*(?:@\s*(?P<n>\d+))?)?\s*$"
)
_OPTION = re.compile(r"^(?P<key>start|end|min|loiter)=(?P<value>[0-9]*\.?[0-9]+)s?$")
_KEYS = {"start": "start_s", "end": "end_s", "min": "min_s", "loiter": "loiter_s"}


@dataclass(frozen=True)
class Rule:
    label: str
    threshold: float
    frames: int = 1
    zone: str | None = None
    start_s: float = 0.0
    end_s: float = 0.0
    min_s: float = 0.0
    loiter_s: float = 0.0
    inclusive: bool = False  # ">=": the value at the threshold counts as above
    each: bool = False  # per object: each tracked object loitering in the zone (no threshold)

    @property
    def text(self) -> str:
        opts = [f"{k}={getattr(self, attr):g}s" for k, attr in _KEYS.items() if getattr(self, attr)]
        where = f"{self.zone + ':' if self.zone else ''}{self.label}"
        if self.each:
            return " ".join([where, *opts])
        core = f"{where}{'>=' if self.inclusive else '>'}{self.threshold:g}"
        return " ".join([f"{core}@{self.frames}", *opts])

    def above(self, value: float) -> bool:
        return value >= self.threshold if self.inclusive else value > self.threshold


def parse_rule(
    text: str,
    labels: Sequence[str] | None = None,
    zones: Sequence[str] | None = None,
    *,
    counts: bool = False,
) -> Rule:
    """``ValueError`` saying what was expected when ``text`` is not a rule, or names a label
    the model lacks (``labels``) or a zone that is not defined (``zones``). ``counts``: the
    threshold is a number of objects (a detector), not a fraction."""
    tokens = text.split()
    options: list[str] = []
    # Trailing key=value options (labels may hold spaces; ">=" is no option).
    while tokens and re.match(r"^[A-Za-z_]+=", tokens[-1]):
        options.insert(0, tokens.pop())
    core = " ".join(tokens)
    m = _CORE.match(core)
    if m is None or (m["thr"] is None and not any(o.startswith("loiter=") for o in options)):
        raise ValueError(
            f"'{text}' is not a watch rule; expected [ZONE:]LABEL>THRESHOLD[@FRAMES] "
            "[start=S] [end=S] [min=S] [loiter=S], e.g. door:person>0.2@3 end=2s, or "
            "ZONE:LABEL loiter=S for each object, e.g. door:person loiter=30s"
        )
    fields: dict[str, Any] = {}
    for opt in options:
        o = _OPTION.match(opt)
        if o is None:
            raise ValueError(
                f"'{text}': option '{opt}' not understood; expected start=, end=, min= or "
                "loiter= with seconds, e.g. end=2s"
            )
        fields[_KEYS[o["key"]]] = float(o["value"])
    return check_rule(
        Rule(
            label=m["label"],
            threshold=float(m["thr"]) if m["thr"] else 0.0,
            frames=int(m["n"]) if m["n"] else 1,
            zone=m["zone"],
            inclusive=m["op"] == ">=",
            each=m["thr"] is None,
            **fields,
        ),
        labels,
        zones,
        text,
        counts=counts,
    )


def check_rule(
    rule: Rule,
    labels: Sequence[str] | None = None,
    zones: Sequence[str] | None = None,
    text: str | None = None,
    *,
    counts: bool = False,
) -> Rule:
    said = text or rule.text
    if rule.each and (rule.zone is None or not rule.loiter_s):
        raise ValueError(
            f"'{said}': a rule without a threshold is per object and needs a zone and "
            "loiter=S, e.g. door:person loiter=30s"
        )
    if rule.each and (rule.start_s or rule.min_s or rule.frames != 1):
        raise ValueError(f"'{said}': a per-object rule takes only loiter= and end=")
    if counts and not 0.0 <= rule.threshold < 1e6:
        raise ValueError(f"'{said}': threshold {rule.threshold:g}: expected a count, 0 or more")
    if not counts and not 0.0 <= rule.threshold <= 1.0:
        raise ValueError(f"'{said}': threshold {rule.threshold:g} is outside 0..1")
    if rule.frames < 1:
        raise ValueError(f"'{said}': frames must be at least 1")
    if labels is not None and rule.label not in labels:
        known = ", ".join(labels)
        raise ValueError(f"'{said}': the model has no label '{rule.label}' (it has: {known})")
    if zones is not None and rule.zone is not None and rule.zone not in zones:
        known = ", ".join(zones) or "none"
        raise ValueError(f"'{said}': no zone '{rule.zone}' is defined (zones: {known})")
    return rule


def value_of(rule: Rule, record: dict[str, Any]) -> float:
    """The rule's measure in one frame's record: coverage (segment), score (classify) or
    count (detect), of the frame or of the rule's zone."""
    scope = record
    if rule.zone is not None:
        scope = record.get("zones", {}).get(rule.zone, {})
        if "coverage" not in scope and "top" not in scope and "counts" not in scope:
            scope = {"coverage": scope}  # segmenters' zones hold label -> coverage directly
    if "coverage" in scope:  # before counts: a segmenter with --regions has both
        return float(scope["coverage"].get(rule.label, 0.0))
    if "counts" in scope:  # a detector: how many of the label (in the zone)
        return float(scope["counts"].get(rule.label, 0))
    for t in scope.get("top", ()):
        if t["label"] == rule.label:
            return float(t["score"])
    return 0.0  # not in the top-k: below any threshold worth watching


@dataclass(frozen=True)
class Transition:
    """What a frame changed for one rule: an event started or ended, or its peak rose (the
    caller keeps that frame's picture for the snapshot)."""

    kind: Literal["start", "end", "peak"]
    rule: Rule
    index: int  # the rule's position in the tracker
    start: float
    end: float | None
    peak: float
    peak_time: float
    peak_frame: int | None
    value: float
    frame: int | None


@dataclass
class _State:
    above_since: float | None = None  # first time of the current run above the threshold
    streak: int = 0  # consecutive frames above
    active: bool = False  # an event is open (announced or not yet)
    announced: bool = False  # its start was emitted (min_s reached)
    start: float = 0.0
    below_since: float | None = None
    peak: float = 0.0
    peak_time: float = 0.0
    peak_frame: int | None = None
    dropped: int = 0  # events that ended before min_s


@dataclass
class Tracker:
    """The rules of one input or camera, with the state each keeps between frames."""

    rules: Sequence[Rule]
    states: list[_State] = field(init=False)

    def __post_init__(self) -> None:
        self.states = [_State() for _ in self.rules]

    @property
    def dropped(self) -> int:
        """Events shorter than their rule's ``min_s``: never announced."""
        return sum(s.dropped for s in self.states)

    def update(self, record: dict[str, Any], t: float) -> list[Transition]:
        out: list[Transition] = []
        frame = record.get("frame")
        for i, (rule, s) in enumerate(zip(self.rules, self.states, strict=True)):
            if rule.each:
                continue  # per object: worker.ops.dwell.Loiter
            v = value_of(rule, record)
            if rule.above(v):
                s.below_since = None
                if s.above_since is None:
                    s.above_since, s.streak = t, 0
                s.streak += 1
                if not s.active:
                    held = t - s.above_since
                    if s.streak >= rule.frames and held >= max(rule.start_s, rule.loiter_s):
                        s.active, s.announced = True, False
                        s.start, s.peak, s.peak_time, s.peak_frame = s.above_since, v, t, frame
                        out.append(self._t("peak", rule, i, s, v, frame))
                elif v > s.peak:
                    s.peak, s.peak_time, s.peak_frame = v, t, frame
                    out.append(self._t("peak", rule, i, s, v, frame))
                if s.active and not s.announced and t - s.start >= rule.min_s:
                    s.announced = True
                    out.append(self._t("start", rule, i, s, v, frame))
            else:
                s.above_since, s.streak = None, 0
                if s.active:
                    if s.below_since is None:
                        s.below_since = t
                    if t - s.below_since >= rule.end_s:
                        out += self._close(rule, i, s, s.below_since, v, frame)
        return out

    def finish(self, t: float) -> list[Transition]:
        """The input ended: every open event ends at ``t`` (or when it went below)."""
        out: list[Transition] = []
        for i, (rule, s) in enumerate(zip(self.rules, self.states, strict=True)):
            if s.active:
                end = s.below_since if s.below_since is not None else t
                if not s.announced and end - s.start >= rule.min_s:
                    s.announced = True
                    out.append(self._t("start", rule, i, s, s.peak, s.peak_frame))
                out += self._close(rule, i, s, end, 0.0, None)
        return out

    def _close(
        self, rule: Rule, i: int, s: _State, end: float, v: float, frame: int | None
    ) -> list[Transition]:
        out = []
        if s.announced:
            out.append(replace(self._t("end", rule, i, s, v, frame), end=end))
        else:
            s.dropped += 1
        s.active, s.announced, s.below_since = False, False, None
        return out

    @staticmethod
    def _t(
        kind: Literal["start", "end", "peak"],
        rule: Rule,
        i: int,
        s: _State,
        v: float,
        frame: int | None,
    ) -> Transition:
        return Transition(
            kind=kind,
            rule=rule,
            index=i,
            start=s.start,
            end=None,
            peak=s.peak,
            peak_time=s.peak_time,
            peak_frame=s.peak_frame,
            value=v,
            frame=frame,
        )
