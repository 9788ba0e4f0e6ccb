"""Summary pictures of a run: values (0..1) over time, drawn with OpenCV alone, as PNG bytes.

A picture is one or more panels stacked on one time axis (the whole frame's labels, then one
panel per zone), so a moment lines up across panels. Each panel draws its series as lines
(coverage or top-1 score against the frame's time in seconds), its event spans as translucent
bands with their label, a light grid, ticks and a legend. A label keeps its colour in every
panel: colours are given out in order of first appearance from a fixed palette of 20 distinct
colours (Tableau 10 first), unless ``colors`` names one.

Long series are decimated to the pixel columns before drawing, keeping per column the first,
last, lowest and highest point (M4): what is drawn is what all the points would draw, spikes
included, and drawing costs what the picture's width allows, not what the run's length is. A
line breaks where its series has no point for more than 2.5 times the frames' usual interval
(the median step between all the picture's timestamps): a label that was top-1 only now and
then is drawn where it was, not across the frames between. Text is OpenCV's Hershey font,
which has ASCII only: other characters show as ``?``; names too long for their place end in
``...``, span labels too long for their band are left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = ["Panel", "draw_panels", "panels_png", "run_picture", "summary_png"]

Array = np.ndarray[Any, Any]
Point = tuple[float, float]
Span = tuple[float, float, str]
RGB = tuple[int, int, int]

# Tableau 10 without its grey (grid and axes are grey), then 11 colours picked greedily to be
# as far as possible (CIELAB) from those before them and from white: any two of these 20 are
# at least 27 apart (Delta E 1976). A 21st series starts the list again.
_PALETTE: tuple[RGB, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (0, 0, 255),
    (255, 34, 255), (34, 68, 0), (68, 17, 170), (255, 0, 119), (136, 102, 0),
    (119, 187, 136), (119, 0, 85), (0, 119, 255), (255, 136, 136), (187, 102, 255),
)  # fmt: skip
_SPAN_TINTS: tuple[RGB, ...] = ((255, 179, 0), (142, 68, 173), (0, 150, 136), (233, 30, 99))
_SPAN_ALPHA = 0.2
_BG, _GRID, _AXIS, _TEXT, _MUTED = (255,) * 3, (232,) * 3, (110,) * 3, (40,) * 3, (120,) * 3
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SMALL, _MEDIUM, _LARGE = 0.42, 0.55, 0.7
_LEFT, _RIGHT = 48, 28  # room for the y tick labels; the last x tick label's overhang
_TITLE_H, _HEAD_H, _TICKS_H, _ROW_H, _GAP = 34, 24, 20, 20, 10
_SWATCH = 18


@dataclass(frozen=True)
class Panel:
    """One chart: ``series`` name -> (time s, value 0..1) points, ``spans`` (start s, end s,
    label). Values outside 0..1 are drawn at the edge; non-finite points are left out."""

    title: str
    series: Mapping[str, Sequence[Point]]
    spans: Sequence[Span] = ()
    y_label: str = ""


def summary_png(
    series: Mapping[str, Sequence[Point]],
    *,
    title: str,
    spans: Sequence[Span] = (),
    y_label: str = "",
    width: int = 1200,
    plot_height: int = 320,
    colors: Mapping[str, RGB] | None = None,
) -> bytes:
    """One chart as PNG bytes: :func:`panels_png` with a single panel titled ``title``."""
    panel = Panel(title, series, spans, y_label)
    return panels_png([panel], width=width, plot_height=plot_height, colors=colors)


def panels_png(
    panels: Sequence[Panel],
    *,
    title: str = "",
    width: int = 1200,
    plot_height: int = 240,
    colors: Mapping[str, RGB] | None = None,
) -> bytes:
    """Panels stacked on one time axis as PNG bytes (see :func:`draw_panels`)."""
    img = draw_panels(panels, title=title, width=width, plot_height=plot_height, colors=colors)
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - cv2 encodes every 8-bit BGR image
        raise ValueError("cv2 could not encode the summary picture")
    return bytes(buf.data)


def run_picture(
    series: Mapping[str, Sequence[Point]],
    zone_series: Mapping[str, Mapping[str, Sequence[Point]]],
    spans: Sequence[Span],
    *,
    title: str,
    y_label: str = "",
    width: int = 1200,
    colors: Mapping[str, RGB] | None = None,
) -> bytes:
    """A file run's picture: a panel for the whole frame, then one per zone, as PNG bytes.

    ``spans`` labelled ``"<zone>:<label>"`` go to that zone's panel (without the prefix), the
    others to the whole frame's. Series that never rise above 0 (labels never seen) are left
    out, so a 21-class model's legend names what was there.
    """

    def seen(s: Mapping[str, Sequence[Point]]) -> dict[str, Sequence[Point]]:
        return {k: v for k, v in s.items() if any(p[1] > 0 for p in v)}

    # The longest zone name first: a zone "a" must not take the spans of a zone "a:b".
    zones = sorted(zone_series, key=len, reverse=True)
    own: dict[str | None, list[Span]] = {}
    for start, end, label in spans:
        zone = next((z for z in zones if label.startswith(f"{z}:")), None)
        text = label[len(zone) + 1 :] if zone is not None else label
        own.setdefault(zone, []).append((start, end, text))
    panels = [Panel("whole frame", seen(series), own.get(None, []), y_label)]
    panels += [Panel(f"zone {z}", seen(s), own.get(z, []), y_label) for z, s in zone_series.items()]
    return panels_png(panels, title=title, width=width, colors=colors)


def draw_panels(
    panels: Sequence[Panel],
    *,
    title: str = "",
    width: int = 1200,
    plot_height: int = 240,
    colors: Mapping[str, RGB] | None = None,
) -> Array:
    """Panels stacked on one time axis -> (H, width, 3) uint8 BGR image.

    ``plot_height`` is each panel's chart area in pixels; the image is as tall as the panels
    with their titles, ticks and legends need. ``colors``: label -> RGB, e.g. the model
    card's class colours, over the default palette.
    """
    if not panels:
        raise ValueError("draw_panels needs at least one panel")
    if width < 240 or plot_height < 60:
        raise ValueError(f"picture too small: width {width} (>= 240), plot {plot_height} (>= 60)")
    pw = width - _LEFT - _RIGHT
    colour = _colours((name for p in panels for name in p.series), colors or {})
    data = [{name: _clean(points) for name, points in p.series.items()} for p in panels]
    axis = _time_axis(data, [p.spans for p in panels])
    legends = [_legend_rows(list(p.series), pw) for p in panels]
    heights = [_HEAD_H + plot_height + _TICKS_H + _ROW_H * len(rows) + _GAP for rows in legends]
    img = np.full((_TITLE_H * bool(title) + sum(heights), width, 3), _BG, np.uint8)
    if title:
        _text(img, _fit(title, width - 2 * _LEFT, _LARGE), (_LEFT, 24), _LARGE, _TEXT, 2)
    y = _TITLE_H * bool(title)
    caption = "time (m:ss)" if axis.t1 - axis.t0 >= 120 else "time (s)"
    for i, (panel, series, rows, h) in enumerate(zip(panels, data, legends, heights, strict=True)):
        box = (_LEFT, y + _HEAD_H, pw, plot_height)
        last = i == len(panels) - 1
        _draw_panel(img, panel, series, box, axis, colour, rows, caption if last else "")
        y += h
    return img


# ------------------------------------------------------------------------------- one panel


def _draw_panel(
    img: Array,
    panel: Panel,
    series: Mapping[str, Array],
    box: tuple[int, int, int, int],
    axis: _Axis,
    colour: Mapping[str, RGB],
    legend: list[list[tuple[str, str, int]]],
    caption: str,
) -> None:
    x0, y0, pw, ph = box
    t0, t1 = axis.t0, axis.t1

    def xs(t: Array) -> Array:
        out: Array = x0 + (t - t0) / (t1 - t0) * (pw - 1)
        return out

    def ys(v: Array) -> Array:
        out: Array = y0 + (1.0 - np.clip(v, 0.0, 1.0)) * (ph - 1)
        return out

    head = y0 - _HEAD_H + 17
    label_w = cv2.getTextSize(panel.y_label, _FONT, _SMALL, 1)[0][0] if panel.y_label else 0
    _text(img, _fit(panel.title, pw - label_w - 20, _MEDIUM), (x0, head), _MEDIUM, _TEXT)
    if panel.y_label:
        _text(img, _fit(panel.y_label, pw // 2, _SMALL), (x0 + pw - label_w, head), _SMALL, _MUTED)

    # Bands first, so grid and lines stay visible through them.
    bands = _draw_bands(img, panel, xs, box)
    _draw_grid(img, box, axis, xs, ys, caption)

    # The frame before the lines: a value of 0, the most common coverage, stays visible.
    cv2.rectangle(img, (x0, y0), (x0 + pw - 1, y0 + ph - 1), _AXIS, 1)
    for name, tv in series.items():
        _draw_series(img, tv, xs, ys, colour[name][::-1], axis.gap)
    if not panel.series and not panel.spans:
        _text(img, "no data", (x0 + pw // 2 - 30, y0 + ph // 2), _MEDIUM, _MUTED)

    for left, right, label, tint in bands:
        s = _fit(label, right - left - 6, _SMALL)
        if s:
            dark = tuple(int(c * 0.55) for c in tint[::-1])
            _text(img, s, (left + 4, y0 + 16), _SMALL, dark)

    y = y0 + ph + _TICKS_H + 14
    for row in legend:
        x = x0
        for name, shown, w in row:
            bgr = colour[name][::-1]
            cv2.line(img, (x, y - 4), (x + _SWATCH, y - 4), bgr, 3, cv2.LINE_AA)
            _text(img, shown, (x + _SWATCH + 6, y), _SMALL, _TEXT)
            x += w
        y += _ROW_H


def _draw_bands(
    img: Array, panel: Panel, xs: Any, box: tuple[int, int, int, int]
) -> list[tuple[int, int, str, RGB]]:
    """The event spans as tinted bands, one tint per label; (left, right, label, tint) each."""
    _x0, y0, _pw, ph = box
    tints: dict[str, RGB] = {}
    bands = []
    for start, end, label in panel.spans:
        a, b = sorted((float(start), float(end)))
        if not (math.isfinite(a) and math.isfinite(b)):
            continue
        left, right = (round(float(v)) for v in xs(np.array([a, b])))
        tint = tints.setdefault(label, _SPAN_TINTS[len(tints) % len(_SPAN_TINTS)])
        roi = img[y0 : y0 + ph, left : right + 1]
        roi[:] = roi * (1 - _SPAN_ALPHA) + np.array(tint[::-1]) * _SPAN_ALPHA + 0.5
        bands.append((left, right, label, tint))
    return bands


def _draw_grid(
    img: Array, box: tuple[int, int, int, int], axis: _Axis, xs: Any, ys: Any, caption: str
) -> None:
    """Grid lines, time ticks with their labels, the value labels and the axis caption."""
    x0, y0, pw, ph = box
    for v in (0.25, 0.5, 0.75):
        yy = round(float(ys(np.array(v))))
        cv2.line(img, (x0, yy), (x0 + pw - 1, yy), _GRID, 1)
    # The axis caption sits right-aligned among the tick labels; those it would cover go.
    room = x0 + pw - cv2.getTextSize(caption, _FONT, _SMALL, 1)[0][0] if caption else 1 << 30
    if caption:
        _text(img, caption, (room, y0 + ph + 17), _SMALL, _MUTED)
    ticks, fmt = _ticks(axis.t0, axis.t1, max(2, pw // 120))
    for t in ticks:
        xx = round(float(xs(np.array(t))))
        cv2.line(img, (xx, y0), (xx, y0 + ph - 1), _GRID, 1)
        cv2.line(img, (xx, y0 + ph), (xx, y0 + ph + 4), _AXIS, 1)
        s = fmt(t)
        sw = cv2.getTextSize(s, _FONT, _SMALL, 1)[0][0]
        if xx + sw // 2 < room - 10:
            _text(img, s, (xx - sw // 2, y0 + ph + 17), _SMALL, _MUTED)
    for v, s in ((0.0, "0"), (0.25, "0.25"), (0.5, "0.5"), (0.75, "0.75"), (1.0, "1")):
        yy = round(float(ys(np.array(v))))
        sw = cv2.getTextSize(s, _FONT, _SMALL, 1)[0][0]
        _text(img, s, (x0 - sw - 6, yy + 5), _SMALL, _MUTED)


def _draw_series(img: Array, tv: Array, xs: Any, ys: Any, bgr: tuple[int, ...], gap: float) -> None:
    """A series as lines, broken where no point came for more than ``gap`` seconds."""
    if not len(tv):
        return
    px, py = xs(tv[:, 0]), ys(tv[:, 1])
    segment = np.concatenate([[0], np.cumsum(np.diff(tv[:, 0]) > gap)])
    cols = np.rint(px).astype(np.int64)
    if len(px) > 4 * (int(cols[-1] - cols[0]) + 1 + int(segment[-1])):
        keep = _m4(segment * (cols[-1] + 1) + cols, py)
        px, py, segment = cols[keep].astype(np.float64), py[keep], segment[keep]
    # Sub-pixel positions (shift 4: 1/16 px) keep few-point lines smooth.
    pts = np.rint(np.stack([px, py], axis=1) * 16).astype(np.int32).reshape(-1, 1, 2)
    parts = np.split(pts, np.flatnonzero(np.diff(segment)) + 1)
    lines = [p for p in parts if len(p) > 1]
    if lines:
        cv2.polylines(img, lines, False, bgr, 2, cv2.LINE_AA, 4)
    # A lone point: a dot (a polyline of one point draws nothing, of the point twice a dot).
    dots = [np.concatenate([p, p]) for p in parts if len(p) == 1]
    if dots:
        cv2.polylines(img, dots, False, bgr, 5, cv2.LINE_AA, 4)


def _m4(groups: Array, y: Array) -> Array:
    """Indices (in time order) of the first, last, lowest and highest point of each group
    (a pixel column of one unbroken line); ``groups`` is non-decreasing."""
    firsts = np.flatnonzero(np.diff(groups, prepend=groups[0] - 1))
    lasts = np.append(firsts[1:] - 1, len(groups) - 1)
    by_value = np.lexsort((y, groups))  # each group's points, lowest value first
    vfirst = np.flatnonzero(np.diff(groups[by_value], prepend=groups[by_value[0]] - 1))
    vlast = np.append(vfirst[1:] - 1, len(groups) - 1)
    return _sorted_unique(np.concatenate([firsts, lasts, by_value[vfirst], by_value[vlast]]))


# ----------------------------------------------------------------------------------- helpers


# np.unique and np.median ask numpy.ma whether their input is masked, which imports numpy.ma
# on first use: 7 ms at the end of every run that draws its summary picture, for nothing.


def _sorted_unique(a: Array) -> Array:
    """``np.unique`` of a 1-D array: its values sorted, each once (NaN, never equal to
    itself, as often as it came)."""
    a = np.sort(a)
    return a[np.concatenate(([True], a[1:] != a[:-1]))] if a.size else a


def _median(a: Array) -> float:
    """``np.median`` of a non-empty 1-D array without NaN."""
    s = np.sort(a)
    mid = len(s) // 2
    return float(s[mid]) if len(s) % 2 else float(s[mid - 1] + s[mid]) / 2


def _clean(points: Sequence[Point]) -> Array:
    """Points -> (n, 2) float64, finite only, in time order (stable for equal times)."""
    tv = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    tv = tv[np.isfinite(tv).all(axis=1)]
    out: Array = tv[np.argsort(tv[:, 0], kind="stable")]
    return out


@dataclass(frozen=True)
class _Axis:
    t0: float
    t1: float
    gap: float  # a line breaks where its series has no point for longer than this (s)


def _time_axis(data: Sequence[Mapping[str, Array]], spans: Sequence[Sequence[Span]]) -> _Axis:
    """One time axis for all panels, so their moments line up."""
    times = [tv[:, 0] for series in data for tv in series.values()]
    steps = np.diff(_sorted_unique(np.concatenate(times))) if times else np.zeros(0)
    # The frames' usual interval, from all series at once: a label that was top-1 only now
    # and then has points far apart, and must not be drawn across the frames between.
    gap = 2.5 * _median(steps) if steps.size else math.inf
    times += [np.array(s[:2], dtype=np.float64) for ss in spans for s in ss]
    flat = np.concatenate(times) if times else np.zeros(0)
    flat = flat[np.isfinite(flat)]
    if not flat.size:
        return _Axis(0.0, 1.0, gap)
    t0, t1 = float(flat.min()), float(flat.max())
    # One instant (a single frame): a second around it, so the point sits mid-chart.
    return _Axis(t0 - 0.5, t1 + 0.5, gap) if t1 - t0 < 1e-9 else _Axis(t0, t1, gap)


def _ticks(t0: float, t1: float, target: int) -> tuple[list[float], Any]:
    """Round tick times in [t0, t1], about ``target`` of them, and how to write them."""
    raw = (t1 - t0) / target
    if raw >= 10:
        steps = [10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200]
        step = float(next((s for s in steps if s >= raw), 86400 * math.ceil(raw / 86400)))
    else:
        mag = 10.0 ** math.floor(math.log10(raw))
        step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first, last = math.ceil(t0 / step - 1e-9), math.floor(t1 / step + 1e-9)
    ticks = [k * step for k in range(first, last + 1)]
    if t1 - t0 >= 120:
        return ticks, _clock
    digits = max(0, -math.floor(math.log10(step) + 1e-9))
    return ticks, lambda t: f"{t:.{digits}f}"


def _clock(t: float) -> str:
    sign, t = ("-" if t < 0 else ""), abs(round(t))
    h, m, s = t // 3600, t // 60 % 60, t % 60
    return f"{sign}{h}:{m:02d}:{s:02d}" if h else f"{sign}{m}:{s:02d}"


def _colours(names: Iterable[str], given: Mapping[str, RGB]) -> dict[str, RGB]:
    out: dict[str, RGB] = {}
    for name in names:
        if name not in out:
            out[name] = given.get(name) or _PALETTE[len(out) % len(_PALETTE)]
    return out


def _legend_rows(names: list[str], width: int) -> list[list[tuple[str, str, int]]]:
    """Legend entries (name, text shown, width) flowed into rows of at most ``width`` px."""
    rows: list[list[tuple[str, str, int]]] = []
    x = width
    for name in names:
        shown = _fit(name, width - _SWATCH - 6, _SMALL) or "..."
        w = _SWATCH + 6 + cv2.getTextSize(shown, _FONT, _SMALL, 1)[0][0] + 18
        if x + w > width + 18:  # the trailing gap of a row's last entry may overhang
            rows.append([])
            x = 0
        rows[-1].append((name, shown, w))
        x += w
    return rows


def _ascii(s: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in s)


def _fit(s: str, max_w: int, scale: float) -> str:
    """``s`` (as ASCII) if it fits in ``max_w`` px, else its longest prefix + "..." that
    does, else ""."""
    s = _ascii(s)

    def width(t: str) -> int:
        return int(cv2.getTextSize(t, _FONT, scale, 1)[0][0])

    if width(s) <= max_w:
        return s
    lo, hi = 0, len(s)  # binary search: a name may be thousands of characters
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if width(s[:mid] + "...") <= max_w else (lo, mid - 1)
    return s[:lo] + "..." if lo else ""


def _text(img: Array, s: str, org: tuple[int, int], scale: float, bgr: Any, thick: int = 1) -> None:
    cv2.putText(img, s, org, _FONT, scale, bgr, thick, cv2.LINE_AA)
