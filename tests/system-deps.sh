#!/usr/bin/env bash
# System packages the tests need beyond pip: redis-server (queue tests start their own) and
# GStreamer's RTSP server with Debian's python3-gi (monitor tests run real RTSP cameras), and
# Chromium with its WebDriver (the web pages are tested in a real browser).
# Does nothing when they are already there; else installs them with apt-get (as root, or
# through sudo). Debian/Ubuntu only: elsewhere, install the equivalents and rerun.
set -euo pipefail

PACKAGES=(redis-server python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base
          gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly chromium chromium-driver)

have_all() {
  command -v redis-server >/dev/null 2>&1 || return 1
  [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || return 1
  /usr/bin/python3 - <<'PY' >/dev/null 2>&1 || return 1
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer  # noqa: F401
Gst.init(None)
missing = [e for e in ("videotestsrc", "x264enc", "rtph264pay") if Gst.ElementFactory.find(e) is None]
raise SystemExit(1 if missing else 0)
PY
}

if have_all; then
  echo "system test dependencies: present"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: the tests need: ${PACKAGES[*]} (or their equivalents); apt-get not found" >&2
  exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "error: run as root or install sudo" >&2; exit 1; }
  SUDO=(sudo)
fi
echo "system test dependencies: installing ${PACKAGES[*]}"
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "${PACKAGES[@]}" >/dev/null
have_all || { echo "error: installed, but GStreamer's RTSP server or Chromium is missing" >&2; exit 1; }
echo "system test dependencies: installed"
