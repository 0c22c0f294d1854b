#!/usr/bin/env python3
"""Two-command set-up on a machine with only Python: `python3 dev.py serve`, `python3 dev.py test`.

Standard library only, because it runs before anything is installed. It creates `.venv`,
installs the hash-pinned lock file and the project (editable) once, re-installing only when
`requirements.lock` or `pyproject.toml` change, then hands over to the installed tools.
`python3 dev.py bench` does the same for the benchmarks' own `.venv-bench`
(`requirements-bench.lock`) and runs `benchmarks/engines.py`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".quantdesk-installed"
LOCK_INPUTS = (ROOT / "requirements.lock", ROOT / "pyproject.toml")
# The benchmarks' own venv: the project plus backtrader, backtesting.py and vectorbt.
BENCH_VENV = ROOT / ".venv-bench"
BENCH_LOCK = ROOT / "requirements-bench.lock"

USAGE = """usage: python3 dev.py COMMAND [ARGS...]

  serve [--host H] [--port P]   start the API on the embedded default (SQLite under ./var)
  test [PYTEST ARGS...]          run the whole test suite (needs PostgreSQL and Redis; see README)
  lint                           ruff check, ruff format --check, mypy on engine/ and sandbox/
  install                        only create .venv and install the locked dependencies
  quantdesk ARGS...              run any `quantdesk` CLI command inside the venv
  bench [ARGS...]                engine benchmarks vs backtrader, backtesting.py, vectorbt
                                 (own venv .venv-bench from requirements-bench.lock; ARGS go
                                 to benchmarks/engines.py, e.g. --repeat 5)
"""


def _bin(env: Path) -> Path:
    return env / ("Scripts" if os.name == "nt" else "bin")


def _fingerprint(lock: Path = LOCK_INPUTS[0]) -> str:
    digest = hashlib.sha256()
    for path in (lock, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _hide_from_git(env: Path) -> None:
    """A `*` .gitignore inside the venv (as Python 3.13's venv writes): git, ruff and other
    tools that read .gitignore skip it whatever its name."""
    ignore = env / ".gitignore"
    if env.is_dir() and not ignore.exists():
        ignore.write_text("# created by dev.py\n*\n")


def ensure_installed(env: Path = VENV, lock: Path = LOCK_INPUTS[0]) -> None:
    """Create the venv ``env`` and install the hash-pinned ``lock`` and the project (editable),
    unless the same lock and pyproject.toml are already installed there (a stamp file)."""
    wanted = _fingerprint(lock)
    stamp = env / STAMP.name
    if stamp.exists() and stamp.read_text().strip() == wanted:
        _hide_from_git(env)
        return
    python = _bin(env) / "python"
    if not python.exists():
        print(f"dev.py: creating {env.name}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(env)
    _hide_from_git(env)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "install", "-q"]
    print(f"dev.py: installing {lock.name} into {env.name} (first run takes a minute)", flush=True)
    subprocess.run([*pip, "--require-hashes", "-r", str(lock)], check=True)
    subprocess.run([*pip, "--no-deps", "--no-build-isolation", "-e", str(ROOT)], check=True)
    stamp.write_text(wanted)


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
    if command not in {"serve", "test", "lint", "install", "quantdesk", "bench"}:
        print(USAGE, file=sys.stderr)
        return 2
    if command == "bench":
        ensure_installed(BENCH_VENV, BENCH_LOCK)
        engines = str(ROOT / "benchmarks" / "engines.py")
        return _run([str(_bin(BENCH_VENV) / "python"), engines, *rest])
    ensure_installed()
    if command == "install":
        return 0
    if command == "serve":
        return _run([str(BIN / "quantdesk"), "serve", *rest])
    if command == "quantdesk":
        return _run([str(BIN / "quantdesk"), *rest])
    if command == "lint":
        return lint()
    ensure_test_services()
    return _run([str(BIN / "python"), "-m", "pytest", *rest])


def ensure_test_services() -> None:
    """PostgreSQL, Redis and Chromium for the suite: used when there, else started or installed
    (Debian packages) by the same scripts CI runs; the suite fails, never skips, without them."""
    bash = shutil.which("bash")
    for script in ("ensure-services.sh", "ensure-browser.sh"):
        path = ROOT / ".ci" / script
        if bash is None or not path.exists():
            print(f"dev.py: cannot run .ci/{script} here; the tests need its services", flush=True)
            continue
        if subprocess.call([bash, str(path)], cwd=ROOT):
            sys.exit(f"dev.py: .ci/{script} failed: the test suite needs what it provides")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
