"""The model layer: ONNX graphs, their cards, the ONNX Runtime engine, the fused uint8 graph,
the model repository (``models/<name>/model.onnx``) and the demo models.

Import-light: this package's ``__init__`` loads nothing until a name is asked for, so the card
schema and the repository (pydantic and pathlib only) can be used without loading ONNX
Runtime; ``Engine``, ``load_model`` and the rest load it on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.models.card import ModelCard, load_card
    from worker.models.demo import build_demo_models
    from worker.models.engine import Engine, EngineOptions
    from worker.models.graph import GraphInfo, TensorInfo, read_graph
    from worker.models.model import MAX_CLASSES, Model, load_model
    from worker.models.palette import voc_palette
    from worker.models.repository import (
        CARD_FILE,
        DEMO_NAMES,
        MODEL_FILE,
        RepoEntry,
        builtin_root,
        card_path_for,
        demo_model_path,
        list_models,
        resolve_model,
    )

__all__ = [
    "CARD_FILE",
    "DEMO_NAMES",
    "MAX_CLASSES",
    "MODEL_FILE",
    "Engine",
    "EngineOptions",
    "GraphInfo",
    "Model",
    "ModelCard",
    "RepoEntry",
    "TensorInfo",
    "build_demo_models",
    "builtin_root",
    "card_path_for",
    "demo_model_path",
    "list_models",
    "load_card",
    "load_model",
    "read_graph",
    "resolve_model",
    "voc_palette",
]

_WHERE = {
    "ModelCard": "worker.models.card",
    "load_card": "worker.models.card",
    "DEMO_NAMES": "worker.models.repository",
    "build_demo_models": "worker.models.demo",
    "demo_model_path": "worker.models.repository",
    "Engine": "worker.models.engine",
    "EngineOptions": "worker.models.engine",
    "GraphInfo": "worker.models.graph",
    "TensorInfo": "worker.models.graph",
    "read_graph": "worker.models.graph",
    "MAX_CLASSES": "worker.models.model",
    "Model": "worker.models.model",
    "load_model": "worker.models.model",
    "voc_palette": "worker.models.palette",
    "CARD_FILE": "worker.models.repository",
    "MODEL_FILE": "worker.models.repository",
    "RepoEntry": "worker.models.repository",
    "builtin_root": "worker.models.repository",
    "card_path_for": "worker.models.repository",
    "list_models": "worker.models.repository",
    "resolve_model": "worker.models.repository",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'worker.models' has no attribute '{name}'")
