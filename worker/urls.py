"""URLs that may carry credentials (``http://user:secret@host/x.mp4``, ``?password=...``).

- shown anywhere (errors, logs, pages, a job's status) only redacted: ``redact_urls`` finds the
  URLs in a text and redacts each (``worker.messages.redact``);
- sent with the credentials as HTTP Basic authentication, never as part of the host name
  (``with_basic_auth``): Python's ``urllib`` would look ``user:secret@host`` up as a host;
- checked when they are read (``check_http_url``): a malformed URL is refused at start, not
  found out event by event.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote, urlsplit

from worker.errors import SettingsError
from worker.messages import redact

__all__ = ["check_http_url", "redact_urls", "secret_query", "split_userinfo", "with_basic_auth"]

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
#: Query parameters that carry a secret by their name.
_SECRET_PARAMS = re.compile(
    r"^(pass(word)?|passwd|pwd|secret|token|access_token|api_?key|key|auth|signature|sig)$",
    re.IGNORECASE,
)


def redact_urls(text: str) -> str:
    """``text`` with every URL in it redacted: no user, password or query value is left."""
    return _URL.sub(lambda m: redact(m.group(0)), text)


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """(the URL without its user info, user, password), decoded. Everything up to the last
    ``@`` of the authority is user info: passwords hold unescaped ``/``, ``#`` and ``@``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url, None, None
    at = rest.rfind("@")
    slash = min((i for i in (rest.find(m) for m in "/?#") if i >= 0), default=len(rest))
    if at < 0 or (slash < at and ":" not in rest[:slash]):
        return url, None, None  # no user info; an "@" in the path
    info, host = rest[:at], rest[at + 1 :]
    user, _, password = info.partition(":")
    return f"{scheme}://{host}", unquote(user), unquote(password) if _ else None


def with_basic_auth(url: str) -> tuple[str, dict[str, str]]:
    """(the URL to ask, the headers to send): the URL's user info, if any, moved into an
    ``Authorization: Basic`` header."""
    bare, user, password = split_userinfo(url)
    if user is None:
        return url, {}
    token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
    return bare, {"Authorization": f"Basic {token}"}


def secret_query(url: str) -> str | None:
    """The name of a query parameter that carries a secret (``password``, ``token``, ...);
    None if there is none."""
    query = url.split("#", 1)[0].partition("?")[2]
    for part in query.split("&"):
        name = part.split("=", 1)[0]
        if name and _SECRET_PARAMS.match(name):
            return name
    return None


def check_http_url(url: str, what: str = "") -> None:
    """``SettingsError`` (``what: ...`` when given) unless ``url`` is a well-formed http(s) URL
    (a host, a port within 1..65535)."""
    bare, _, _ = split_userinfo(url)
    shown = redact(url)
    where = f"{what}: " if what else ""
    if not bare.lower().startswith(("http://", "https://")):
        raise SettingsError(f"{where}expected an http:// or https:// URL (got '{shown}')")
    try:
        parts = urlsplit(bare)
        port = parts.port
    except ValueError as e:
        raise SettingsError(f"{where}'{shown}' is not a valid URL ({e})") from None
    if not parts.hostname:
        raise SettingsError(f"{where}'{shown}' names no host; expected http(s)://host/path")
    if port is not None and not 0 < port < 65536:
        raise SettingsError(f"{where}'{shown}': port {port} is out of range")
