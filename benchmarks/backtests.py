"""End-to-end backtest figures through the HTTP API, with real server and worker processes.

Run: ``.venv/bin/python benchmarks/backtests.py [--part single|grid|all] [--runs N]`` (as root:
the sandbox needs namespaces). Two measurements (issue 7, acceptance 8):

- single: the embedded default (``quantdesk serve``: SQLite, in-process executor, the bundled
  sample data), one symbol over ten years (600519.SH 2015-2024, CN A-share rules, CSI 300
  benchmark). Clock: from sending the POST to the first poll (every 10 ms) that reads
  ``finished``. The first run includes starting the sandbox's fork server; each run changes a
  parameter so that no result is reused. Target: within 2 s.
- grid: PostgreSQL and Redis, the same backtest as a 100-combination ``param_grid`` fanned out
  to 2 Celery workers (``quantdesk worker --concurrency 1`` twice). Clock: from the POST to
  the grid's ``finished``. Target: within 30 s. Needs a PostgreSQL server (a scratch database
  is created and dropped) and Redis (one database is flushed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

BIN = Path(sys.executable).parent
STRATEGY = """
PARAMS = {"fast": 10, "slow": 30}

def handle_bar(ctx, data):
    for symbol in ctx.universe:
        close = data.history(symbol, "close", ctx.params["slow"])
        if len(close) < ctx.params["slow"]:
            continue
        if close[-ctx.params["fast"]:].mean() > close.mean():
            ctx.order_target_percent(symbol, 0.95 / len(ctx.universe))
        else:
            ctx.order_target_percent(symbol, 0)
"""
BODY = {
    "symbols": ["600519.SH"],
    "start_date": "2015-01-01",
    "end_date": "2024-12-31",
    "initial_capital": 1_000_000,
}
SINGLE_TARGET_S = 2.0
GRID_TARGET_S = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(**values: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
    return {**keep, "LOG_LEVEL": "WARNING", **values}


class Client:
    """The JSON calls a front end makes, over real HTTP."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.token = ""

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        # Our own server on loopback: the URL is built here, never taken from input.
        request = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, answer = self.call(method, path, body)
        if got != status:
            raise SystemExit(f"{method} {path}: {got} {answer}")
        return answer

    def sign_up(self) -> None:
        account = {"username": "bench", "email": "bench@example.com", "password": "x" * 12}
        self.ok("POST", "/api/auth/register", account, status=201)
        login = {"username": "bench", "password": "x" * 12}
        self.token = self.ok("POST", "/api/auth/login", login)["access_token"]

    def strategy(self) -> int:
        created = self.ok("POST", "/api/strategies", {"name": "sma", "code": STRATEGY}, 201)
        return int(created["id"])

    def wait(self, backtest_id: int, interval: float, timeout: float = 600) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found: dict[str, Any] = self.ok("GET", f"/api/backtests/{backtest_id}")
            if found["status"] in ("finished", "failed", "cancelled"):
                return found
            time.sleep(interval)
        raise SystemExit(f"backtest {backtest_id} did not end within {timeout} s")


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603  (our own console scripts, fixed arguments)
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_for_server(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120  # the first start migrates and loads the sample data
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/api/health", timeout=5):  # noqa: S310
                return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.2)
    raise SystemExit("the server did not start")


@contextmanager
def scratch(keep: str | None) -> Iterator[str]:
    """A folder for VAR_DIR and the logs: `keep` (left in place) or a temporary one."""
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory() as folder:
        yield folder


def single(runs: int, logs: str | None = None) -> bool:
    """The embedded default: one symbol, ten years, POST to finished."""
    print("== single: 600519.SH 2015-2024 on the embedded default (SQLite, in-process) ==")
    with scratch(logs) as folder:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = clean_env(VAR_DIR=str(Path(folder) / "var"))
        argv = [str(BIN / "quantdesk"), "serve", "--port", str(port)]
        log = Path(folder) / "serve.log"
        with process(argv, env, log) as server:
            wait_for_server(base, server, log)
            client = Client(base)
            client.sign_up()
            strategy_id = client.strategy()
            totals = []
            for run in range(runs):
                body = {**BODY, "strategy_id": strategy_id, "params": {"fast": 5 + run}}
                started = time.perf_counter()
                created = client.ok("POST", "/api/backtests", body, status=202)
                answered = time.perf_counter() - started
                done = client.wait(created["id"], interval=0.01)
                total = time.perf_counter() - started
                if done["status"] != "finished":
                    raise SystemExit(f"run {run}: {done['status']}: {done['error']}")
                t = done["timings"]
                totals.append(total)
                print(
                    f"run {run + 1}{' (cold)' if run == 0 else ''}: finished {total:.3f} s after "
                    f"the POST (answered in {answered * 1000:.0f} ms); server: load "
                    f"{t['load_seconds']:.3f} s, sandbox {t['run_seconds']:.3f} s, store "
                    f"{t['store_seconds']:.3f} s; {done['bars_count']} days, "
                    f"{done['summary']['trades_count']} trades"
                )
    warm = totals[1:] or totals
    print(
        f"single: cold {totals[0]:.3f} s, warm median {statistics.median(warm):.3f} s, "
        f"worst {max(totals):.3f} s (target {SINGLE_TARGET_S:.0f} s)"
    )
    return max(totals) <= SINGLE_TARGET_S


