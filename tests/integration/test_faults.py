"""Faults: PostgreSQL, Redis and the Celery broker restart under a running production stack.

One stack per module, every part a real process on its own ports: a throwaway PostgreSQL
cluster, a Redis without persistence for the cache, rate limits and token blocklist, a
second, append-only Redis as the Celery broker (as docker-compose.yml runs it), gunicorn with
the production settings and a `quantdesk worker`. Each test takes one backend down and shows:

- while it is down, requests that need it fail cleanly and quickly: a 503
  `service_unavailable` naming the backend, with `Retry-After`, never a 500 or a hang; the
  liveness probe still answers and readiness names the backend that is down;
- once it is back, the same requests succeed with no restart of gunicorn or the worker (the
  pools reconnect by themselves), and what was stored before is there unchanged.

A worker killed in the middle of a backtest is tests/integration/test_backtest_workers.py:
its backtest is finished by the next worker and stored exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from quantdesk.backtests.models import BacktestResult
from quantdesk.market import sync
from tests.backtests import CN_BODY, SMA
from tests.integration.services import (
    PrivatePostgres,
    PrivateRedis,
    private_postgres,
    private_redis,
)
from tests.support import BIN, PASSWORD, free_port, server_env

REPO = Path(__file__).resolve().parents[2]
# A request to a backend that is down must be answered within this (connect timeouts are 2-5 s).
BOUNDED_SECONDS = 8.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any
    seconds: float


@dataclass
class Stack:
    url: str
    postgres: PrivatePostgres
    redis: PrivateRedis
    broker: PrivateRedis
    database_url: str
    worker: Child
    web_log: Path

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Reply:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw, got = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, raw, got = error.code, error.read(), dict(error.headers)
        seconds = time.monotonic() - started
        return Reply(status, got, json.loads(raw) if raw else None, seconds)

    def ok(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        reply = self.call(method, path, body, token)
        assert reply.status < 300, (method, path, reply.status, reply.body)
        return reply.body

    def login(self, username: str) -> str:
        body = {"username": username, "password": PASSWORD}
        return str(self.ok("POST", "/api/auth/login", body)["access_token"])

    def account(self, username: str) -> str:
        email = f"{username}@example.com"
        body = {"username": username, "email": email, "password": PASSWORD}
        self.ok("POST", "/api/auth/register", body)
        return self.login(username)

    def finished_backtest(self, token: str, name: str) -> dict[str, Any]:
        strategy = self.ok("POST", "/api/strategies", {"name": name, "code": SMA}, token)
        created = self.ok(
            "POST", "/api/backtests", {**CN_BODY, "strategy_id": strategy["id"]}, token
        )
        return self.wait_finished(token, created["id"])

    def wait_finished(self, token: str, backtest_id: int, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            found: dict[str, Any] = self.ok("GET", f"/api/backtests/{backtest_id}", token=token)
            if found["status"] in {"finished", "failed", "cancelled"}:
                assert found["status"] == "finished", found
                return found
            assert time.monotonic() < deadline, found
            time.sleep(0.1)

    def stored_results(self, backtest_id: int) -> int:
        engine = create_engine(self.database_url)
        try:
            with Session(engine) as session:
                count = select(func.count()).select_from(BacktestResult)
                return int(session.scalar(count.where(BacktestResult.task_id == backtest_id)) or 0)
        finally:
            engine.dispose()


def assert_unavailable(reply: Reply, service: str) -> None:
    """A clean, quick 503 in the API's error shape naming `service`, with Retry-After."""
    assert reply.status == 503, (reply.status, reply.body)
    assert reply.seconds < BOUNDED_SECONDS, reply.seconds
    assert set(reply.body) == {"error"}, reply.body
    error = reply.body["error"]
    assert error["code"] == "service_unavailable", error
    assert error["details"]["service"] == service, error
    assert int(reply.headers["Retry-After"]) > 0
    assert "Traceback" not in error["message"]
    assert "psycopg" not in error["message"]
    assert "redis://" not in error["message"]
    assert "X-Request-ID" in reply.headers


def readiness(stack: Stack) -> tuple[int, dict[str, str]]:
    reply = stack.call("GET", "/api/health/ready")
    assert reply.seconds < BOUNDED_SECONDS, reply.seconds
    if reply.status == 200:
        checks = reply.body["checks"]
    else:
        assert reply.body["error"]["code"] == "service_unavailable", reply.body
        checks = reply.body["error"]["details"]["checks"]
    assert checks.pop("database_replica") == "not_configured"  # this stack has none
    return reply.status, checks


