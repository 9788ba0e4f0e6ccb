"""Real parts for tests and benchmarks: videos encoded with PyAV, models built with
onnx.helper, a redis-server of one's own, RTSP cameras (GStreamer), a queue rig with
``worker`` processes, signal trials, and polling with a deadline.

Shared by ``tests/`` and ``benchmarks/`` (as ``numpy.testing`` is by numpy's users); nothing
in the worker itself imports it. The RTSP cameras need the system packages
``tests/system-deps.sh`` installs.
"""

from worker.testing.cli import clean_env, one_error, worker_cli, worker_popen
from worker.testing.media import decode, make_video, pattern, walker_spans, walkers
from worker.testing.models import make_slow_model
from worker.testing.redis_server import RedisServer
from worker.testing.rig import (
    LONG,
    Rig,
    WorkerProc,
    done_events,
    files_under,
    mid_job,
    settings_from,
    state_of,
    worker_env,
)
from worker.testing.rtsp import SYSTEM_PYTHON, RtspServer, SilentServer
from worker.testing.signal_trials import KINDS, MIN_DELAY_S, Trial, busy_cores, run_trial
from worker.testing.waiting import DEADLINE_S, free_port, wait_for

__all__ = [
    "DEADLINE_S",
    "KINDS",
    "LONG",
    "MIN_DELAY_S",
    "SYSTEM_PYTHON",
    "RedisServer",
    "Rig",
    "RtspServer",
    "SilentServer",
    "Trial",
    "WorkerProc",
    "busy_cores",
    "clean_env",
    "decode",
    "done_events",
    "files_under",
    "free_port",
    "make_slow_model",
    "make_video",
    "mid_job",
    "one_error",
    "pattern",
    "run_trial",
    "settings_from",
    "state_of",
    "wait_for",
    "walker_spans",
    "walkers",
    "worker_cli",
    "worker_env",
    "worker_popen",
]
