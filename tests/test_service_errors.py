"""A backend that is down (PostgreSQL, Redis, the Celery broker) is a quick 503, never a 500.

The real restarts are tests/integration/test_faults.py; these are the fast checks of the error
handlers and of the bounded waits, through the HTTP API.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from flask import Flask
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from quantdesk.app import create_app
from quantdesk.extensions import extensions_of
from quantdesk.kvstore import RedisKeyStore, redis_client
from quantdesk.mail import OutboxEmail
from tests.conftest import Backend, isolated
from tests.support import PASSWORD, Api, assert_error, free_port


class _Cause(Exception):
    pass


BACKEND_ERRORS: list[tuple[str, Callable[[], Exception], str]] = [
    (
        "pg-refused",
        lambda: OperationalError("SELECT 1", {}, _Cause("connection refused")),
        "database",
    ),
    ("pg-interface", lambda: InterfaceError("SELECT 1", {}, _Cause("closed")), "database"),
    (
        "pg-disconnect",
        lambda: DBAPIError("SELECT 1", {}, _Cause("gone"), connection_invalidated=True),
        "database",
    ),
    ("pool-timeout", lambda: PoolTimeoutError("QueuePool limit reached"), "database"),
    ("redis-refused", lambda: redis.ConnectionError("Error 111 connecting"), "redis"),
    ("redis-timeout", lambda: redis.TimeoutError("Timeout reading from socket"), "redis"),
    ("redis-loading", lambda: redis.BusyLoadingError("Redis is loading"), "redis"),
    ("broker", lambda: BrokerError("Error 111 connecting to broker"), "broker"),
]


def _with_route(app: Flask, exc: Exception) -> Api:
    def boom() -> Any:
        raise exc

    app.add_url_rule("/api/_test/boom", "test_boom", boom)
    return Api(app)


@pytest.mark.parametrize(
    ("make_error", "service"),
    [(make, service) for _, make, service in BACKEND_ERRORS],
    ids=[name for name, _, _ in BACKEND_ERRORS],
)
def test_an_unreachable_backend_is_a_503_naming_it(
    make_app: Callable[..., Flask], make_error: Callable[[], Exception], service: str
) -> None:
    api = _with_route(make_app(), make_error())
    response = api.get("/api/_test/boom")
    error = assert_error(response, 503, "service_unavailable")
    assert error["details"] == {"service": service, "retry_after": 5}
    assert response.headers["Retry-After"] == "5"
    assert response.headers["X-Request-ID"]
    assert "retry" in error["message"].lower()
    assert "connect" not in error["message"].lower()  # the driver's words stay in the log


def test_other_driver_errors_stay_500s(make_app: Callable[..., Flask]) -> None:
    api = _with_route(make_app(), ProgrammingError("SELEC 1", {}, _Cause("syntax error")))
    error = assert_error(api.get("/api/_test/boom"), 500, "internal_error")
    assert set(error["details"]) == {"request_id"}


@pytest.fixture
def down_postgres_app(production_backend: Backend) -> Iterator[Flask]:
    """The production app with DATABASE_URL on a port where nothing listens."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/quantdesk"
    app = create_app(production_backend.make_settings(DATABASE_URL=url))
    try:
        yield app
    finally:
        extensions_of(app).db.dispose()


def test_postgres_down_is_a_quick_503_and_not_ready(down_postgres_app: Flask) -> None:
    api = Api(down_postgres_app)
    started = time.monotonic()
    response = api.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert time.monotonic() - started < 5
    assert assert_error(response, 503, "service_unavailable")["details"]["service"] == "database"
    ready = api.get("/api/health/ready")
    checks = assert_error(ready, 503, "service_unavailable")["details"]["checks"]
    assert checks["database"] == "unavailable"
    assert checks["redis"] == "ok"
    assert api.get("/api/health").status_code == 200


@pytest.mark.slow
def test_a_postgres_that_never_answers_times_out(production_backend: Backend) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/quantdesk"
        settings = production_backend.make_settings(DATABASE_URL=url, DB_CONNECT_TIMEOUT_SECONDS=2)
        app = create_app(settings)
        try:
            started = time.monotonic()
            response = Api(app).post(
                "/api/auth/login", json={"username": "alice", "password": PASSWORD}
            )
            elapsed = time.monotonic() - started
        finally:
            extensions_of(app).db.dispose()
    assert_error(response, 503, "service_unavailable")
    assert 1.5 < elapsed < 8, elapsed


def test_a_blocklist_that_cannot_be_read_fails_closed(production_backend: Backend) -> None:
    app = create_app(production_backend.settings)
    ext = extensions_of(app)
    try:
        with isolated(app):
            api = Api(app)
            account = api.logged_in()
            assert api.get("/api/auth/profile", headers=account.headers).status_code == 200
            ext.keystore = RedisKeyStore(redis_client(f"redis://127.0.0.1:{free_port()}/0"))
            started = time.monotonic()
            response = api.get("/api/auth/profile", headers=account.headers)
            elapsed = time.monotonic() - started
    finally:
        ext.db.dispose()
    assert elapsed < 5  # no retries with back-off on a refused connection
    error = assert_error(response, 503, "service_unavailable")
    assert error["details"]["service"] == "redis"


def test_a_reset_request_with_the_broker_down_reveals_no_account(
    make_app: Callable[..., Flask],
) -> None:
    """A 503 only for known emails would tell which accounts exist: both answers are 202, and
    the known one's mail waits in the outbox."""
    app = make_app(TASKS_EAGER=False, CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    api = Api(app)
    account = api.register()
    answers = [
        api.post("/api/auth/reset-password", json={"email": email})
        for email in (account.email, "nobody@example.com")
    ]
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].get_json() == answers[1].get_json()
    with app.app_context():
        session = extensions_of(app).db.session
        pending = session.scalars(
            select(OutboxEmail.to_address).where(OutboxEmail.status == "pending")
        )
        assert list(pending) == [account.email]
