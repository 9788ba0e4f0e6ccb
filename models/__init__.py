"""The model layer: ONNX graphs, their cards, the ONNX Runtime engine and the demo models."""

from models.card import ModelCard, card_path_for, load_card
from models.demo import DEMO_DIR, build_demo_models, demo_model_path
from models.engine import Engine
from models.graph import GraphInfo, TensorInfo, read_graph
from models.model import MAX_CLASSES, Model, load_model
from models.palette import voc_palette

__all__ = [
    "DEMO_DIR",
    "MAX_CLASSES",
    "Engine",
    "GraphInfo",
    "Model",
    "ModelCard",
    "TensorInfo",
    "build_demo_models",
    "card_path_for",
    "demo_model_path",
    "load_card",
    "load_model",
    "read_graph",
    "voc_palette",
]
