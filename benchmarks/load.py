"""Load test of the HTTP API on loopback: gunicorn, PostgreSQL, Redis and a Celery worker.

Run: ``.venv/bin/python benchmarks/load.py [--seconds 120] [--clients 8]`` (issue 11, point 4;
as root: backtests run in the sandbox, which needs namespaces). Needs a PostgreSQL server (a
scratch database is created, filled by ``quantdesk init-db`` and ``quantdesk seed-demo``, and
dropped at the end) and Redis (two databases are flushed before and after).

The server is the production arrangement: ``gunicorn -c deploy/gunicorn.conf.py`` with
``--workers 2`` (gthread, 4 threads each) and QUANTDESK_ENV=production, plus one
``quantdesk worker --concurrency 1`` that runs the backtests (CELERY_BROKER_URL set, so the web
processes only enqueue). Rate limits are switched off (RATELIMIT_ENABLED=false, a high
AUTH_RATE_LIMIT) so that the load measures the API, not the limiter.

The driving time (``--seconds``) is split into three phases with the same number of concurrent
clients, each client a thread with its own keep-alive connection:

1. health (a quarter): ``GET /api/health`` only, the bare hello endpoint of the same app;
2. history (a quarter): ``GET /api/data/stocks/600519.SH/history`` only (cached after the first
   call, which is made before the phase starts);
3. mixed (the other half): each client logs in, lists its strategies, reads the history and
   the indicators, and creates a backtest, over and over.

It prints throughput and p50/p99 latency per endpoint and phase, the error count (target: 0)
and the ratio of the history phase's throughput to the health phase's (target: at least 0.5).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
SYMBOL = "600519.SH"
HISTORY = f"/api/data/stocks/{SYMBOL}/history"
INDICATORS = f"/api/data/stocks/{SYMBOL}/indicators?names=sma,macd,rsi"
PASSWORD = "load-test-password"  # noqa: S105  (scratch accounts of a scratch database)
STRATEGY = """
PARAMS = {"fast": 10, "slow": 30}

def handle_bar(ctx, data):
    for symbol in ctx.universe:
        close = data.history(symbol, "close", ctx.params["slow"])
        if len(close) < ctx.params["slow"]:
            continue
        if close[-ctx.params["fast"]:].mean() > close.mean():
            ctx.order_target_percent(symbol, 0.95)
        else:
            ctx.order_target_percent(symbol, 0)
"""
RATIO_TARGET = 0.5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# ---------------------------------------------------------------- HTTP client


# A client opens a new keep-alive connection after this many requests. A connection stays with
# the gunicorn worker that accepted it; kept for a whole phase, eight of them can end up on one
# worker (after the other recycled, say) and leave a core idle: the figures would measure
# accept luck, not the API. Renewing them now and then spreads them over the workers, as many
# users' connections are; the connect costs about 1% of the requests' time.
REQUESTS_PER_CONNECTION = 50


class Client:
    """One simulated user: a keep-alive connection to the loopback server and a token."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.token = ""
        self.conn: http.client.HTTPConnection | None = None
        self.sent = 0

    def _connection(self) -> http.client.HTTPConnection:
        if self.conn is not None and self.sent >= REQUESTS_PER_CONNECTION:
            self.close()
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.sent = 0
        self.sent += 1
        return self.conn

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed an idle keep-alive connection (or recycled a worker):
                # open a new one and send again, once.
                self.close()
                if attempt == 2:
                    raise
                continue
            if response.getheader("Connection", "").lower() == "close":
                self.close()
            return response.status, payload
        raise AssertionError("unreachable")

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        got, payload = self.call(method, path, body)
        if got != status:
            raise SystemExit(f"{method} {path}: {got} {payload[:500]!r}")
        return json.loads(payload or b"null")

    def login(self, username: str) -> tuple[int, bytes]:
        self.token = ""
        status, payload = self.call(
            "POST", "/api/auth/login", {"username": username, "password": PASSWORD}
        )
        if status == 200:
            self.token = json.loads(payload)["access_token"]
        return status, payload


