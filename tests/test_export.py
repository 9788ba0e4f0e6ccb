"""``worker export``: a PyTorch checkpoint becomes a checked, verified ONNX model with its card.

What the command promises (``models.export``): the exported graph passes ``onnx.checker`` at
the requested opset with the requested dynamic axes; ONNX Runtime answers like PyTorch within
the tolerance on noise and on sample images, preprocessed as the card says; the card beside
the model lets ``worker run`` use it with no other flag; and every refusal is one ``error:``
line, exit 2, with nothing written.

The networks are ``export_nets`` (this folder, put on PYTHONPATH for the subprocess as a user's
own package would be). The two real exports run as a user runs them, in a subprocess, once per
module; the refusals go through the same ``worker.cli.main`` in-process (``capfd`` still sees
every byte written to stdout and stderr), which spares a torch import per case.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
import torch

import export_nets
from worker.cli.main import main
from worker.errors import ExportError
from worker.export.checkpoint import load_weights, read_state_dict
from worker.models import load_model
from worker.models.cpu import cpu_flags, int8_weights
from worker.models.repository import card_path_for
from worker.ops import preprocess, segment
from worker.stages import Answer, Frame, Recorder, plan_for
from worker.testing import clean_env, decode, make_video, one_error, pattern

NETS_DIR = Path(__file__).parent
TIMEOUT_S = 90.0
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


# ----------------------------------------------------------------------------------- helpers


def worker(
    cwd: Path, *args: str, prefix: Sequence[str] = (sys.executable, "-m", "worker")
) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(NETS_DIR), os.environ.get("PYTHONPATH")) if p)
    env = clean_env({"PYTHONPATH": path})
    return subprocess.run(
        [*prefix, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def save(net: torch.nn.Module, path: Path) -> Path:
    torch.save(net.state_dict(), path)
    return path


def export_args(weights: Path, factory: str, *extra: str) -> list[str]:
    return [
        "export",
        "--factory",
        f"export_nets:{factory}",
        "--weights",
        str(weights),
        "--input-shape",
        "1,3,32,32",
        "--output",
        "out/model.onnx",
        *extra,
    ]


def torch_outputs(net: torch.nn.Module, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    with torch.inference_mode():
        out = net(torch.from_numpy(x))
    tensor = out["out"] if isinstance(out, dict) else out
    assert isinstance(tensor, torch.Tensor)
    result: np.ndarray[Any, Any] = tensor.numpy()
    return result


@dataclass
class Exported:
    dir: Path
    model: Path
    weights: Path
    net: torch.nn.Module  # the PyTorch network with the same weights, in eval mode
    report: dict[str, Any]
    stderr: str


# ---------------------------------------------------------------------- two real exports


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    d = tmp_path_factory.mktemp("segmenter")
    net = export_nets.randomized(export_nets.segmenter(), seed=1)
    # Saved the way a data-parallel training script saves it: wrapped, every key prefixed.
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"epoch": 7, "state_dict": state}, d / "best.pth")
    (d / "labels.txt").write_text("\n".join(export_nets.SEGMENT_LABELS) + "\n")
    (d / "samples").mkdir()
    cv2.imwrite(str(d / "samples" / "a.png"), pattern(3, 96, 72))
    cv2.imwrite(str(d / "samples" / "b.jpg"), pattern(9, 50, 80))
    proc = worker(
        d,
        "export",
        "--factory",
        "export_nets:segmenter",
        "--weights",
        "best.pth",
        "--input-shape",
        "1,3,64,64",
        "--dynamic",
        "batch,height,width",
        "--opset",
        "17",
        "--task",
        "segment",
        "--labels",
        "labels.txt",
        "--samples",
        "samples",
        "--output",
        "exported/seg.onnx",
    )
    assert proc.returncode == 0, proc.stderr
    return Exported(
        d, d / "exported/seg.onnx", d / "best.pth", net, json.loads(proc.stdout), proc.stderr
    )


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    d = tmp_path_factory.mktemp("classifier")
    net = export_nets.randomized(export_nets.classifier(classes=4), seed=2)
    save(net, d / "cls.pth")
    (d / "labels.txt").write_text("\n".join(export_nets.CLASSIFY_LABELS) + "\n")
    proc = worker(
        d,
        "export",
        "--factory",
        "export_nets:classifier",
        "--factory-kwargs",
        '{"classes": 4}',
        "--weights",
        "cls.pth",
        "--input-shape",
        "1,3,48,48",
        "--labels",
        "labels.txt",
        "--color-order",
        "bgr",
        "--scale",
        "1/255",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
        "--resize",
        "letterbox",
        "--output",
        "exported/cls.onnx",
    )
    assert proc.returncode == 0, proc.stderr
    return Exported(
        d, d / "exported/cls.onnx", d / "cls.pth", net, json.loads(proc.stdout), proc.stderr
    )


def _dims(value: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_segmenter_is_checked_verified_and_carded(segmenter: Exported) -> None:
    onnx.checker.check_model(str(segmenter.model), full_check=True)
    proto = onnx.load(str(segmenter.model))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert proto.producer_name == "pytorch"
    assert [i.name for i in proto.graph.input] == ["image"]
    assert _dims(proto.graph.input[0]) == ["batch", 3, "height", "width"]
    assert [o.name for o in proto.graph.output] == ["output"]  # "aux" is left out
    assert _dims(proto.graph.output[0]) == ["batch", 3, "out_height", "out_width"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["factory"] == "export_nets:segmenter"
    assert meta["weights_sha256"] == hashlib.sha256(segmenter.weights.read_bytes()).hexdigest()

    card = json.loads(segmenter.model.with_suffix(".json").read_text())
    assert card == {
        "task": "segment",
        "labels": list(export_nets.SEGMENT_LABELS),
        "color_order": "rgb",
        "scale": 1 / 255,
        **IMAGENET,
        "resize": "stretch",
        "input_size": [64, 64],  # the graph's height and width are dynamic
    }

    r = segmenter.report
    assert r["opset"] == 17 and r["producer"].startswith("pytorch ")
    assert r["weights_found_in"] == "['state_dict']"
    assert r["weights_prefixes_stripped"] == ["module."]
    assert r["output_selected"] == "['out']"
    assert r["input"] == "image[batch,3,height,width]"
    checks = r["verification"]
    assert [(c["inputs"], c["shape"], c["images"]) for c in checks] == [
        ("random", [1, 3, 64, 64], 1),
        ("random", [2, 3, 64, 64], 2),  # the dynamic batch
        ("random", [1, 3, 128, 128], 1),  # the dynamic height and width
        ("samples", [1, 3, 64, 64], 2),  # preprocessed as the card says
    ]
    assert (r["rtol"], r["atol"], r["min_agreement"]) == (1e-3, 1e-5, 0.99)
    assert all(c["within_tolerance"] and c["max_abs_diff"] <= 1e-3 for c in checks)
    assert all(c["min_class_iou"] >= 0.99 for c in checks)
    assert all(c["mask_agreement"] >= 0.999 for c in checks)
    assert segmenter.stderr == ""  # no warnings
    assert sorted(p.name for p in segmenter.model.parent.iterdir()) == ["seg.json", "seg.onnx"]


def test_classifier_card_carries_the_preprocessing_flags(classifier: Exported) -> None:
    onnx.checker.check_model(str(classifier.model), full_check=True)
    proto = onnx.load(str(classifier.model))
    assert _dims(proto.graph.input[0]) == ["batch", 3, 48, 48]  # only the batch is dynamic
    card = json.loads(classifier.model.with_suffix(".json").read_text())
    assert card == {
        "task": "classify",
        "labels": list(export_nets.CLASSIFY_LABELS),
        "color_order": "bgr",
        "scale": 1 / 255,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "resize": "letterbox",
    }
    r = classifier.report
    assert r["weights_found_in"] == "the file" and r["weights_prefixes_stripped"] == []
    assert [c["shape"] for c in r["verification"]] == [[1, 3, 48, 48], [2, 3, 48, 48]]
    assert all(c["max_abs_diff"] <= 1e-3 and c["top1_agreement"] == 1.0 for c in r["verification"])
    assert classifier.stderr == ""


# --------------------------------------------- worker run answers like PyTorch, no flags


def _run(exported: Exported, tmp_path: Path) -> tuple[list[dict[str, Any]], list[Frame]]:
    video = make_video(tmp_path / "clip.mp4", frames=8, width=96, height=72)
    proc = worker(tmp_path, "run", "--input", "clip.mp4", "--model", str(exported.model))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    task = summary["task"]
    frames = [
        Frame(index=i, pts=None, time=t, image=image) for i, (t, image) in enumerate(decode(video))
    ]
    return jsonl(tmp_path / f"clip.{task}.jsonl"), frames


def test_worker_run_with_exported_segmenter_matches_pytorch(
    segmenter: Exported, tmp_path: Path
) -> None:
    records, frames = _run(segmenter, tmp_path)
    model = load_model(segmenter.model, provider="cpu")  # graph + the card beside it
    x = preprocess([f.image for f in frames], plan_for(model))
    maps, _ = segment(torch_outputs(segmenter.net, x), model.kind, model.activation, 0.5)
    recorder = Recorder(model, None)  # maps the mask onto the frame as the worker does
    expected = [recorder.record(f, Answer(class_map=m)) for f, m in zip(frames, maps, strict=True)]
    assert len(records) == len(expected) == 8
    pixel = 1 / (96 * 72)
    for got, want in zip(records, expected, strict=True):
        assert got["frame"] == want["frame"]
        assert set(got["coverage"]) == set(want["coverage"]), (got, want)
        for label, share in want["coverage"].items():
            assert abs(got["coverage"][label] - share) <= 2 * pixel, (got, want)
    # The answers depend on the pixels: a test where every frame looked alike could not fail.
    assert len({json.dumps(r["coverage"]) for r in records}) > 1


def test_worker_run_with_exported_classifier_matches_pytorch(
    classifier: Exported, tmp_path: Path
) -> None:
    records, frames = _run(classifier, tmp_path)
    model = load_model(classifier.model, provider="cpu")
    x = preprocess([f.image for f in frames], plan_for(model))
    logits = torch_outputs(classifier.net, x)
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    assert len(records) == len(probs) == 8
    for got, p in zip(records, probs, strict=True):
        best = int(np.argmax(p))
        assert got["top"][0]["label"] == export_nets.CLASSIFY_LABELS[best]
        for entry in got["top"]:
            assert abs(entry["score"] - float(p[entry["index"]])) < 1e-4, (got, p)


def test_an_exported_model_describes_itself_without_its_card(
    classifier: Exported, tmp_path: Path
) -> None:
    # Its card (bgr, letterbox, its own mean and std, labels) travels in the model's metadata
    # too: the model file alone gives the same answers as with its card beside it.
    import shutil

    with_card, alone = tmp_path / "with", tmp_path / "alone"
    for d in (with_card, alone):
        d.mkdir()
        shutil.copy(classifier.model, d / "m.onnx")
        make_video(d / "clip.mp4", frames=8, width=96, height=72)
    shutil.copy(classifier.model.with_suffix(".json"), with_card / "m.json")
    outs = []
    for d in (with_card, alone):
        proc = worker(d, "run", "--input", "clip.mp4", "--model", "m.onnx")
        assert proc.returncode == 0, proc.stderr
        outs.append((d / "clip.classify.jsonl").read_text())
    assert outs[0] == outs[1]
    assert json.loads(outs[1].splitlines()[0])["top"][0]["label"] in export_nets.CLASSIFY_LABELS

    proc = worker(alone, "inspect", "m.onnx")
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["card"] is None
    assert seen["effective_card"]["color_order"] == "bgr"
    assert seen["effective_card"]["resize"] == "letterbox"
    sources = seen["card_sources"]
    assert sources["labels"] == sources["mean"] == "model metadata"
    assert sources["threshold"] == "default"
    # A card file still wins, field by field; the rest still comes from the metadata.
    (alone / "m.json").write_text(json.dumps({"labels": ["a", "b", "c", "d"]}))
    seen = json.loads(worker(alone, "inspect", "m.onnx").stdout)
    assert seen["effective_card"]["labels"] == ["a", "b", "c", "d"]
    assert seen["card_sources"]["labels"] == "card file"
    assert seen["card_sources"]["mean"] == "model metadata"
    assert seen["effective_card"]["mean"] == [0.5, 0.5, 0.5]


def test_antialias_interpolation_is_torchvision_s_resize() -> None:
    # torchvision's Resize antialiases by default; cv2's linear resize does not: a model
    # trained on one and fed the other sees other pixels.
    import torch.nn.functional as F

    from factory import detailed
    from worker.ops.preprocess import resize_antialias

    frame = detailed(3, 1280, 720)
    t = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    for hw in ((512, 512), (224, 224), (360, 640)):
        want = F.interpolate(t, size=hw, mode="bilinear", antialias=True, align_corners=False)
        want_u8 = want.round().clamp(0, 255)[0].permute(1, 2, 0).numpy().astype(np.int16)
        got = resize_antialias(frame, hw).astype(np.int16)
        assert np.abs(got - want_u8).max() <= 1, hw  # rounding only
        linear = cv2.resize(frame, hw[::-1], interpolation=cv2.INTER_LINEAR).astype(np.int16)
        assert np.abs(linear - want_u8).max() > 20, hw  # what the card field is for


def test_export_records_the_interpolation_the_model_was_trained_with(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    weights = save(export_nets.randomized(export_nets.classifier(), 5), tmp_path / "w.pth")
    args = export_args(weights, "classifier", "--interpolation", "antialias")
    code, _, err = outcome(cli(args, capfd))
    assert code == 0, err
    card_file = card_path_for(tmp_path / "out" / "model.onnx")
    assert json.loads(card_file.read_text())["interpolation"] == "antialias"
    card_file.unlink()  # the metadata says it too
    model = load_model(tmp_path / "out" / "model.onnx", provider="cpu")
    assert model.interpolation == "antialias"
    assert model.card_sources["interpolation"] == "model metadata"


@pytest.mark.parametrize(
    ("flags", "weights"),
    [
        ({"avx2", "fma"}, "uint8"),  # AMD EPYC (Zen 2/3), Intel before Cascade Lake
        ({"avx2", "avx512f", "avx512_vnni"}, "int8"),
        ({"avx2", "avx_vnni"}, "int8"),  # Alder Lake and later
        (set(), "uint8"),  # not Linux, or not x86
    ],
)
def test_int8_weights_only_where_the_cpu_sums_their_products_in_32_bits(
    flags: set[str], weights: str
) -> None:
    assert int8_weights(frozenset(flags)) == weights


@pytest.mark.parametrize(
    ("flags", "precision", "ops"),
    [
        (["--half"], "float16", {"Cast"}),
        (["--quantize", "int8"], "int8", {"QuantizeLinear", "DequantizeLinear"}),
    ],
)
def test_half_and_int8_exports_answer_like_float32(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    flags: list[str],
    precision: str,
    ops: set[str],
) -> None:
    from factory import detailed

    weights = save(export_nets.randomized(export_nets.segmenter(), 3), tmp_path / "w.pth")
    (tmp_path / "samples").mkdir()
    for i in range(6):
        cv2.imwrite(str(tmp_path / "samples" / f"{i}.png"), detailed(i, 160, 120))
    args = export_args(weights, "segmenter", "--samples", str(tmp_path / "samples"), *flags)
    code, out, err = outcome(cli(args, capfd))
    assert code == 0, err
    r = json.loads(out)
    assert r["precision"] == precision
    reduced = r["reduced_precision"]
    samples = [c for c in reduced["verification"] if c["inputs"] == "samples"]
    assert samples and samples[0]["mask_agreement"] >= 0.99
    proto = onnx.load(str(tmp_path / "out" / "model.onnx"))
    assert ops <= {n.op_type for n in proto.graph.node}
    # Inputs and outputs stay float32: the worker's fused graph wraps it as before.
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    if precision == "float16":
        kinds = {t.data_type for t in proto.graph.initializer}
        assert onnx.TensorProto.FLOAT16 in kinds
        assert reduced["bytes"] < reduced["float32_bytes"]
    else:
        # The weights' type is this CPU's (int8 saturates without VNNI): the weights'
        # dequantization takes integer initializers of that type (biases: int32).
        want = int8_weights(cpu_flags())
        assert reduced["weights"].startswith(want)
        inits = {t.name: t.data_type for t in proto.graph.initializer}
        weight_types = {
            inits[n.input[0]]
            for n in proto.graph.node
            if n.op_type == "DequantizeLinear" and n.input[0] in inits
        }
        int8, uint8, int32 = onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT32
        assert weight_types - {int32} == {int8 if want == "int8" else uint8}
    assert any(p.key == "video_worker.card" for p in proto.metadata_props)
    video = make_video(tmp_path / "clip.mp4", frames=6, width=96, height=72)
    proc = worker(tmp_path, "run", "--input", video.name, "--model", "out/model.onnx")
    assert proc.returncode == 0, proc.stderr


def test_channels_last_input_is_exported_as_nhwc(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    weights = save(export_nets.randomized(export_nets.channels_last(), 4), tmp_path / "w.pth")
    args = export_args(weights, "channels_last", "--dynamic", "batch,height,width")
    args[args.index("1,3,32,32")] = "1,32,32,3"
    code, out, err = outcome(cli(args, capfd))
    assert code == 0, err
    report = json.loads(out)
    assert report["input"] == "image[batch,height,width,3]"
    assert [c["shape"] for c in report["verification"]] == [
        [1, 32, 32, 3],
        [2, 32, 32, 3],
        [1, 64, 64, 3],
    ]
    model = load_model(tmp_path / "out/model.onnx", provider="cpu")
    assert (model.graph.layout, model.input_hw, model.task) == ("NHWC", (32, 32), "classify")


# ------------------------------------------------------------------------------- refusals


def test_without_torch_one_line_names_the_install_hint(tmp_path: Path) -> None:
    # A core install has no torch: export must say how to get it, before reading anything.
    block = "import sys; sys.modules['torch'] = None; from worker.cli import main; sys.exit(main())"
    proc = worker(
        tmp_path,
        *export_args(tmp_path / "missing.pth", "classifier"),
        prefix=(sys.executable, "-c", block),
    )
    one_error(proc, "PyTorch", "pip install '.[export]'")


def outcome(proc: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
    return proc.returncode, proc.stdout, proc.stderr


def cli(args: list[str], capfd: pytest.CaptureFixture[str]) -> subprocess.CompletedProcess[str]:
    """``worker *args`` run in this process, as the command would end."""
    code = main(args)
    out, err = capfd.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


@pytest.mark.parametrize(
    ("factory", "needles"),
    [
        ("no_such_pkg.nets:build", ["cannot import module 'no_such_pkg.nets'", "'no_such_pkg'"]),
        ("export_nets:nope", ["module 'export_nets' has no attribute 'nope'"]),
        ("export_nets.classifier", ["expected module:function"]),
        ("export_nets:broken_factory", ["raised RuntimeError: cannot build"]),
        ("export_nets:SEGMENT_LABELS", ["not a function or class"]),
        ("worker.unet:build", ["'worker' is also the name of one of this tool's own packages"]),
        ("broken_module:build", ["importing module 'broken_module' failed", "not_installed_dep"]),
    ],
)
def test_factory_that_cannot_be_used_is_named(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], factory: str, needles: list[str]
) -> None:
    # A module in the working directory is found (as with python -m), and its own failure shown.
    (tmp_path / "broken_module.py").write_text("import not_installed_dep\n")
    args = export_args(tmp_path / "w.pth", "classifier")
    args[2] = factory
    one_error(cli(args, capfd), f"--factory '{factory}'", *needles)
    assert not (tmp_path / "out").exists()


def test_weights_that_do_not_match_list_missing_unexpected_and_reshaped_keys(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    state = export_nets.classifier().state_dict()
    del state["head.bias"]
    state["head.extra"] = torch.zeros(2)
    state["head.weight"] = torch.zeros(5, 16)
    torch.save({"model": state}, tmp_path / "w.pth")
    one_error(
        cli(export_args(tmp_path / "w.pth", "classifier"), capfd),
        "do not match the model from 'export_nets:classifier'",
        "missing 1 key: head.bias",
        "unexpected 1 key: head.extra",
        "head.weight [5, 16] in the file vs [4, 16] in the model",
    )


def test_checkpoint_forms_are_unwrapped(tmp_path: Path) -> None:
    net = export_nets.randomized(export_nets.classifier(), seed=3)
    state = net.state_dict()
    # torch.compile inside DDP, nested wrappers, an old BatchNorm without its step counter.
    odd = {f"module._orig_mod.{k}": v for k, v in state.items() if "num_batches" not in k}
    torch.save({"model": {"state_dict": odd}, "optimizer": {"lr": 0.1}}, tmp_path / "a.pth")
    fresh = export_nets.classifier()
    report = load_weights(fresh, tmp_path / "a.pth", spec="export_nets:classifier")
    assert report.source == "['model']['state_dict']"
    assert report.stripped == ("module.", "_orig_mod.")
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())

    # Objects beyond tensors need an explicit opt-in: unpickling them runs code.
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=0.1)}, tmp_path / "b.pth")
    with pytest.raises(ExportError, match="--trust-weights"):
        read_state_dict(tmp_path / "b.pth")
    trusted, where = read_state_dict(tmp_path / "b.pth", trust=True)
    assert where == "['state_dict']" and trusted.keys() == state.keys()

    torch.save({"epoch": 3}, tmp_path / "c.pth")
    with pytest.raises(ExportError, match="no state dict found"):
        read_state_dict(tmp_path / "c.pth")


def test_operator_missing_at_the_opset_is_named_with_the_opset_that_has_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # grid_sample is ONNX GridSample, which exists from opset 16 on.
    weights = save(export_nets.resampler(), tmp_path / "w.pth")
    args = export_args(weights, "resampler", "--opset", "15")
    # stdout empty too: the exporter's own dump of the graph must not get through.
    one_error(cli(args, capfd), "operator 'aten::grid_sampler'", "opset 15", "--opset 16")
    assert not (tmp_path / "out").exists()
    # ... and the suggestion is right.
    code, out, err = outcome(cli(export_args(weights, "resampler", "--opset", "16"), capfd))
    assert code == 0, err
    assert json.loads(out)["opset"] == 16


@pytest.mark.parametrize(
    ("factory", "needle"),
    [
        ("stuck_in_training", "features.0.1 (BatchNorm2d)"),  # train() forces it back on
        ("always_dropout", "two runs on the same input differ"),
        ("batch_statistics", "another sample beside it in the batch"),
    ],
)
def test_model_left_in_training_mode_is_refused(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], factory: str, needle: str
) -> None:
    weights = save(getattr(export_nets, factory)(), tmp_path / "w.pth")
    one_error(cli(export_args(weights, factory), capfd), "model left in training mode", needle)
    assert not (tmp_path / "out").exists()


def test_an_eval_mode_model_with_huge_logits_is_judged_relative_to_them(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Before: its logits reach ~3e4 on noise, a batch of 2 rounds differently from a batch of
    # 1 by ~1e-2 in float32 (0 in float64), and the absolute tolerance of 1e-3 called that
    # "left in training mode"; ONNX Runtime vs PyTorch differ by as much, relatively ~1e-7.
    weights = save(export_nets.high_logits(), tmp_path / "w.pth")
    for dynamic in ("batch", "none"):
        code, out, err = outcome(
            cli(export_args(weights, "high_logits", "--dynamic", dynamic), capfd)
        )
        assert code == 0, err
        checks = json.loads(out)["verification"]
        assert all(c["within_tolerance"] and c["mask_agreement"] == 1.0 for c in checks)
        assert max(c["max_abs_diff"] for c in checks) > 1e-3  # what the old check refused
    # --tolerance, the old flag, still works: it is the absolute part now.
    code, out, err = outcome(cli(export_args(weights, "high_logits", "--tolerance", "2e-5"), capfd))
    assert code == 0, err
    assert (json.loads(out)["atol"], json.loads(out)["rtol"]) == (2e-5, 1e-3)


def test_answers_on_the_samples_are_the_verdict(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # Python control flow on pixel values: noise takes the traced branch, bright images the
    # other. The answers on the samples disagree: refused below --min-agreement, and the
    # message does not blame shapes (none differed).
    weights = save(export_nets.value_branch(), tmp_path / "w.pth")
    (tmp_path / "bright").mkdir()
    for i in range(3):
        cv2.imwrite(str(tmp_path / "bright" / f"{i}.png"), np.full((40, 40, 3), 250, np.uint8))
    args = export_args(weights, "value_branch", "--samples", str(tmp_path / "bright"))
    line = one_error(
        cli(args, capfd),
        "verification failed",
        "on samples inputs",
        "top1 agreement 0.0%",
        "below --min-agreement 0.99",
    )
    assert "control flow on shapes" not in line
    assert list((tmp_path / "out").iterdir()) == []
    # Noise alone (no samples) cannot see it: the export passes, as it must.
    code, _, err = outcome(cli(export_args(weights, "value_branch"), capfd))
    assert code == 0, err


def test_disagreement_above_tolerance_fails_and_writes_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # forward() branches on the width in Python: the trace keeps the export-size branch, so
    # the graph is wrong at the doubled size the dynamic height/width are verified at.
    weights = save(export_nets.shape_branch(), tmp_path / "w.pth")
    args = export_args(weights, "shape_branch", "--dynamic", "batch,height,width")
    args[args.index("1,3,32,32")] = "1,3,64,64"
    one_error(
        cli(args, capfd),
        "verification failed",
        "beyond --rtol 0.001 --atol 1e-05",
        "shaped [1, 3, 128, 128]",
        "agrees at the traced --input-shape [1, 3, 64, 64]",
        "control flow on shapes",
        "TracerWarning",
    )
    assert list((tmp_path / "out").iterdir()) == []  # not even a .part


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--input-shape", "1,3,32"], ["--input-shape '1,3,32'", "4 sizes"]),
        (["--input-shape", "1,4,32,32"], ["3 colour channels"]),
        # Before: MemoryError, "unexpected" and exit 1, after a 100000x100000 tensor was tried.
        (["--input-shape", "1,3,100000,100000"], ["--input-shape 1,3,100000,100000", "8192"]),
        (["--dynamic", "batch,depth"], ["--dynamic depth"]),
        (["--opset", "30"], ["--opset 30", "opsets 9 to 20"]),
        (["--output", "model.json"], ["ending in .onnx"]),
        (["--std", "0,1,1"], ["--std", "must not contain 0"]),
        (["--mean", "1,2"], ["--mean '1,2'"]),
        (["--factory-kwargs", "[1]"], ["--factory-kwargs", "JSON object"]),
        (["--labels", "three.txt"], ["--labels: 3 labels", "has 4 classes"]),
        (["--task", "segment"], ["--task segment needs"]),
        (["--samples", "empty"], ["--samples 'empty': no images"]),
        (["--samples", "garbage"], ["cannot read image", "x.png"]),
        (["--quantize", "int8"], ["--quantize int8 needs --samples"]),
        (["--rtol", "-1"], ["--rtol -1", "0 or more"]),
        (["--min-agreement", "1.5"], ["--min-agreement 1.5", "at most 1"]),
    ],
)
def test_bad_request_is_one_error_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], extra: list[str], needles: list[str]
) -> None:
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "x.png").write_bytes(b"not a png")
    args = export_args(save(export_nets.classifier(), tmp_path / "w.pth"), "classifier")
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    one_error(cli(args, capfd), *needles)
    assert not (tmp_path / "out").exists()
