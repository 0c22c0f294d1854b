#!/usr/bin/env python3
"""Two-command set-up on a machine with only Python: `python3 dev.py serve`, `python3 dev.py test`.

Standard library only, because it runs before anything is installed. It creates `.venv`,
installs the hash-pinned lock file and the project (editable) once, re-installing only when
`requirements.lock` or `pyproject.toml` change, then hands over to the installed tools.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".quantdesk-installed"
LOCK_INPUTS = (ROOT / "requirements.lock", ROOT / "pyproject.toml")

USAGE = """usage: python3 dev.py COMMAND [ARGS...]

  serve [--host H] [--port P]   start the API on the embedded default (SQLite under ./var)
  test [PYTEST ARGS...]          run the whole test suite (needs PostgreSQL and Redis; see README)
  lint                           ruff check, ruff format --check, mypy on engine/ and sandbox/
  install                        only create .venv and install the locked dependencies
  quantdesk ARGS...              run any `quantdesk` CLI command inside the venv
"""


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in LOCK_INPUTS:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_installed() -> None:
    """Create the venv and install the locked set, unless the same set is already there."""
    wanted = _fingerprint()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    if not (BIN / "python").exists():
        print("dev.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    pip = [str(BIN / "python"), "-m", "pip", "--disable-pip-version-check", "install", "-q"]
    print("dev.py: installing locked dependencies (first run takes a minute)", flush=True)
    subprocess.run([*pip, "--require-hashes", "-r", str(ROOT / "requirements.lock")], check=True)
    subprocess.run([*pip, "--no-deps", "--no-build-isolation", "-e", str(ROOT)], check=True)
    STAMP.write_text(wanted)


def _run(argv: list[str]) -> int:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return subprocess.call(argv, cwd=ROOT, env=env)


def lint() -> int:
    steps = [
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "ruff"), "format", "--check", "."],
        [str(BIN / "mypy"), "src/quantdesk"],
    ]
    for step in steps:
        code = _run(step)
        if code:
            return code
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in {"serve", "test", "lint", "install", "quantdesk"}:
        print(USAGE, file=sys.stderr)
        return 2
    ensure_installed()
    if command == "install":
        return 0
    if command == "serve":
        return _run([str(BIN / "quantdesk"), "serve", *rest])
    if command == "quantdesk":
        return _run([str(BIN / "quantdesk"), *rest])
    if command == "lint":
        return lint()
    return _run([str(BIN / "python"), "-m", "pytest", *rest])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
