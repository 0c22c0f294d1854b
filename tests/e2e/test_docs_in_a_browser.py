"""The Swagger UI page, rendered by a real headless Chromium from our server, with no internet.

Chromium comes from Debian (`.ci/run` installs it when missing); the page's scripts must run
under our Content-Security-Policy and load only from this server, or no operation renders.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import BIN, free_port, running_server, server_env

CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-first-run",
]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is required for the browser tests: apt-get install chromium")
    return found


@pytest.mark.slow
def test_swagger_ui_renders_every_operation_offline(tmp_path: Path) -> None:
    port = free_port()
    argv = [str(BIN / "quantdesk"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with running_server(argv, server_env(VAR_DIR=str(tmp_path / "var")), port):
        rendered = subprocess.run(
            [
                _chromium(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={tmp_path / 'profile'}",
                "--virtual-time-budget=8000",
                "--dump-dom",
                f"http://127.0.0.1:{port}/api/docs",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    dom = rendered.stdout
    paths = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dom))
    assert {"/api/health", "/api/auth/login", "/api/auth/reset-password"} <= paths, dom[-2000:]
    assert "QuantDesk API" in dom
