"""The result of ``tutorial_vs_worker.py`` and the table it prints: runs side by side, the
targets met or missed, bytes per frame, where the CPU time goes, the arithmetic of the bound."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import IO, Any

from speed_inputs import NOISY_CORES


@dataclass
class Result:
    environment: dict[str, Any]
    video: dict[str, Any]
    model: dict[str, Any]
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    device_bytes_per_frame: dict[str, dict[str, int]] = field(default_factory=dict)
    cpu_ms_per_frame: dict[str, float] = field(default_factory=dict)  # the worker, by thread
    bound: dict[str, float] = field(default_factory=dict)  # the arithmetic of the ceiling
    rss: dict[str, dict[str, float]] = field(default_factory=dict)  # `worker run`, short/long
    tutorial_ms_per_frame: dict[str, float] = field(default_factory=dict)
    tutorial_postprocess_ms_per_frame: dict[str, float] = field(default_factory=dict)
    worker_stage_ms_per_frame: dict[str, float] = field(default_factory=dict)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    peak_rss_mib_process: float = 0.0
    temp_dir: str | None = None


def fps_of(frames: int, seconds: float) -> float:
    return round(frames / seconds, 2) if seconds > 0 else 0.0


def ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b > 0 else 0.0


def target(name: str, value: float, goal: float, higher: bool, unit: str) -> dict[str, Any]:
    met = value >= goal if higher else value < goal
    miss = 0.0 if met else abs(goal - value)
    return {
        "name": name,
        "value": value,
        "goal": goal,
        "higher": higher,
        "unit": unit,
        "met": met,
        "missed_by": round(miss, 3),
    }


def report(r: Result, out: IO[str]) -> None:
    p = r.phases
    rows = [
        ("tutorial loop", r.runs["tutorial"], p["tutorial"]),
        ("worker", r.runs["worker"], p["worker"]),
    ]
    rows.append(("model-only ceiling", r.runs["ceiling"], p["ceiling"]))
    if "fused ceiling" in r.runs:
        rows.append(("fused graph alone", r.runs["fused ceiling"], p["fused ceiling"]))
    rows.append(("decode alone", r.runs["decode ceiling"], p["decode ceiling"]))
    print("", file=out)
    print(
        f"{'run':<22}{'frames':>7}{'seconds':>9}{'fps':>8}{'load s':>8}{'fps+load':>9}"
        f"{'cores':>7}{'others':>7}{'RSS start':>11}{'peak':>6}",
        file=out,
    )
    for name, run_, ph in rows:
        load = run_.get("load_seconds")
        with_load = run_.get("fps_with_load")
        others = ph["others_busy"]
        print(
            f"{name:<22}{run_['frames']:>7}{run_['seconds']:>9.2f}{run_['fps']:>8.2f}"
            f"{'' if load is None else f'{load:.3f}':>8}"
            f"{'' if with_load is None else f'{with_load:.2f}':>9}"
            f"{ph['cores_busy']:>7.2f}{'?' if others is None else f'{others:.2f}':>7}"
            f"{ph['start_rss_mib']:>11.0f}{ph['peak_rss_mib']:>6.0f} MiB",
            file=out,
        )
    print(
        "  seconds, fps: model loading excluded (tutorial: VideoCapture open .. VideoWriter "
        "release;\n"
        "    worker: the run_file call, open .. outputs committed); load s: tutorial = "
        "InferenceSession(),\n"
        "    worker = load_model (read, check, session, probe run) + fused session; fps+load: "
        "both included\n"
        "  cores: this process's CPU time (all threads) / wall time, out of "
        f"{os.cpu_count()}; others: the same for every other process\n"
        "  RSS: when the phase began / its own high-water mark"
        + ("" if all(v["peak_is_phase"] for v in p.values()) else " (NOT reset: process peak)"),
        file=out,
    )
    w = r.runs["worker"]
    pipe = w.get("pipeline", {})
    print(
        f"  worker: batch {w['batch']}, {w['threads']} intra-op threads (no spinning), "
        f"{'fused' if pipe.get('fused') else 'UNFUSED'} graph, IO binding "
        f"{'on' if pipe.get('io_binding') else 'off'}, decoder {pipe.get('decoder')}, encoder "
        f"{pipe.get('encoder')}; tutorial: ORT default options; ceiling: batch "
        f"{r.runs['ceiling']['batch']}, plain model, float32 in",
        file=out,
    )
    busy = {
        k: v["others_busy"]
        for k, v in p.items()
        # rss check: its CPU is a child's, counted as "others"; its timing is not a result.
        if k not in ("build inputs", "worker load", "rss check")
        and (v["others_busy"] or 0.0) > NOISY_CORES
    }
    if busy:
        print(
            "  WARNING: other processes were busy during "
            + ", ".join(f"{k} ({v:.2f} cores)" for k, v in busy.items())
            + ": those timings are disturbed; rerun on a quiet machine",
            file=out,
        )
    print("", file=out)
    print("ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in r.ratios.items()), file=out)
    print("targets (issue 3):", file=out)
    for t in r.targets:
        rel = "" if t["met"] else f" by {t['missed_by']:.3f}"
        pct = f"{100 * t['value']:+.1f}%" if t["unit"] == "" else f"{t['value']:.2f}x"
        shown = f"{t['goal']:.2f}x" if t["unit"] else f"{100 * t['goal']:.0f}%"
        goal = f"{'>=' if t['higher'] else '<'} {shown}"
        print(
            f"  {t['name']:<32}{pct:>9}  ({goal})  {'met' if t['met'] else 'MISSED' + rel}",
            file=out,
        )
    for who, sent in r.device_bytes_per_frame.items():
        if sent:
            print(
                f"  bytes per frame to / from the device, {who}: {sent['in']:,} / {sent['out']:,}",
                file=out,
            )
    if r.rss:
        short, long_ = r.rss["short"], r.rss["long"]
        print(
            f"  peak RSS of `worker run` (a fresh process each): {short['frames']} frames "
            f"{short['peak_rss_mib']:.0f} MiB ({short['fps']:.1f} fps), {long_['frames']} frames "
            f"{long_['peak_rss_mib']:.0f} MiB ({long_['fps']:.1f} fps)",
            file=out,
        )
    print(f"this process's peak RSS: {r.peak_rss_mib_process:.0f} MiB", file=out)

    b = r.bound
    print("", file=out)
    print("where the CPU goes (the worker run, ms of CPU per frame, all threads):", file=out)
    print(
        "  "
        + ", ".join(f"{k} {v:.1f}" for k, v in r.cpu_ms_per_frame.items())
        + f"  (sum {sum(r.cpu_ms_per_frame.values()):.1f}; "
        f"process {b['worker_cpu_ms_per_frame']:.1f})",
        file=out,
    )
    print(
        f"  the model alone costs {b['model_cpu_ms_per_frame']:.1f} ms CPU per frame (ceiling "
        f"run); decode, resize, in-graph pre/post, drawing, encoding and Python add "
        f"{b['host_cpu_ms_per_frame']:.1f}",
        file=out,
    )
    print(
        f"  bound: {b['cores']} cores x 1000 / {b['worker_cpu_ms_per_frame']:.1f} ms = "
        f"{b['best_fps_at_full_cores']:.1f} fps if every core were busy all the time = "
        f"{b['best_ratio_to_ceiling']:.2f}x the ceiling; 0.75x needs <= "
        f"{b['cpu_ms_per_frame_allowed_for_0.75x']:.1f} ms CPU per frame, i.e. <= "
        f"{b['host_ms_allowed_for_0.75x']:.1f} ms for everything but the model",
        file=out,
    )

    def stage_line(title: str, stages: dict[str, float]) -> None:
        total = sum(stages.values())
        parts = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
        print(f"{title}: {parts}  (sum {total:.1f})", file=out)

    print("", file=out)
    print("ms per frame (wall)", file=out)
    stage_line("  tutorial loop", r.tutorial_ms_per_frame)
    stage_line("    postprocess", r.tutorial_postprocess_ms_per_frame)
    stage_line("  worker stages, sequential", r.worker_stage_ms_per_frame)
    print(
        "    (the worker's own code on one thread: decode = PyAV, resize = cv2 to 512x512 uint8, "
        "model = the fused graph per frame of a batch, annotate = restore + blend + coverage, "
        "encode = BGR->I420 + libx264 at the worker's preset)",
        file=out,
    )
    if r.temp_dir:
        print(f"\nkept: {r.temp_dir}", file=out)
