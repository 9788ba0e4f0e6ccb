"""``worker.description``: one run description in sections, each field declared once, and
partial descriptions (a job's options, a camera's overrides) laid over it one way."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.description import (
    PER_INPUT,
    SECTIONS,
    RunDescription,
    check_partial,
    section_of,
)
from worker.errors import SettingsError
from worker.settings import Settings, load_settings


def test_every_field_is_declared_once_and_settings_embed_them_all() -> None:
    names = [f for cls in SECTIONS.values() for f in cls.model_fields]
    assert len(names) == len(set(names))
    for name in names:
        # The setting is the section's own field, default and checks included.
        section = SECTIONS[section_of(name) or ""]
        assert Settings.model_fields[name] is section.model_fields[name] or (
            Settings.model_fields[name].default == section.model_fields[name].default
        )
    s = load_settings(alpha=0.25, every=3, batch=2, record=Path("rec"))
    run = s.run
    assert (run.look.alpha, run.analytics.every, run.speed.batch) == (0.25, 3, 2)
    assert run.live.record == Path("rec")
    assert run.flat() == {n: getattr(s, n) for n in names}


def test_an_overlay_changes_only_what_it_names_and_checks_it() -> None:
    base = RunDescription().overlay({"alpha": 0.2, "crf": 30, "every": 2})
    over = base.overlay(
        {"alpha": 0.7, "zones": [{"name": "door", "points": [(0, 0), (1, 0), (1, 1)]}]}
    )
    assert (over.look.alpha, over.encode.crf, over.analytics.every) == (0.7, 30, 2)
    assert over.analytics.zones[0].name == "door"
    assert base.look.alpha == 0.2  # frozen: the base is as it was
    with pytest.raises(SettingsError, match=r"^alpha: expected a number at most 1.0, got 2"):
        base.overlay({"alpha": 2})
    with pytest.raises(SettingsError, match="unknown option 'alhpa'"):
        base.overlay({"alhpa": 0.3})


def test_a_partial_description_is_per_input_sections_only() -> None:
    assert PER_INPUT == ("look", "encode", "analytics")
    got = check_partial(
        {"alpha": 0.3, "zones": [{"name": "z", "points": [[0, 0], [1, 0], [1, 1]]}]}, "job"
    )
    # JSON-ready, as a job carries it.
    assert got == {
        "alpha": 0.3,
        "zones": [{"name": "z", "points": [[0, 0], [1, 0], [1, 1]], "units": "fraction",
                   "camera": None}],
    }  # fmt: skip
    with pytest.raises(SettingsError, match="job: 'batch' cannot be set here; expected one of"):
        check_partial({"batch": 4}, "job")
    with pytest.raises(SettingsError, match="job: 'colour' is not an option"):
        check_partial({"colour": "red"}, "job")
    with pytest.raises(SettingsError, match="camera 'door': every: expected a number at least 1"):
        check_partial({"every": 0}, "camera 'door'")


def test_a_camera_overrides_the_others_in_a_pipeline_file(tmp_path: Path) -> None:
    f = tmp_path / "cams.toml"
    f.write_text(
        'alpha = 0.4\n[cameras]\ndoor = "rtsp://h/a"\nyard = "rtsp://h/b"\n'
        "[camera_options.door]\nevery = 3\nalpha = 0.9\n"
    )
    s = load_settings(f)
    assert s.camera_options == {"door": {"every": 3, "alpha": 0.9}}
    door = s.run.overlay(s.camera_options["door"])
    assert (door.look.alpha, door.analytics.every) == (0.9, 3)
    assert (s.run.look.alpha, s.run.analytics.every) == (0.4, 1)  # the others
    f.write_text("[camera_options.door]\nbatch = 2\n")
    with pytest.raises(SettingsError, match="camera 'door': 'batch' cannot be set here"):
        load_settings(f)
