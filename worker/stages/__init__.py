"""The stages of a run and their wiring, for files and cameras alike.

One file per stage: ``source`` decodes (PyAV), ``infer`` runs the model (ONNX Runtime),
``batching`` is the inference stage's loop; ``loop`` is what happens to each answered frame
(``records`` records it, ``painters`` draw it, outputs such as ``writer``'s video and JSON
lines and ``sidecars``' extra files take it); ``channels`` are the queues between stages
(lossless for files, drop-oldest for cameras) and ``threads`` runs them. ``runner`` wires a
file run (``run_file``); ``worker.live`` wires cameras from the same pieces.
"""

from worker.stages.atomic import AtomicFile
from worker.stages.frames import Answer, Frame, Item, VideoInfo
from worker.stages.infer import Inferencer, plan_for
from worker.stages.loop import FrameLoop, Output
from worker.stages.painters import Painter, Painters, painters_for
from worker.stages.records import MaskMaps, Recorder
from worker.stages.runner import RunSummary, default_batch, run_file
from worker.stages.sample import robot_scene, write_sample
from worker.stages.source import VideoSource, probe
from worker.stages.writer import ResultsWriter, VideoWriter

__all__ = [
    "Answer",
    "AtomicFile",
    "Frame",
    "FrameLoop",
    "Inferencer",
    "Item",
    "MaskMaps",
    "Output",
    "Painter",
    "Painters",
    "Recorder",
    "ResultsWriter",
    "RunSummary",
    "VideoInfo",
    "VideoSource",
    "VideoWriter",
    "default_batch",
    "painters_for",
    "plan_for",
    "probe",
    "robot_scene",
    "run_file",
    "write_sample",
]
