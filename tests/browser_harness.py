"""A real browser for the page tests: Debian's Chromium, headless, driven by Selenium through
Debian's chromedriver (``tests/system-deps.sh`` installs both; without them the tests fail
with the install line, never skip). Each browser gets a fresh profile in the test's folder.

Screenshots go to the test's temp folder (CI keeps it); with ``SCREENSHOTS_DIR`` set they are
copied there too (how the README's pictures in ``tests/screens/`` are made).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

__all__ = ["CHROMIUM", "browser", "screenshot"]

CHROMIUM = Path("/usr/bin/chromium")
DRIVER = Path("/usr/bin/chromedriver")
_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # as root there is no sandbox to have
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--window-size=1280,900",
)


@contextmanager
def browser(folder: Path) -> Iterator[Any]:
    for need in (CHROMIUM, DRIVER):
        if not need.exists():
            raise AssertionError(
                f"{need} not found: the browser tests need Debian's chromium and "
                "chromium-driver (bash tests/system-deps.sh installs them)"
            )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in _FLAGS:
        options.add_argument(flag)
    profile = folder / "chromium-profile"
    options.add_argument(f"--user-data-dir={profile}")
    log = folder / "chromedriver.log"
    driver = webdriver.Chrome(service=Service(str(DRIVER), log_output=str(log)), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, path: Path) -> Path:
    driver.save_screenshot(str(path))
    extra = os.environ.get("SCREENSHOTS_DIR")
    if extra:
        shutil.copy(path, Path(extra) / path.name)
    return path
