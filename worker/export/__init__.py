"""``worker export``: a PyTorch checkpoint to a checked, verified ONNX model and its card.

``request`` checks what is asked; ``steps`` runs the export from start to end; ``checkpoint``
builds the network and loads the weights, ``exporter`` calls torch.onnx, ``verify`` compares
ONNX Runtime with PyTorch. Torch is imported only when an export runs (the ``export`` extra).
"""

from worker.export.request import CARD_FLAGS, ExportRequest
from worker.export.steps import export_model

__all__ = ["CARD_FLAGS", "ExportRequest", "export_model"]
