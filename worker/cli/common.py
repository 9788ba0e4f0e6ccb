"""What several commands do with their settings: load the model they name, and decide who may
see their pages."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from worker.errors import SettingsError
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.models import Model
    from worker.web.auth import Auth

__all__ = ["configured_model", "overrides_source", "pages_auth"]


def overrides_source(s: Settings) -> str:
    """Where the settings' card overrides came from, for errors."""
    if s.pipeline is not None:
        return f"pipeline '{s.pipeline}': [card]"
    return "setting WORKER_CARD_OVERRIDES"


def configured_model(s: Settings, *, live: bool = False) -> Model:
    """The model the settings name (a repository name or a path; the demo model for the task
    if none), loaded with the settings' card overrides."""
    from worker.models import demo_model_path, fused_cache, load_model, resolve_model

    path = resolve_model(s.model, s.model_root) if s.model else demo_model_path(s.task or "segment")
    return load_model(
        path,
        card=s.card,
        overrides=s.card_overrides,
        overrides_from=overrides_source(s),
        task=s.task,
        provider=s.provider,
        threads=s.threads,
        lanes=s.lanes_on("cpu", live=live),
        cache_dir=fused_cache.cache_dir_for(s),
    )


def _loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything; "": every interface


def pages_auth(s: Settings, host: str, where: str) -> Auth | None:
    """The login the pages listening on ``host`` ask for: the configured one, if any; none on
    loopback; beyond it, none configured is refused (``SettingsError`` saying how to set one)."""
    from worker.web.auth import Auth

    stored = s.ui_password_hash.get_secret_value() if s.ui_password_hash else None
    if stored is None and s.ui_password_hash_file is not None:
        try:
            stored = s.ui_password_hash_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise SettingsError(
                f"setting WORKER_UI_PASSWORD_HASH_FILE '{s.ui_password_hash_file}': cannot "
                f"read it ({getattr(e, 'strerror', None) or e})"
            ) from None
    if stored is not None:
        return Auth(s.ui_user, stored, session_s=s.ui_session_hours * 3600)
    if _loopback(host):
        return None
    shown = f"[{host}]" if ":" in host else host or "every interface"
    raise SettingsError(
        f"the pages would be open to anyone on {shown} ({where}): set a login with "
        "WORKER_UI_PASSWORD_HASH=$(worker password), or listen on 127.0.0.1, or turn the "
        "pages off (WORKER_UI=false)"
    )
