"""A job's per-frame results (its JSON lines) as a few series small enough to draw: per label
its coverage (segmentation) or its score (classification, 0 when not among the top labels),
averaged over at most ``points`` time buckets. Two passes over the file, so memory stays the
size of the answer whatever the length of the video."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["label_series", "read_series"]


def _values(record: dict[str, Any]) -> dict[str, float] | None:
    counts = record.get("counts")
    if isinstance(counts, dict) and "coverage" not in record:  # a detector: objects per label
        return {str(k): float(v) for k, v in counts.items() if isinstance(v, int | float)}
    cov = record.get("coverage")
    if isinstance(cov, dict):
        return {str(k): float(v) for k, v in cov.items() if isinstance(v, int | float)}
    top = record.get("top")
    if isinstance(top, list):
        return {
            str(t["label"]): float(t["score"])
            for t in top
            if isinstance(t, dict) and "label" in t and isinstance(t.get("score"), int | float)
        }
    return None


def label_series(
    lines: Iterable[str], count: int, points: int = 300, labels: int = 8
) -> dict[str, Any]:
    """``{"kind", "t": [...], "series": {label: [...]}}`` from ``count`` JSON lines: bucket
    means, for the ``labels`` labels with the highest mean (a line per label)."""
    buckets = max(1, min(points, count))
    per = max(1, -(-count // buckets))  # frames per bucket, rounded up
    sums: dict[str, list[float]] = {}
    times = [0.0] * buckets
    n = [0] * buckets
    kind = "coverage"
    seen = 0
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        values = _values(record)
        if values is None:
            continue
        if "top" in record:
            kind = "score"
        elif "counts" in record and "coverage" not in record:
            kind = "count"
        b = min(buckets - 1, seen // per)
        seen += 1
        n[b] += 1
        times[b] += float(record.get("time") or 0.0)
        for label, v in values.items():
            sums.setdefault(label, [0.0] * buckets)[b] += v
    used = [i for i in range(buckets) if n[i]]
    means = {k: sum(v) / max(1, seen) for k, v in sums.items()}
    keep = sorted(means, key=lambda k: -means[k])[:labels]
    return {
        "kind": kind,
        "frames": seen,
        "t": [round(times[i] / n[i], 3) for i in used],
        "series": {k: [round(sums[k][i] / n[i], 4) for i in used] for k in keep},
    }


def read_series(path: Path, points: int = 300) -> dict[str, Any]:
    """``label_series`` of a JSON lines file."""
    with path.open(encoding="utf-8", errors="replace") as f:
        count = sum(1 for _ in f)
    with path.open(encoding="utf-8", errors="replace") as f:
        return label_series(f, count, points)
