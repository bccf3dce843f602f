"""The browser harness of the console's tests: Debian's chromium driven by Playwright, and a
real ``qscan web`` process on a loopback port.

Playwright drives the system browser (``/usr/bin/chromium``, scripts/debian-packages.txt); it
never downloads one of its own (no ``playwright install``). A missing browser or Playwright
skips on a developer box and fails in CI (tests/conftest.py's ``require``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("QSCAN_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parent.parent


def playwright_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium per test module (a fixture, through tests/conftest.py); a missing browser
    or Playwright is a failure in CI."""
    from tests.conftest import require

    require("Debian chromium (/usr/bin/chromium)", CHROMIUM.exists())
    require("Playwright for Python (the test extra)", playwright_available())
    with chromium() as b:
        yield b


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Debian chromium under Playwright (the caller checked it is there)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def qscan_web(config: Path, *extra: str) -> Iterator[str]:
    """``qscan -c CONFIG web`` as a real process on a free loopback port: its base URL."""
    port = free_port()
    log = config.parent / f"web-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qscan", "-c", str(config), "web", "--listen", f"127.0.0.1:{port}",
             "--insecure-cookies", *extra],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"qscan web exited {proc.returncode}:\n{log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"qscan web did not listen:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
