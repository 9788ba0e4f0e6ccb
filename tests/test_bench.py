"""``worker bench``, run as users run it (a subprocess): the table covers every provider that
loads, each batch size, IO binding on and off, fused and not; the precision check compares the
fast paths with the plain one. Timings are printed, never asserted (they depend on the machine).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from factory import make_model
from worker.testing import make_video, worker_cli

TIMEOUT_S = 90


def bench(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return worker_cli(cwd, "bench", *args, timeout=TIMEOUT_S)


def run_json(cwd: Path, *args: str) -> dict[str, Any]:
    proc = bench(cwd, *args, "--seconds", "0.05", "--frames", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_segmenter_table_and_precision(tmp_path: Path) -> None:
    make_model(tmp_path / "seg.onnx", classes=4, stride=2)
    video = make_video(tmp_path / "clip.mp4", frames=6, width=80, height=60)
    r = run_json(tmp_path, "--model", "seg.onnx", "--input", "clip.mp4", "--batch", "1,3")
    assert r["model"] == "seg.onnx"
    assert r["frames"] == 4 and r["frame_size"] == [80, 60] and r["frames_from"] == str(video.name)
    cpu = [row for row in r["rows"] if row["provider"] == "cpu"]
    combos = {(row["batch"], row["io_binding"], row["fused"]) for row in cpu}
    assert combos == {(b, i, f) for b in (1, 3) for i in (True, False) for f in (True, False)}
    for row in cpu:
        assert row["fps"] > 0
        if row["fused"]:  # uint8 model-sized frames in, a uint8 16x16 mask out
            assert (row["bytes_in_per_frame"], row["bytes_out_per_frame"]) == (32 * 32 * 3, 256)
        else:  # float32 NCHW in, float32 [4,16,16] logits out
            assert row["bytes_in_per_frame"] == 32 * 32 * 3 * 4
            assert row["bytes_out_per_frame"] == 4 * 16 * 16 * 4
    # Every provider is either in the table or listed with the reason it did not load.
    providers = {row["provider"] for row in r["rows"]} | set(r["unavailable"])
    assert providers == {"cuda", "cpu"}
    if "cuda" in r["unavailable"]:
        assert "did not load" in r["unavailable"]["cuda"]
    (p,) = [p for p in r["precision"] if p["provider"] == "cpu"]
    assert p["measure"] == "mask" and p["fused_agreement"] == 1.0
    assert p["binding_max_abs_diff"] == 0.0


def test_classifier_precision_and_the_table_text(tmp_path: Path) -> None:
    make_model(tmp_path / "cls.onnx", output="classify", classes=6, batch=2)
    r = run_json(tmp_path, "--model", "cls.onnx", "--providers", "cpu")
    assert {row["batch"] for row in r["rows"]} == {2}  # a fixed batch is the only one
    assert r["frames_from"].startswith("sample scene")
    (p,) = r["precision"]
    assert p["measure"] == "top1" and p["fused_agreement"] == 1.0
    assert p["fused_max_abs_diff"] < 1e-4
    fused = [row for row in r["rows"] if row["fused"]]
    assert fused and all(row["bytes_out_per_frame"] == 5 * (4 + 8) for row in fused)

    proc = bench(tmp_path, "--model", "cls.onnx", "--providers", "cpu", "--seconds", "0.05")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.split()[:4] == ["cpu", "2", "on", "yes"] for line in lines), proc.stdout
    assert any("top1 agreement 100.000%" in line for line in lines), proc.stdout


def test_bad_arguments_are_one_error_line(tmp_path: Path) -> None:
    make_model(tmp_path / "m.onnx", batch=2)
    proc = bench(tmp_path, "--model", "m.onnx", "--batch", "4", "--seconds", "0.05")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --batch: the model's batch is fixed at 2")
    proc = bench(tmp_path, "--model", "m.onnx", "--providers", "tpu")
    assert proc.returncode == 2 and "tpu" in proc.stderr
