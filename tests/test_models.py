"""The model layer: demo models, palette, cards and what is inferred from graphs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from factory import make_model
from worker.errors import CardError, ModelError
from worker.models import (
    ModelCard,
    build_demo_models,
    builtin_root,
    card_path_for,
    demo_model_path,
    load_card,
    load_model,
    voc_palette,
)


def test_shipped_demo_models_are_what_the_builder_makes(tmp_path: Path) -> None:
    # Rule: the demo models are built by code in this repo, deterministically.
    for built in build_demo_models(tmp_path):
        shipped = builtin_root() / built.relative_to(tmp_path)
        assert shipped.read_bytes() == built.read_bytes(), "rebuild: python -m worker.models"
        card, shipped_card = card_path_for(built), card_path_for(shipped)
        assert shipped_card.read_text() == card.read_text()


def test_demo_segmenter_labels_the_sample_scene() -> None:
    from worker.ops import coverage
    from worker.stages import Inferencer
    from worker.stages.sample import robot_scene

    model = load_model(demo_model_path("segment"), provider="cpu")
    answer = Inferencer(model)([robot_scene(10)])[0]
    assert answer.class_map is not None
    cov = coverage(answer.class_map, model.labels)
    assert cov["sky"] > 0.4 and cov["ground"] > 0.3 and 0.005 < cov["robot"] < 0.1


def test_demo_classifier_names_the_dominant_colour() -> None:
    from worker.stages import Inferencer

    model = load_model(demo_model_path("classify"), provider="cpu")
    red, blue = np.zeros((50, 50, 3), np.uint8), np.zeros((50, 50, 3), np.uint8)
    red[..., 2], blue[..., 0] = 220, 220
    tops = Inferencer(model, top_k=2)([red, blue])
    assert [model.label(t.top[0][0]) for t in tops] == ["red", "blue"]


def test_voc_palette_known_entries() -> None:
    p = voc_palette()
    assert p.shape == (256, 3)
    assert p[0].tolist() == [0, 0, 0]
    assert p[1].tolist() == [128, 0, 0]
    assert p[15].tolist() == [192, 128, 128]  # "person"
    assert len({tuple(c) for c in p}) == 256


def test_inferred_fields_without_a_card(tmp_path: Path) -> None:
    m = load_model(
        make_model(tmp_path / "m.onnx", output="logits", classes=5, batch=2), provider="cpu"
    )
    d = m.describe()
    assert (m.task, m.kind, m.batch, m.input_hw) == ("segment", "multiclass", 2, (32, 32))
    assert m.labels == tuple(f"class_{i}" for i in range(5))
    assert d["dynamic_dims"] == [] and d["layout"] == "NCHW"
    assert d["effective_card"]["background"] == 0 and d["effective_card"]["activation"] == "softmax"


def test_activation_auto_sees_a_final_softmax_or_sigmoid(tmp_path: Path) -> None:
    probs = load_model(make_model(tmp_path / "p.onnx", output="probs"), provider="cpu")
    sig = load_model(make_model(tmp_path / "s.onnx", output="single_sigmoid"), provider="cpu")
    single = load_model(make_model(tmp_path / "r.onnx", output="single"), provider="cpu")
    assert (probs.activation, sig.activation, single.activation) == ("none", "none", "sigmoid")
    assert sig.kind == single.kind == "binary"


def test_multilabel_has_no_background_by_default(tmp_path: Path) -> None:
    m = load_model(
        make_model(tmp_path / "m.onnx", output="multilabel", card={"multi_label": True}),
        provider="cpu",
    )
    assert m.kind == "multilabel" and m.background is None


def test_card_from_beside_the_model_and_explicit(tmp_path: Path) -> None:
    path = make_model(tmp_path / "m.onnx", classes=2, card={"labels": ["road", "car"]})
    assert load_model(path, provider="cpu").labels == ("road", "car")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"labels": ["a", "b"], "colors": [[1, 2, 3]]}))
    m = load_model(path, card=other, provider="cpu")
    assert m.labels == ("a", "b") and m.colors[0].tolist() == [1, 2, 3]
    assert m.colors[1].tolist() == voc_palette()[1].tolist()  # the rest from VOC


def test_card_errors_name_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"labels": ["a"], "colour": [1, 2, 3]}))
    with pytest.raises(CardError, match=r"c\.json.*unknown key 'colour'"):
        load_card(bad)
    bad.write_text(json.dumps({"std": [0, 1, 1]}))
    with pytest.raises(CardError, match="std"):
        load_card(bad)
    assert isinstance(CardError("x"), ValueError)  # the builtin it corresponds to


def test_task_override_must_fit_the_output(tmp_path: Path) -> None:
    path = make_model(tmp_path / "m.onnx", output="logits")
    with pytest.raises(ModelError, match=r"cannot be classified; expected \[N,C\]"):
        load_model(path, task="classify", provider="cpu")


def test_card_model_defaults() -> None:
    c = ModelCard()
    assert (c.color_order, c.resize, c.activation, c.threshold) == ("rgb", "stretch", "auto", 0.5)
    assert c.scale == pytest.approx(1 / 255)


def test_weights_in_external_files_load_and_run(tmp_path: Path) -> None:
    # Rule: models over 2 GB store weights beside the graph; ORT must be given the path.
    import onnx

    from worker.stages import Inferencer

    inline = make_model(tmp_path / "inline.onnx", output="logits", classes=3)
    proto = onnx.load(str(inline))
    path = tmp_path / "ext" / "m.onnx"
    path.parent.mkdir()
    onnx.save(
        proto,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="m.weights",
        size_threshold=0,
    )
    assert (path.parent / "m.weights").is_file()
    frame = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    got = Inferencer(load_model(path, provider="cpu"))([frame])[0].class_map
    want = Inferencer(load_model(inline, provider="cpu"))([frame])[0].class_map
    assert got is not None and want is not None
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("weights", ["int8", "uint8"])
def test_int8_weights_are_read_kept_with_the_facts_and_warned_of_where_they_saturate(
    tmp_path: Path, weights: str, caplog: pytest.LogCaptureFixture
) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from worker.models.cpu import cpu_flags, saturates_int8_weights
    from worker.models.graph import read_graph

    src = make_model(tmp_path / "float.onnx", classes=3, hw=(32, 32))
    batches = [np.random.default_rng(k).random((1, 3, 32, 32), np.float32) for k in range(2)]

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.left = iter(batches)

        def get_next(self) -> dict[str, Any] | None:
            x = next(self.left, None)
            return None if x is None else {"image": x}

    dst = tmp_path / "quantized.onnx"
    quantize_static(
        str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8 if weights == "int8" else QuantType.QUInt8,
    )  # fmt: skip
    int8 = weights == "int8"
    assert read_graph(src).int8_weights is False
    assert read_graph(dst).int8_weights is int8
    cache = tmp_path / "cache"
    assert read_graph(dst, cache).int8_weights is int8  # read, then kept with the facts
    assert list(cache.glob("*.facts"))
    assert read_graph(dst, cache).int8_weights is int8  # from the facts

    with caplog.at_level(logging.WARNING, logger="worker.models.model"):
        load_model(dst, provider="cpu")
    warned = any("without VNNI" in r.getMessage() for r in caplog.records)
    assert warned is (int8 and saturates_int8_weights(cpu_flags()))
