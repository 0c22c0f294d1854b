"""Private PostgreSQL and Redis servers on free ports, to stop and start in fault tests.

The machine's shared PostgreSQL (5432) and Redis (6379) serve other suites at the same time,
so a test that takes a backend down starts its own: a throwaway PostgreSQL cluster (initdb
into a temporary folder, run by the `postgres` OS user when we are root, as PostgreSQL refuses
to run as root) and a `redis-server` without persistence. Both restart on the same port and,
for PostgreSQL, the same data folder, so what was committed before a stop is there after it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import free_port

HOST = "127.0.0.1"


def _pg_bin() -> Path:
    """The newest /usr/lib/postgresql/*/bin with initdb and pg_ctl (as .ci/ensure-services.sh)."""
    found = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "pg_ctl").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if found and (found[-1] / "initdb").exists():
        return found[-1]
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are required: run .ci/ensure-services.sh")


def _as_postgres(*argv: str) -> list[str]:
    """`argv` run as the postgres OS user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return list(argv)
    return ["runuser", "-u", "postgres", "--", *argv]


def _run_as_postgres(*argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _as_postgres(*argv), cwd="/", capture_output=True, text=True, timeout=timeout
    )


def wait_for_port(port: int, *, up: bool, timeout: float = 30.0) -> None:
    """Until something accepts on 127.0.0.1:`port` (or, with up=False, nothing does)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                accepting = True
        except OSError:
            accepting = False
        if accepting == up:
            return
        assert time.monotonic() < deadline, f"port {port} still {'down' if up else 'up'}"
        time.sleep(0.05)


class PrivatePostgres:
    """A PostgreSQL cluster of its own: `start()`, `stop()`, `url(database)`."""

    def __init__(self, root: Path) -> None:
        self.bin = _pg_bin()
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.log = root / "postgres.log"

    def init(self) -> None:
        self.root.chmod(0o755)
        self.data.mkdir(mode=0o700)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.data, "postgres", "postgres")
        result = _run_as_postgres(
            *(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"),
            *("-E", "UTF8", "--locale=C", "--no-sync"),
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses={HOST} -k {self.data} -c fsync=off "
            "-c full_page_writes=off -c max_connections=60"
        )
        result = _run_as_postgres(
            *(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-w"),
            *("-t", "60", "-l", str(self.log), "start"),
            timeout=90,
        )
        assert result.returncode == 0, result.stdout + result.stderr + self.tail()
        wait_for_port(self.port, up=True)

    def stop(self, mode: str = "fast") -> None:
        """`fast` disconnects every client and shuts down cleanly; `immediate` is a crash."""
        result = _run_as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
        wait_for_port(self.port, up=False)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@{HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        result = subprocess.run(
            [
                *(str(self.bin / "psql"), "-X", "-q", "-h", HOST, "-p", str(self.port)),
                *("-U", "postgres", "-d", "postgres", "-c", f'CREATE DATABASE "{name}"'),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return self.url(name)

    def tail(self) -> str:
        try:
            return self.log.read_text()[-3000:]
        except OSError:
            return ""


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started throwaway cluster, removed afterwards (stopped first if still running)."""
    # Not under pytest's tmp_path: its parents are private to root, the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="quantdesk-faults-pg-"))
    server = PrivatePostgres(root)
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.running():
            pg_ctl = str(server.bin / "pg_ctl")
            _run_as_postgres(
                pg_ctl, "-D", str(server.data), "-m", "immediate", "-w", "stop", timeout=60
            )
        shutil.rmtree(root, ignore_errors=True)


class PrivateRedis:
    """A redis-server of its own. Without `persistent` nothing is on disk, so a restart starts
    empty; with it every write is in an append-only file (fsync always), as docker-compose.yml
    runs Redis, so a restart, even after SIGKILL, starts with what was there."""

    def __init__(self, root: Path, *, persistent: bool = False) -> None:
        self.root = root
        self.persistent = persistent
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None, "already running"
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else []
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", HOST, "--save", ""),
                *("--appendonly", "no", "--dir", str(self.root), "--loglevel", "warning"),
                *aof,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, up=True)

    def stop(self) -> None:
        """Kill the server (SIGKILL: no shutdown, no save, clients see the sockets drop)."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None
        wait_for_port(self.port, up=False)

    def url(self, db: int = 0) -> str:
        return f"redis://{HOST}:{self.port}/{db}"


@contextmanager
def private_redis(root: Path, *, persistent: bool = False) -> Iterator[PrivateRedis]:
    """A started redis-server keeping its files (if any) in `root`, killed afterwards."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is required: run .ci/ensure-services.sh")
    root.mkdir(parents=True, exist_ok=True)
    server = PrivateRedis(root, persistent=persistent)
    server.start()
    try:
        yield server
    finally:
        server.stop()
