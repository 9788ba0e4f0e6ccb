"""``worker models``: what the model repository holds.

Reads each graph's header and card (no ONNX Runtime session, no probe run), so listing a
repository of large models is quick. What the graph cannot say without running (the output
shape of a graph that leaves it symbolic) shows as ``?``; ``worker inspect NAME`` runs the
probe and says everything.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from worker.errors import WorkerError
from worker.settings import Settings

__all__ = ["cmd_models", "describe_entry"]


def describe_entry(entry: Any) -> dict[str, Any]:
    """One ``RepoEntry`` as a row: name, task, input size, labels, card or inferred."""
    from worker.models import read_graph
    from worker.models.card import card_from_metadata, resolve_card
    from worker.models.forms import detect_form

    row: dict[str, Any] = {
        "name": entry.name,
        "path": str(entry.path),
        "source": "built-in" if entry.builtin else "repository",
        "card": "card" if entry.card is not None else "inferred",
    }
    try:
        g = read_graph(entry.path)
        embedded = card_from_metadata(g.metadata, entry.path)
        card = resolve_card(entry.card, embedded=embedded).card
        if entry.card is None and embedded:
            row["card"] = "model metadata"
    except WorkerError as e:
        return {**row, "task": None, "input_size": None, "labels": None, "error": str(e)}
    out = g.output.shape
    rank = len(out) if out is not None else None
    hw = (g.height, g.width) if g.height and g.width else card.input_size
    # A YOLO head's shape says detect (without running the model: the graph's own shape).
    fixed = [d for d in out or () if d is not None]
    head = detect_form(fixed, hw, g.metadata) if hw and out and len(fixed) == len(out) else None
    by_rank = {2: "classify", 3: "segment", 4: "segment"}.get(rank or 0)
    task: str | None = card.task or ("detect" if head else by_rank)
    labels: list[str] | int | None = list(card.labels) if card.labels else None
    if labels is None and out is not None and rank in (2, 4):
        classes = out[1]
        labels = classes if classes and classes > 1 else None
    return {
        **row,
        "task": task,
        "input_size": list(hw) if hw else None,
        "labels": labels,
        "layout": g.layout,
        "dtype": str(g.input.dtype),
    }


def _labels_text(labels: list[str] | int | None) -> str:
    if labels is None:
        return "?"
    if isinstance(labels, int):
        return f"{labels} classes"
    text = ", ".join(labels)
    return text if len(text) <= 48 else text[:45] + "..."


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from worker.models import list_models

    root = settings.model_root
    rows = [describe_entry(e) for e in list_models(root)]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"model repository: {root}{'' if root.is_dir() else ' (no such folder)'}")
    table: list[tuple[str, ...]] = [("NAME", "TASK", "INPUT", "LABELS", "CARD", "WHERE")]
    for r in rows:
        hw = "x".join(str(d) for d in r["input_size"]) if r.get("input_size") else "?"
        labels = f"error: {r['error']}" if "error" in r else _labels_text(r["labels"])
        where = "built-in" if r["source"] == "built-in" else r["path"]
        table.append((r["name"], r["task"] or "?", hw, labels, r["card"], where))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]) - 1)]
    for line in table:
        cells = [c.ljust(w) for c, w in zip(line, widths, strict=False)]
        print("  ".join([*cells, line[-1]]).rstrip())
    return 0
