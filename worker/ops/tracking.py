"""Tracks: stable ids for boxes from frame to frame, after ByteTrack (Zhang et al., ECCV 2022).

Each track's box moves by a constant-velocity Kalman filter on (cx, cy, aspect, height), as
SORT and ByteTrack keep it. Per frame:

1. every track is predicted one step on;
2. the confident boxes (score >= ``high``) are matched to the tracks, live and lost, by
   IoU (at least ``match_iou``; boxes and tracks of one class only);
3. the weak boxes (``low`` <= score < ``high``), which a plain tracker throws away, are
   matched to the live tracks still unmatched: an object half hidden keeps its id;
4. a track matched nowhere is lost, kept ``keep_s`` seconds of video (so ``--every`` and
   a camera's dropped frames do not end it), then dropped; a confident box matched nowhere
   starts a track, which gets its id once seen on ``min_hits`` frames.

Matching is greedy by IoU, best pairs first (ByteTrack solves it exactly; at these
thresholds the two differ only when boxes of one class overlap heavily). Plain numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Track", "Tracker", "iou_matrix"]

Array = np.ndarray[Any, Any]

# Motion and observation noise relative to the box height, as SORT/ByteTrack set them.
_STD_POS = 1.0 / 20
_STD_VEL = 1.0 / 160


def iou_matrix(a: Array, b: Array) -> Array:
    """IoU of every box of ``a`` (n, 4) with every box of ``b`` (m, 4), x1 y1 x2 y2."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out: Array = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return out


def _to_z(box: Array) -> Array:
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array([box[0] + w / 2, box[1] + h / 2, w / max(h, 1e-6), h])


def _to_box(x: Array) -> Array:
    cx, cy, a, h = x[:4]
    w = a * h
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)


@dataclass
class Track:
    """One object followed over frames. ``id`` is 0 until it has been seen ``min_hits``
    times (a box seen once is not yet an object); ids count up from 1 per tracker."""

    cls: int
    x: Array  # Kalman state: cx, cy, aspect, h and their velocities
    p: Array  # its covariance
    score: float
    seen_at: float  # video time of its newest match
    hits: int = 1
    id: int = 0
    box: Array = field(default_factory=lambda: np.zeros(4))

    def predict(self) -> None:
        h = self.x[3]
        q = np.square([_STD_POS * h, _STD_POS * h, 1e-2, _STD_POS * h,
                       _STD_VEL * h, _STD_VEL * h, 1e-5, _STD_VEL * h])  # fmt: skip
        self.x = _F @ self.x
        self.p = _F @ self.p @ _F.T + np.diag(q)
        self.box = _to_box(self.x)

    def update(self, box: Array, score: float, t: float) -> None:
        z = _to_z(box)
        h = self.x[3]
        r = np.diag(np.square([_STD_POS * h, _STD_POS * h, 1e-1, _STD_POS * h]))
        s = _H @ self.p @ _H.T + r
        k = self.p @ _H.T @ np.linalg.inv(s)
        self.x = self.x + k @ (z - _H @ self.x)
        self.p = (np.eye(8) - k @ _H) @ self.p
        self.box = np.asarray(box, dtype=np.float64)
        self.score, self.seen_at = score, t
        self.hits += 1


def _new_track(box: Array, cls: int, score: float, t: float) -> Track:
    z = _to_z(box)
    h = z[3]
    std = [2 * _STD_POS * h, 2 * _STD_POS * h, 1e-2, 2 * _STD_POS * h,
           10 * _STD_VEL * h, 10 * _STD_VEL * h, 1e-5, 10 * _STD_VEL * h]  # fmt: skip
    x = np.concatenate([z, np.zeros(4)])
    return Track(cls, x, np.diag(np.square(std)), score, t, box=np.asarray(box, np.float64))


