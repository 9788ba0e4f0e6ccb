"""The stages of a file job and their wiring.

One file per stage: ``source`` decodes (PyAV), ``infer`` runs the model (ONNX Runtime),
``writer`` annotates and encodes H.264 and writes the JSON lines; ``runner`` joins them with
threads and bounded queues (``run_file``). ``options`` turns settings into ``run_file``
arguments, so ``worker run`` and a queued job process a file the same way.
"""

from worker.stages.atomic import AtomicFile
from worker.stages.frames import Answer, Frame, VideoInfo
from worker.stages.infer import Inferencer, plan_for
from worker.stages.options import RunOptions, configured_model, run_options
from worker.stages.runner import RunSummary, default_batch, run_file
from worker.stages.sample import robot_scene, write_sample
from worker.stages.source import VideoSource, probe
from worker.stages.speed import Speed
from worker.stages.writer import Annotator, ResultsWriter, VideoWriter

__all__ = [
    "Annotator",
    "Answer",
    "AtomicFile",
    "Frame",
    "Inferencer",
    "ResultsWriter",
    "RunOptions",
    "RunSummary",
    "Speed",
    "VideoInfo",
    "VideoSource",
    "VideoWriter",
    "configured_model",
    "default_batch",
    "plan_for",
    "probe",
    "robot_scene",
    "run_file",
    "run_options",
    "write_sample",
]
