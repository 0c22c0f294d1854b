"""`python3 dev.py ...`, the two-command set-up: a second run reuses the installed venv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_install_is_a_no_op_when_the_lock_is_unchanged(repo_root: Path) -> None:
    # The suite itself runs from this venv, so the lock is installed: nothing to do.
    result = subprocess.run(
        [sys.executable, str(repo_root / "dev.py"), "install"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo_root,
    )
    assert result.returncode == 0, result.stderr
    assert "installing" not in result.stdout
    assert (repo_root / ".venv" / ".quantdesk-installed").exists()


def test_unknown_command_prints_usage(repo_root: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(repo_root / "dev.py"), "launch-rockets"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "serve" in result.stderr
    assert "test" in result.stderr