class Child:
    """A child process in its own process group (a worker's pool goes with it), restartable."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None, "already running"
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # gunicorn and Celery stop their own children on SIGTERM
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@contextmanager
def _running(child: Child) -> Iterator[Child]:
    child.start()
    try:
        yield child
    finally:
        child.stop()


def _wait_healthy(url: str, web: Child) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=5):
                return
        except OSError:
            assert web.process is not None
            assert web.process.poll() is None, web.log.read_text()[-3000:]
            assert time.monotonic() < deadline, web.log.read_text()[-3000:]
            time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("faults")
    with ExitStack() as resources:
        postgres = resources.enter_context(private_postgres())
        cache = resources.enter_context(private_redis(tmp / "redis"))
        broker = resources.enter_context(private_redis(tmp / "broker", persistent=True))
        database_url = postgres.create_database("quantdesk")
        port = free_port()
        env = server_env(
            QUANTDESK_ENV="production",
            DATABASE_URL=database_url,
            REDIS_URL=cache.url(0),
            CELERY_BROKER_URL=broker.url(0),
            SECRET_KEY="s" * 40,
            JWT_SECRET_KEY="j" * 40,
            VAR_DIR=str(tmp),
            SCHEDULER_IN_SERVER="false",
            AUTH_RATE_LIMIT="1000 per minute",
            DB_POOL_SIZE="3",
            PROMETHEUS_MULTIPROC_DIR=str(tmp / "metrics"),
        )
        init = subprocess.run(
            [str(BIN / "quantdesk"), "init-db"], env=env, capture_output=True, timeout=120
        )
        assert init.returncode == 0, init.stderr.decode()[-3000:]
        engine = create_engine(database_url)
        with Session(engine) as session:
            assert sync.seed_demo(session).status == "finished"
        engine.dispose()
        web_log = tmp / "web.log"
        argv = [str(BIN / "gunicorn"), "-c", str(REPO / "deploy" / "gunicorn.conf.py")]
        argv += ["--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "4"]
        web = resources.enter_context(_running(Child([*argv, "quantdesk.wsgi:app"], env, web_log)))
        worker_argv = [str(BIN / "quantdesk"), "worker", "--concurrency", "1"]
        worker_argv += ["--loglevel", "WARNING"]
        worker = resources.enter_context(_running(Child(worker_argv, env, tmp / "worker.log")))
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, web)
        yield Stack(url, postgres, cache, broker, database_url, worker, web_log)
        assert "unhandled error" not in web_log.read_text(), web_log.read_text()[-5000:]


@pytest.fixture
def healthy(stack: Stack) -> Iterator[Stack]:
    """The stack with every backend up before and after the test (a failed test restarts)."""
    assert readiness(stack) == (200, {"database": "ok", "redis": "ok", "broker": "ok"})
    try:
        yield stack
    finally:
        if not stack.postgres.running():
            stack.postgres.start()
        for server in (stack.redis, stack.broker):
            if server.process is None:
                server.start()
        if stack.worker.process is None:
            stack.worker.start()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_postgres_restart_fails_requests_cleanly_and_loses_nothing(healthy: Stack) -> None:
    stack = healthy
    token = stack.account("pgfault")
    strategy = stack.ok("POST", "/api/strategies", {"name": "kept", "code": SMA}, token)
    finished = stack.finished_backtest(token, "before")
    path = f"/api/backtests/{finished['id']}"
    metrics = stack.ok("GET", f"{path}/metrics", token=token)

    stack.postgres.stop("immediate")  # a crash: every connection of every pool dies at once
    assert_unavailable(
        stack.call("GET", f"/api/strategies/{strategy['id']}", token=token), "database"
    )
    assert_unavailable(stack.call("GET", path, token=token), "database")
    assert_unavailable(
        stack.call("POST", "/api/strategies", {"name": "lost", "code": SMA}, token), "database"
    )
    login = {"username": "pgfault", "password": PASSWORD}
    assert_unavailable(stack.call("POST", "/api/auth/login", login), "database")
    assert stack.call("GET", "/api/health").status == 200  # alive: do not restart it
    assert readiness(stack) == (503, {"database": "unavailable", "redis": "ok", "broker": "ok"})

    stack.postgres.start()
    # The first request after the restart already succeeds: pre-ping replaces dead connections.
    assert stack.ok("GET", f"/api/strategies/{strategy['id']}", token=token) == strategy
    assert stack.ok("GET", path, token=token) == finished
    assert stack.ok("GET", f"{path}/metrics", token=token) == metrics
    names = [item["name"] for item in stack.ok("GET", "/api/strategies", token=token)["items"]]
    assert "lost" not in names
    assert "kept" in names
    assert stack.login("pgfault")
    assert readiness(stack) == (200, {"database": "ok", "redis": "ok", "broker": "ok"})
    # The worker reconnected too: a new backtest runs, and the old one is still stored once.
    assert stack.finished_backtest(token, "after")["id"] != finished["id"]
    assert stack.stored_results(finished["id"]) == 1


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_redis_restart_fails_closed_and_recovers(healthy: Stack) -> None:
    stack = healthy
    token = stack.account("redisfault")
    finished = stack.finished_backtest(token, "before")
    path = f"/api/backtests/{finished['id']}"

    stack.redis.stop()
    # The blocklist cannot be checked: no token is believed (503), none is let through.
    assert_unavailable(stack.call("GET", "/api/auth/profile", token=token), "redis")
    assert_unavailable(stack.call("GET", path, token=token), "redis")
    assert_unavailable(
        stack.call("POST", "/api/strategies", {"name": "lost", "code": SMA}, token), "redis"
    )
    # Registering and logging in need only the database (rate limits count in memory).
    assert stack.account("redisfault2")
    assert stack.login("redisfault")
    assert stack.call("GET", "/api/health").status == 200
    assert readiness(stack) == (503, {"database": "ok", "redis": "unavailable", "broker": "ok"})

    stack.redis.start()  # empty: nothing was kept on disk
    assert stack.ok("GET", "/api/auth/profile", token=token)["username"] == "redisfault"
    assert stack.ok("GET", path, token=token) == finished
    names = [item["name"] for item in stack.ok("GET", "/api/strategies", token=token)["items"]]
    assert "lost" not in names
    assert readiness(stack) == (200, {"database": "ok", "redis": "ok", "broker": "ok"})
    stack.ok("POST", "/api/auth/logout", {}, token)  # writes the blocklist again
    assert stack.call("GET", "/api/auth/profile", token=token).status == 401


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_token_revoked_before_a_redis_restart_stays_revoked(healthy: Stack) -> None:
    stack = healthy
    stack.account("revoked")
    kept, revoked = stack.login("revoked"), stack.login("revoked")
    stack.ok("POST", "/api/auth/logout", {}, revoked)
    assert stack.call("GET", "/api/auth/profile", token=revoked).status == 401

    stack.redis.stop()
    stack.redis.start()  # the blocklist in Redis is gone; the database still has the revocation
    reply = stack.call("GET", "/api/auth/profile", token=revoked)
    assert reply.status == 401, reply.body
    assert reply.body["error"]["code"] == "unauthorized"
    assert stack.ok("GET", "/api/auth/profile", token=kept)["username"] == "revoked"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_backtest_queued_across_a_broker_restart_still_finishes(healthy: Stack) -> None:
    stack = healthy
    token = stack.account("brokerfault")
    strategy = stack.ok("POST", "/api/strategies", {"name": "queued", "code": SMA}, token)
    stack.worker.stop()  # no worker: the backtest waits in the broker's queue
    body = {**CN_BODY, "strategy_id": strategy["id"], "initial_capital": 777_777}
    created = stack.ok("POST", "/api/backtests", body, token)
    assert created["status"] == "queued"
    queue = redis.Redis.from_url(stack.broker.url(0))
    assert queue.llen("celery") == 1
    queue.close()

    stack.broker.stop()  # SIGKILL: the queue survives in the append-only file
    assert readiness(stack) == (503, {"database": "ok", "redis": "ok", "broker": "unavailable"})
    assert stack.ok("GET", f"/api/backtests/{created['id']}", token=token)["status"] == "queued"
    stack.broker.start()
    queue = redis.Redis.from_url(stack.broker.url(0))
    assert queue.llen("celery") == 1
    queue.close()
    stack.worker.start()
    done = stack.wait_finished(token, created["id"], timeout=60)
    assert done["progress"] == 1
    assert stack.stored_results(created["id"]) == 1

    # A restart under a running, idle worker and the web tier's producer: both reconnect.
    stack.broker.stop()
    stack.broker.start()
    again = stack.finished_backtest(token, "after")
    assert stack.stored_results(again["id"]) == 1
