"""Test fixtures: every API test runs on the embedded default and on PostgreSQL + Redis.

The schema is migrated once per backend per session; each test then runs inside one outer
transaction that is rolled back at the end, with every session the app opens joined to it as
a savepoint (SQLAlchemy 2, "Joining a Session into an External Transaction"). Redis is
flushed between tests. PostgreSQL and Redis must be reachable (TEST_DATABASE_URL,
TEST_REDIS_URL): when they are not, the production-backend tests fail, never skip.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import redis
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from quantdesk import migrate
from quantdesk.app import create_app
from quantdesk.db import build_engine
from quantdesk.extensions import Extensions, extensions_of
from quantdesk.settings import Settings
from tests.support import Api

TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/quantdesk_test"
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

# Cheap hashing and generous limits, so tests are fast; the tests of those rules set their own.
FAST = {
    "QUANTDESK_ENV": "test",
    "ARGON2_TIME_COST": 1,
    "ARGON2_MEMORY_KIB": 8,
    "AUTH_RATE_LIMIT": "10000 per minute",
    "API_RATE_LIMIT_PER_USER": "100000 per minute",
    "API_RATE_LIMIT_PER_ADDRESS": "100000 per minute",
    "TASKS_EAGER": True,
    "LOG_LEVEL": "WARNING",
    "SMTP_HOST": "",
    "SECRET_KEY": "test-secret-key-not-for-production-000000",
    "JWT_SECRET_KEY": "test-jwt-secret-key-not-for-production-0000",
}


@dataclass
class Backend:
    name: str
    settings: Settings

    def make_settings(self, **overrides: Any) -> Settings:
        values = {**self.settings.model_dump(), **overrides}
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def _recreate_postgres_database(url: str) -> None:
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            name = target.database
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL is required for the production-backend tests and is not reachable at "
            f"{target.render_as_string(hide_password=True)}: {exc}. Run .ci/ensure-services.sh "
            "or set TEST_DATABASE_URL.",
            pytrace=False,
        )
    finally:
        admin.dispose()


def _check_redis(url: str) -> None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis is required for the production-backend tests and is not reachable at {url}: "
            f"{exc}. Run .ci/ensure-services.sh or set TEST_REDIS_URL.",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def embedded_backend(tmp_path_factory: pytest.TempPathFactory) -> Backend:
    var_dir = tmp_path_factory.mktemp("var")
    settings = Settings(_env_file=None, VAR_DIR=var_dir, DATABASE_URL="", REDIS_URL="", **FAST)  # type: ignore[call-arg]
    _migrate(settings)
    return Backend("embedded", settings)


@pytest.fixture(scope="session")
def production_backend(tmp_path_factory: pytest.TempPathFactory) -> Backend:
    _recreate_postgres_database(TEST_DATABASE_URL)
    _check_redis(TEST_REDIS_URL)
    var_dir = tmp_path_factory.mktemp("var-prod")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        VAR_DIR=var_dir,
        DATABASE_URL=TEST_DATABASE_URL,
        REDIS_URL=TEST_REDIS_URL,
        **FAST,
    )
    _migrate(settings)
    return Backend("production", settings)


def _migrate(settings: Settings) -> None:
    engine = build_engine(settings)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="session", params=["embedded", "production"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each test that uses it runs twice: embedded default, then PostgreSQL + Redis."""
    return request.getfixturevalue(f"{request.param}_backend")


_apps: dict[str, Flask] = {}


@pytest.fixture
def app(backend: Backend) -> Iterator[Flask]:
    """The backend's shared app, inside a per-test transaction that is rolled back."""
    shared = _apps.get(backend.name)
    if shared is None:
        shared = _apps[backend.name] = create_app(backend.settings)
    with isolated(shared):
        yield shared


@pytest.fixture
def make_app(backend: Backend) -> Iterator[Callable[..., Flask]]:
    """Build an app with some settings changed, isolated like `app`."""
    stack = contextlib.ExitStack()

    def factory(**overrides: Any) -> Flask:
        new_app = create_app(backend.make_settings(**overrides))
        stack.callback(extensions_of(new_app).db.dispose)
        stack.enter_context(isolated(new_app))
        return new_app

    with stack:
        yield factory


@contextlib.contextmanager
def isolated(app: Flask) -> Iterator[None]:
    ext = extensions_of(app)
    if ext.settings.REDIS_URL:
        redis.Redis.from_url(ext.settings.REDIS_URL).flushdb()
    if ext.settings.RATELIMIT_ENABLED:  # a disabled limiter has no storage to reset
        ext.limiter.reset()
    connection = ext.db.engine.connect()
    outer = connection.begin()
    original = ext.db.session_factory
    ext.db.session_factory = sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )
    try:
        yield
    finally:
        ext.db.session_factory = original
        outer.rollback()
        connection.close()


@pytest.fixture
def ext(app: Flask) -> Extensions:
    return extensions_of(app)


@pytest.fixture
def db(ext: Extensions) -> Iterator[Session]:
    """A session in the test's transaction, for arranging and inspecting rows."""
    session = ext.db.session_factory()
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def api(app: Flask) -> Api:
    return Api(app)


@pytest.fixture
def scratch_database() -> Iterator[Callable[[str], str]]:
    """Make fresh PostgreSQL databases for tests that need committed data across processes.

    The per-test transaction of `app` is invisible to other processes (a worker, gunicorn), so
    such tests get a database of their own, migrated to head, dropped afterwards.
    """
    made: list[str] = []
    admin = create_engine(
        make_url(TEST_DATABASE_URL).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )

    base = make_url(TEST_DATABASE_URL)

    def factory(suffix: str) -> str:
        # Named after the run's own test database, so two suites on one server never meet.
        url = base.set(database=f"{base.database}_{suffix}")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{url.database}"'))
        made.append(str(url.database))
        engine = create_engine(url)
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()
        return url.render_as_string(hide_password=False)

    try:
        yield factory
    finally:
        with admin.connect() as connection:
            for name in made:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Inbox:
    """What a test SMTP server received: (envelope, parsed message) pairs."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, EmailMessage]] = []

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:  # noqa: N802
        message = message_from_bytes(envelope.content, policy=email_policy.default)  # type: ignore[arg-type]
        self.messages.append((envelope, message))  # type: ignore[arg-type]
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, Inbox]]:
    """A real SMTP server on loopback (aiosmtpd)."""
    inbox = Inbox()
    with socket.socket() as probe:  # a free port (aiosmtpd cannot use port 0)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
