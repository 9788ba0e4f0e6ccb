"""Settings: CLI > environment > .env > defaults, unknown entries refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.errors import SettingsError
from worker.settings import Settings, load_settings


def test_defaults() -> None:
    s = load_settings()
    assert (s.provider, s.batch, s.alpha, s.quiet, s.max_frames) == ("auto", 0, 0.5, False, None)


def test_precedence_cli_over_env_over_dotenv(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("WORKER_ALPHA=0.1\nWORKER_BATCH=3\nWORKER_CRF=30\n")
    assert (load_settings().alpha, load_settings().batch) == (0.1, 3)
    monkeypatch.setenv("WORKER_ALPHA", "0.2")
    s = load_settings()
    assert (s.alpha, s.batch, s.crf) == (0.2, 3, 30)
    s = load_settings(alpha=0.3, batch=None)  # None: the flag was not given
    assert (s.alpha, s.batch) == (0.3, 3)


def test_errors_name_the_source(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match="--alpha"):
        load_settings(alpha=2.0)
    monkeypatch.setenv("WORKER_BATCH", "lots")
    with pytest.raises(SettingsError, match="WORKER_BATCH"):
        load_settings()


def test_unknown_dotenv_entry_is_refused() -> None:
    Path(".env").write_text("WORKER_ALHPA=0.1\n")
    with pytest.raises(SettingsError, match=r"(?i)alhpa"):
        load_settings()


def test_extra_forbidden_on_init() -> None:
    with pytest.raises(SettingsError):
        load_settings(colour="red")
    assert Settings.model_config.get("extra") == "forbid"
