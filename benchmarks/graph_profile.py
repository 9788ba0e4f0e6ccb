"""Where a run of the fused graph goes, node by node: ONNX Runtime's own profiler.

    python benchmarks/graph_profile.py [--runs 20] [--shapes seg21,map1-dyn]
    python benchmarks/graph_profile.py --model yolov8n.onnx      # a model of your own

Per shape (``shapes.SHAPES``), the fused graph the worker builds (``worker.models.fuse``: the
in-graph normalisation, the model, the post-processing) in a session made as a lane's is (the
worker's session options, one intra-op thread), run ``--runs`` times on a frame as the host
stages it (``Inferencer.stage``), with ONNX Runtime's profiling on. Printed: ms per run of
each node (ONNX Runtime's names: a node it rewrote for its blocked layout ends in ``_nchwc``),
the shares of the in-graph preprocessing and post-processing (the nodes the wrapper put
before and after the model), and the total. The model alone is the speed matrix's "model";
the rest here is what the wrapper adds. ``--model``: a model of your own (its card beside
it or in its metadata) instead of the shapes.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
from shapes import SHAPES, build_model

from worker.description import Speed
from worker.models import load_model
from worker.models.engine import EngineOptions, session_options
from worker.models.fuse import fuse
from worker.stages.infer import Inferencer, fuse_spec


def profile(model_path: Path, runs: int) -> tuple[list[tuple[str, str, float]], float]:
    """(node, op, ms per run) by cost, and the total ms per run. Nodes are named after their
    first output, so the wrapper's carry its ``vw_pre/`` or ``vw_post/`` prefix."""
    model = load_model(model_path, provider="cpu")
    proto = fuse(model.graph.load_proto(), fuse_spec(model)).proto
    assert proto is not None
    for node in proto.graph.node:
        node.name = node.name or node.output[0]
    infer = Inferencer(model, speed=Speed(fuse_cache=False, lanes=1))
    assert infer.fused is not None, infer.why_unfused
    frame = np.random.default_rng(7).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    x = infer.stage([frame]).copy()  # what the host sends a lane's run
    opts = session_options(1, 1, EngineOptions(), "cpu")
    opts.enable_profiling = True
    session = ort.InferenceSession(
        proto.SerializeToString(), sess_options=opts, providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    warm = 3  # the arena grows and the first runs learn their shapes: not counted
    for _ in range(warm + runs):
        session.run(None, {name: x})
    path = session.end_profiling()
    with open(path, encoding="utf-8") as f:
        events = json.load(f)
    os.remove(path)
    starts = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    counted = starts[warm]
    us: Counter[tuple[str, str]] = Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= counted:
            us[(e["name"].removesuffix("_kernel_time"), e["args"].get("op_name", "?"))] += e["dur"]
    nodes = [(node, op, t / runs / 1000) for (node, op), t in us.most_common()]
    return nodes, sum(t for _, _, t in nodes)


def _report(name: str, nodes: list[tuple[str, str, float]], total: float) -> None:
    pre = sum(ms for node, _, ms in nodes if node.startswith("vw_pre/"))
    post = sum(ms for node, _, ms in nodes if node.startswith("vw_post/"))
    print(f"{name}: {total:.2f} ms a run, in-graph preprocessing {pre:.2f} ms "
          f"({100 * pre / total:.1f} %), post-processing {post:.2f} ms "
          f"({100 * post / total:.1f} %)")  # fmt: skip
    for node, op, ms in nodes:
        print(f"  {ms:8.3f} ms  {op:<14} {node}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument(
        "--model", type=Path, action="append", default=[],
        help="your own model (its card beside it or in its metadata) instead of the shapes; "
        "may be given more than once",
    )  # fmt: skip
    a = p.parse_args()
    if a.model:
        for path in a.model:
            _report(path.name, *profile(path, a.runs))
        return 0
    with tempfile.TemporaryDirectory(prefix="graph-profile-") as t:
        for shape in a.shapes.split(","):
            path = Path(t) / f"{shape}.onnx"
            build_model(SHAPES[shape], path)
            _report(shape, *profile(path, a.runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