# ---------------------------------------------------------------- measurements


@dataclass
class Stats:
    """Latencies and failures per endpoint, shared by the client threads of one phase."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, name: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.latencies[name].append(seconds)
            if error is not None:
                self.errors[name] += 1
                if len(self.samples) < 10:
                    self.samples.append(f"{name}: {error}")


def timed(stats: Stats, name: str, call: Callable[[], tuple[int, bytes]], expect: int) -> bytes:
    started = time.perf_counter()
    try:
        status, payload = call()
    except OSError as exc:
        stats.record(name, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
        return b""
    error = None if status == expect else f"{status} {payload[:200]!r}"
    stats.record(name, time.perf_counter() - started, error)
    return payload


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]


def run_phase(
    clients: list[Client], seconds: float, step: Callable[[int, Client, Stats], None]
) -> tuple[Stats, float]:
    """Every client calls `step` in a loop until the phase's time is up; (stats, wall time)."""
    stats = Stats()
    stop = threading.Event()
    start = threading.Barrier(len(clients) + 1)

    def loop(index: int, client: Client) -> None:
        start.wait()
        while not stop.is_set():
            step(index, client, stats)

    threads = [
        threading.Thread(target=loop, args=(i, c), daemon=True) for i, c in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    # Requests still in flight when the time was up finish and count; the wall time includes
    # them, so that throughput is completed requests over the time they took.
    return stats, time.perf_counter() - began


# ---------------------------------------------------------------- processes and data


def clean_env(**values: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
    return {**keep, "LOG_LEVEL": "WARNING", **values}


@contextmanager
def process(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603  (our own console scripts, fixed arguments)
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            # The leader only: gunicorn's master stops its workers, and a Celery worker finishes
            # its running task (warm shutdown) rather than losing it with its pool process.
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def run_cli(argv: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(  # noqa: S603  (our own console script, fixed arguments)
        [str(BIN / "quantdesk"), *argv], env=env, cwd=REPO, capture_output=True, timeout=600
    )
    if done.returncode != 0:
        raise SystemExit(f"quantdesk {' '.join(argv)} failed:\n{done.stderr.decode()[-3000:]}")


def wait_for_server(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                pass
            status, _ = Client(port).call("GET", "/api/health")
            if status == 200:
                return
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    raise SystemExit("the server did not start")


@contextmanager
def scratch_database(database_url: str) -> Iterator[None]:
    url = make_url(database_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    drop = text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    with admin.connect() as connection:
        connection.execute(drop)
        connection.execute(text(f'CREATE DATABASE "{url.database}"'))
    try:
        yield
    finally:
        with admin.connect() as connection:
            connection.execute(drop)
        admin.dispose()


@contextmanager
def flushed(*redis_urls: str) -> Iterator[None]:
    import redis

    for url in redis_urls:
        redis.Redis.from_url(url).flushdb()
    try:
        yield
    finally:
        for url in redis_urls:
            redis.Redis.from_url(url).flushdb()


def backtest_counts(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                text("SELECT status, count(*) FROM backtest_tasks GROUP BY status")
            )
            return {str(status): int(n) for status, n in rows}
    finally:
        engine.dispose()


# ---------------------------------------------------------------- the load


def sign_up(port: int, n: int) -> tuple[list[Client], list[str], int]:
    """`n` users, each logged in on its own client; one strategy per user."""
    clients, names = [], []
    strategy_id = 0
    for i in range(n):
        client = Client(port)
        name = f"load{i:03d}"
        account = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
        client.ok("POST", "/api/auth/register", account, status=201)
        status, payload = client.login(name)
        if status != 200:
            raise SystemExit(f"login {name}: {status} {payload[:300]!r}")
        created = client.ok("POST", "/api/strategies", {"name": "sma", "code": STRATEGY}, 201)
        strategy_id = int(created["id"])
        clients.append(client)
        names.append(name)
    return clients, names, strategy_id


def drive(port: int, n: int, seconds: float) -> tuple[list[tuple[str, Stats, float]], int]:
    clients, names, _ = sign_up(port, n)
    strategies: dict[int, int] = {}
    for i, client in enumerate(clients):
        listed = client.ok("GET", "/api/strategies")
        strategies[i] = int(listed["items"][0]["id"])
    # The first history read fills the cache (and the first indicators read, theirs).
    clients[0].ok("GET", HISTORY)
    clients[0].ok("GET", INDICATORS)
    quarter = seconds / 4
    counter = iter(range(10**9))
    counter_lock = threading.Lock()

    def health(_: int, client: Client, stats: Stats) -> None:
        timed(stats, "GET /api/health", lambda: client.call("GET", "/api/health"), 200)

    def history(_: int, client: Client, stats: Stats) -> None:
        timed(stats, f"GET {HISTORY}", lambda: client.call("GET", HISTORY), 200)

    def mixed(index: int, client: Client, stats: Stats) -> None:
        timed(stats, "POST /api/auth/login", lambda: client.login(names[index]), 200)
        timed(stats, "GET /api/strategies", lambda: client.call("GET", "/api/strategies"), 200)
        timed(stats, f"GET {HISTORY}", lambda: client.call("GET", HISTORY), 200)
        timed(stats, f"GET {INDICATORS}", lambda: client.call("GET", INDICATORS), 200)
        with counter_lock:
            k = next(counter)
        # A new parameter each time, so that no stored result is reused: every POST queues
        # a real backtest (one year of one symbol).
        body = {
            "strategy_id": strategies[index],
            "symbols": [SYMBOL],
            "start_date": "2024-01-01",
            "end_date": "2024-12-31",
            "initial_capital": 1_000_000,
            "params": {"fast": 2 + k % 20, "slow": 25 + k // 20},
        }
        timed(
            stats, "POST /api/backtests", lambda: client.call("POST", "/api/backtests", body), 202
        )

    phases = []
    for name, step, length in (
        ("health", health, quarter),
        ("history", history, quarter),
        ("mixed", mixed, seconds - 2 * quarter),
    ):
        print(f"-- phase {name}: {length:.0f} s, {n} clients", flush=True)
        stats, wall = run_phase(clients, length, step)
        phases.append((name, stats, wall))
    for client in clients:
        client.close()
    return phases, n


def report(phases: list[tuple[str, Stats, float]], clients: int) -> tuple[int, float]:
    header = f"{'phase':<8} {'endpoint':<62} {'requests':>8} {'req/s':>8} {'p50 ms':>8} "
    header += f"{'p99 ms':>8} {'max ms':>8} {'errors':>6}"
    print(header)
    print("-" * len(header))
    errors = 0
    rates: dict[str, float] = {}
    for phase, stats, wall in phases:
        for name, values in stats.latencies.items():
            rate = len(values) / wall
            rates[f"{phase} {name}"] = rate
            errors += stats.errors[name]
            print(
                f"{phase:<8} {name:<62} {len(values):>8} {rate:>8.1f} "
                f"{percentile(values, 0.5) * 1000:>8.1f} {percentile(values, 0.99) * 1000:>8.1f} "
                f"{max(values) * 1000:>8.1f} {stats.errors[name]:>6}"
            )
        total = sum(len(v) for v in stats.latencies.values())
        print(f"{phase:<8} {'(all)':<62} {total:>8} {total / wall:>8.1f}")
    for _, stats, _ in phases:
        for sample in stats.samples:
            print(f"error: {sample}")
    health = rates["health GET /api/health"]
    history = rates[f"history GET {HISTORY}"]
    ratio = history / health if health else 0.0
    print(
        f"cached history / health throughput ({clients} clients each, equal phases): "
        f"{history:.1f} / {health:.1f} = {ratio:.2f} (target >= {RATIO_TARGET})"
    )
    print(f"errors: {errors} (target 0)")
    return errors, ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="total driving time")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (threads)")
    parser.add_argument(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/quantdesk_bench_load",
        help="a scratch database, created and dropped",
    )
    parser.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/12", help="REDIS_URL; flushed"
    )
    parser.add_argument(
        "--broker-url", default="redis://127.0.0.1:6379/11", help="CELERY_BROKER_URL; flushed"
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        help="gunicorn's worker recycling (deploy/gunicorn.conf.py: 2000 + jitter); 0: off",
    )
    parser.add_argument("--logs", help="keep the server's and worker's logs in this folder")
    args = parser.parse_args()
    if args.seconds < 4 or args.clients < 1:
        parser.error("--seconds must be at least 4 and --clients at least 1")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.logs or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        web_metrics = Path(tmp) / "prometheus-web"
        worker_metrics = Path(tmp) / "prometheus-worker"
        web_metrics.mkdir()
        worker_metrics.mkdir()
        port = free_port()
        recycling = "from the config" if args.max_requests is None else args.max_requests
        env = clean_env(
            QUANTDESK_ENV="production",
            DATABASE_URL=args.database_url,
            REDIS_URL=args.redis_url,
            CELERY_BROKER_URL=args.broker_url,
            SECRET_KEY="s" * 40,
            JWT_SECRET_KEY="j" * 40,
            VAR_DIR=str(Path(tmp) / "var"),
            SCHEDULER_IN_SERVER="false",
            MARKET_SEED_ON_START="false",
            RATELIMIT_ENABLED="false",
            AUTH_RATE_LIMIT="1000000 per minute",
        )
        print(
            f"server: gunicorn -c deploy/gunicorn.conf.py --workers 2 on 127.0.0.1:{port} "
            f"(max_requests {recycling}), "
            "QUANTDESK_ENV=production, PostgreSQL + Redis; backtests: 1 Celery worker "
            "(--concurrency 1)\nrate limits OFF for the load (RATELIMIT_ENABLED=false, "
            "AUTH_RATE_LIMIT=1000000 per minute)",
            flush=True,
        )
        with scratch_database(args.database_url), flushed(args.redis_url, args.broker_url):
            started = time.perf_counter()
            recycle = "" if args.max_requests is None else f" --max-requests {args.max_requests}"
            run_cli(["init-db"], env)
            run_cli(["seed-demo"], env)
            print(f"init-db + seed-demo: {time.perf_counter() - started:.1f} s", flush=True)
            web_env = {
                **env,
                "PROMETHEUS_MULTIPROC_DIR": str(web_metrics),
                "GUNICORN_CMD_ARGS": f"--bind 127.0.0.1:{port} --workers 2{recycle}",
            }
            gunicorn = [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py"]
            worker = [str(BIN / "quantdesk"), "worker", "--concurrency", "1"]
            worker_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(worker_metrics)}
            web_log = folder / "gunicorn.log"
            with (
                process([*gunicorn, "quantdesk.wsgi:app"], web_env, web_log) as web,
                process([*worker, "--loglevel", "WARNING"], worker_env, folder / "worker.log"),
            ):
                wait_for_server(port, web, web_log)
                phases, clients = drive(port, args.clients, args.seconds)
                counts = backtest_counts(args.database_url)
                if web.poll() is not None:
                    raise SystemExit(f"gunicorn exited:\n{web_log.read_text()[-3000:]}")
        errors, ratio = report(phases, clients)
        print(
            "backtests at the end (queued while the load ran; the worker runs what it can): "
            + ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
        )
    ok = errors == 0 and ratio >= RATIO_TARGET
    print("targets met" if ok else "a target was missed")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