def _recreate(database_url: str) -> None:
    url = make_url(database_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()


def _drop(database_url: str) -> None:
    url = make_url(database_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()


def grid(database_url: str, broker_url: str, workers: int, logs: str | None = None) -> bool:
    """PostgreSQL + Redis + `workers` Celery workers: a 100-combination grid."""
    import redis

    print(f"== grid: 10 x 10 combinations of the same backtest, {workers} Celery workers ==")
    _recreate(database_url)
    redis.Redis.from_url(broker_url).flushdb()
    try:
        with scratch(logs) as folder:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            env = clean_env(
                VAR_DIR=str(Path(folder) / "var"),
                DATABASE_URL=database_url,
                CELERY_BROKER_URL=broker_url,
            )
            log = Path(folder) / "serve.log"
            serve = [str(BIN / "quantdesk"), "serve", "--port", str(port)]
            with process(serve, env, log) as server:
                wait_for_server(base, server, log)
                worker = [
                    str(BIN / "quantdesk"),
                    "worker",
                    "--concurrency",
                    "1",
                    "--loglevel",
                    "WARNING",
                ]
                with _workers(worker, env, Path(folder), workers):
                    time.sleep(5)  # the workers import the app and connect
                    client = Client(base)
                    client.sign_up()
                    strategy_id = client.strategy()
                    grid_body = {
                        **BODY,
                        "strategy_id": strategy_id,
                        "param_grid": {"fast": list(range(3, 13)), "slow": list(range(20, 70, 5))},
                    }
                    started = time.perf_counter()
                    created = client.ok("POST", "/api/backtests", grid_body, status=202)
                    answered = time.perf_counter() - started
                    done = client.wait(created["id"], interval=0.1)
                    total = time.perf_counter() - started
                    table = client.ok("GET", f"/api/backtests/{created['id']}/grid")
                    children = [
                        client.ok("GET", f"/api/backtests/{r['backtest_id']}")
                        for r in table["rows"]
                    ]
    finally:
        _drop(database_url)
        redis.Redis.from_url(broker_url).flushdb()
    finished = sum(1 for c in children if c["status"] == "finished")
    runs = [c["timings"]["run_seconds"] for c in children if "run_seconds" in c["timings"]]
    stores = [c["timings"]["store_seconds"] for c in children if "store_seconds" in c["timings"]]
    best = table["rows"][0]
    print(
        f"grid: {len(children)} combinations, {finished} finished, {done['status']} "
        f"{total:.2f} s after the POST (answered in {answered * 1000:.0f} ms); per "
        f"combination: sandbox median {statistics.median(runs):.3f} s, store median "
        f"{statistics.median(stores):.3f} s; best {best['params']} sharpe "
        f"{best['score']:.3f} (target {GRID_TARGET_S:.0f} s)"
    )
    return done["status"] == "finished" and total <= GRID_TARGET_S


@contextmanager
def _workers(argv: list[str], env: dict[str, str], folder: Path, n: int) -> Iterator[None]:
    if n == 0:
        yield
        return
    with process(argv, env, folder / f"worker-{n}.log"), _workers(argv, env, folder, n - 1):
        yield


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["single", "grid", "all"], default="all")
    parser.add_argument("--runs", type=int, default=5, help="single: backtests to time")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/quantdesk_bench_backtests",
        help="grid: a scratch database, created and dropped",
    )
    parser.add_argument(
        "--broker-url", default="redis://127.0.0.1:6379/13", help="grid: a Redis database, flushed"
    )
    parser.add_argument("--logs", help="keep the servers' and workers' logs in this folder")
    args = parser.parse_args()
    ok = True
    if args.part in ("single", "all"):
        ok &= single(args.runs, args.logs and str(Path(args.logs) / "single"))
    if args.part in ("grid", "all"):
        logs = args.logs and str(Path(args.logs) / "grid")
        ok &= grid(args.database_url, args.broker_url, args.workers, logs)
    print("targets met" if ok else "a target was missed")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
