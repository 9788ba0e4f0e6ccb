"""Fetch an http(s) input into a scratch file the worker chose, when the allowlist permits it.

The decoder then reads a local file like any other: FFmpeg never sees the URL, so none of its
other protocols (``concat:``, ``subfile:``, playlists naming local files) can be reached
through a job. Redirects are followed only to allowlisted schemes.
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
import urllib.request
from http.client import HTTPMessage
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import urlsplit

from worker.errors import JobError
from worker.messages import redact
from worker.urls import with_basic_auth

__all__ = ["fetch"]

_CHUNK = 1 << 20
_TIMEOUT_S = 30.0


class _Redirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, schemes: tuple[str, ...]) -> None:
        self.schemes = schemes

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        scheme = urlsplit(newurl).scheme.lower()
        if scheme not in self.schemes:
            raise JobError(
                f"input '{redact(req.full_url)}': redirected to scheme '{scheme}', which is not "
                "allowed"
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch(url: str, *, schemes: tuple[str, ...], max_bytes: int) -> Path:
    """Download ``url`` into a fresh temporary folder; the caller removes ``path.parent``.

    A 4xx answer is bad input (``JobError``: no retry); network errors and 5xx are ``OSError``
    (the job is retried).
    """
    opener = urllib.request.build_opener(_Redirects(schemes))
    folder = Path(tempfile.mkdtemp(prefix="video-worker-input-"))
    name = PurePosixPath(urlsplit(url).path).name or "input"
    path = folder / name
    shown = redact(url)
    # user:password in the URL is sent as HTTP Basic authentication, not as the host.
    target, headers = with_basic_auth(url)
    try:
        try:
            response: Any = opener.open(
                urllib.request.Request(target, headers=headers), timeout=_TIMEOUT_S
            )
        except urllib.error.HTTPError as e:
            if 400 <= e.code < 500:
                raise JobError(f"input '{shown}': HTTP {e.code} {e.reason}") from None
            raise OSError(f"input '{shown}': HTTP {e.code} {e.reason}") from None
        except urllib.error.URLError as e:
            raise OSError(f"input '{shown}': {e.reason}") from None
        with response, path.open("wb") as out:
            got = 0
            while chunk := response.read(_CHUNK):
                got += len(chunk)
                if got > max_bytes:
                    raise JobError(
                        f"input '{shown}': larger than {max_bytes // (1 << 20)} MB "
                        "(WORKER_DOWNLOAD_MAX_MB)"
                    )
                out.write(chunk)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return path
