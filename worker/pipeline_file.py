"""Pipeline files: one TOML file that describes a whole job or camera setup.

A pipeline file holds settings by their names (the same names as ``WORKER_<NAME>`` without
the prefix, in lower case), read once by ``worker.settings.load_settings`` and given to the
settings as one of their sources, so it is validated exactly like flags and the environment
(``extra="forbid"``: an unknown key is an error). Three tables read better than flat keys::

    model = "demo-segment"
    record = "recordings"

    [card]                      # overrides of the model's card, field by field
    threshold = 0.4

    [cameras]                   # name = URL; credentials only by reference: ${VAR}
    door = "rtsp://${DOOR_USER}:${DOOR_PASSWORD}@10.0.0.5/stream"

    [camera_options.door]       # how this camera differs from the others
    every = 2

``${NAME}`` in any string is replaced by the environment variable ``NAME``, ``${NAME:-text}``
by ``text`` when it is unset or empty (as in a shell or a compose file), and ``$${`` writes a
literal ``${``; a variable that is not set (and has no default) is an error naming the file
and the key. A password written into a URL in the file is refused, and so is a default for
one: files get committed and shared, the environment (or a secret store behind it) is where
credentials belong. The rule covers every URL in the file, its query too (``?password=``).

Paths in a pipeline file are relative to the working directory, as on the command line.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from worker.errors import SettingsError
from worker.urls import secret_query

__all__ = ["read_pipeline"]

_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_USERINFO = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)@")
_URLISH = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _where(path: Path) -> str:
    return f"pipeline '{path}'"


def _check_no_literal_password(path: Path, key: str, raw: str) -> None:
    """Any URL in the file (a camera, the webhook, Redis, a job's input): a password in its
    user info, or a query value named like a secret (``?password=``, ``?token=``), only by
    reference (``${VAR}``, without a default)."""
    m = _USERINFO.match(raw)
    if m is not None and ":" in m.group(1):
        password = m.group(1).split(":", 1)[1]
        if _REF.sub("", password) or ":-" in password:
            raise SettingsError(
                f"{_where(path)}: key '{key}': the URL has a password written in the file; "
                "put it in the environment and write ${VARIABLE} in its place"
            )
    query = raw.split("#", 1)[0].partition("?")[2]
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if secret_query(f"?{name}") and (_REF.sub("", value) or ":-" in value):
            raise SettingsError(
                f"{_where(path)}: key '{key}': the URL's '{name}' is written in the file; put "
                "it in the environment and write ${VARIABLE} in its place"
            )


def _expand(path: Path, key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _expand(path, f"{key}.{k}" if key else str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(path, f"{key}[{i}]", v) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    if _URLISH.match(value):
        _check_no_literal_password(path, key, value)

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        if default is not None:
            return os.environ.get(name) or default
        if name not in os.environ:
            raise SettingsError(
                f"{_where(path)}: key '{key}': environment variable {name} is not set"
            )
        return os.environ[name]

    return _REF.sub(sub, value)


def read_pipeline(path: Path) -> dict[str, Any]:
    """The file's settings, references expanded and the ``[card]`` table renamed to the
    ``card_overrides`` setting; errors name the file and say what was expected."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SettingsError(f"{_where(path)}: no such file") from None
    except IsADirectoryError:
        raise SettingsError(f"{_where(path)}: is a folder; expected a .toml file") from None
    except OSError as e:
        raise SettingsError(f"{_where(path)}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise SettingsError(f"{_where(path)}: not UTF-8 text; expected a TOML file") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{_where(path)}: not valid TOML ({e})") from None
    except RecursionError:
        raise SettingsError(f"{_where(path)}: nested too deeply to be settings") from None
    data = dict(_expand(path, "", data))
    card = data.get("card")
    if isinstance(card, dict):
        data["card_overrides"] = data.pop("card")
    return data
