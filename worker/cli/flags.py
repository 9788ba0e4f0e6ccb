"""Command-line flags that several subcommands share, declared once so their names, types and
help agree (each is also a setting: flags only override ``WORKER_*``)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_look_flags", "add_model_flags", "add_pipeline_flag"]


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