def _greedy(iou: Array, threshold: float) -> list[tuple[int, int]]:
    """(row, column) pairs, best IoU first, each row and column once, IoU >= threshold."""
    if iou.size == 0:
        return []
    rows, cols = np.nonzero(iou >= threshold)
    order = np.argsort(-iou[rows, cols], kind="stable")
    used_r: set[int] = set()
    used_c: set[int] = set()
    pairs = []
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r not in used_r and c not in used_c:
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    return pairs


class Tracker:
    """Ids for the boxes of one stream (a file, a camera), frame after frame."""

    def __init__(
        self,
        *,
        high: float = 0.5,
        low: float = 0.1,
        match_iou: float = 0.2,
        weak_iou: float = 0.5,
        keep_s: float = 1.0,
        min_hits: int = 2,
    ) -> None:
        self.high, self.low = high, low
        self.match_iou, self.weak_iou = match_iou, weak_iou
        self.keep_s, self.min_hits = keep_s, min_hits
        self.tracks: list[Track] = []
        self.next_id = 1
        self.ended = 0  # tracks given an id and later dropped

    def update(self, rows: Array, t: float) -> list[int]:
        """Ids of ``rows`` ((k, 6): x1, y1, x2, y2, score, class in frame pixels) at video
        time ``t``: a track's id, or 0 for a box not (yet) an object."""
        # Lost for longer than keep_s: gone before anything is matched to it.
        self.ended += sum(tr.id != 0 for tr in self.tracks if t - tr.seen_at > self.keep_s)
        self.tracks = [tr for tr in self.tracks if t - tr.seen_at <= self.keep_s]
        for tr in self.tracks:
            tr.predict()
        ids = [0] * len(rows)
        scores = rows[:, 4] if len(rows) else np.zeros(0)
        strong = [i for i in range(len(rows)) if scores[i] >= self.high]
        weak = [i for i in range(len(rows)) if self.low <= scores[i] < self.high]
        free = list(range(len(self.tracks)))
        free, strong_left = self._match(rows, strong, free, self.match_iou, t, ids)
        live = [k for k in free if t - self.tracks[k].seen_at <= self._step(t)]
        self._match(rows, weak, live, self.weak_iou, t, ids)
        for i in strong_left:
            cls = int(rows[i, 5])
            self.tracks.append(_new_track(rows[i, :4], cls, float(rows[i, 4]), t))
        # A box seen once and not again is not an object.
        self.tracks = [tr for tr in self.tracks if tr.id != 0 or tr.seen_at == t]
        self._last_t = t
        return ids

    def _step(self, t: float) -> float:
        """How long ago the previous frame was (a track unmatched since is lost)."""
        last = getattr(self, "_last_t", None)
        return 0.0 if last is None else max(0.0, t - last) + 1e-9

    def _match(
        self, rows: Array, dets: list[int], tracks: list[int], threshold: float, t: float,
        ids: list[int],
    ) -> tuple[list[int], list[int]]:  # fmt: skip
        """Match ``dets`` to ``tracks`` (indices); update the matched; (tracks left, dets
        left)."""
        if not dets or not tracks:
            return tracks, dets
        boxes = np.array([self.tracks[k].box for k in tracks])
        iou = iou_matrix(rows[dets, :4].astype(np.float64), boxes)
        same = rows[dets, 5][:, None] == np.array([self.tracks[k].cls for k in tracks])[None]
        iou[~same] = 0.0
        pairs = _greedy(iou, threshold)
        for d, k in pairs:
            i, tr = dets[d], self.tracks[tracks[k]]
            tr.update(rows[i, :4], float(rows[i, 4]), t)
            if tr.id == 0 and tr.hits >= self.min_hits:
                tr.id, self.next_id = self.next_id, self.next_id + 1
            ids[i] = tr.id
        matched_t = {tracks[k] for _, k in pairs}
        matched_d = {dets[d] for d, _ in pairs}
        return [k for k in tracks if k not in matched_t], [i for i in dets if i not in matched_d]
