"""The database: engine, sessions and the declarative base shared by every domain's models.

A thin layer over SQLAlchemy 2 rather than Flask-SQLAlchemy, so that services take a plain
`Session` (callable from routes, tasks, the CLI and tests) and tests can bind every session to
one outer transaction per test.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any

from flask import Flask, g
from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from quantdesk.settings import Settings

# Stable constraint names, so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        moment: dt.datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=dt.UTC)
        return moment.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _make_sqlite_transactional(engine: Engine) -> None:
    """Let SQLAlchemy, not the sqlite3 module, issue BEGIN, so SAVEPOINTs work.

    The pysqlite recipe from SQLAlchemy's SQLite dialect docs ("Serializable isolation /
    Savepoints / Transactional DDL"); also turns foreign keys on and uses WAL for concurrency.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


def build_engine(settings: Settings, url: str | None = None, *, read_only: bool = False) -> Engine:
    """The engine of `url` (default: DATABASE_URL); a server database gets the pool settings
    and pre-ping. `read_only` makes every PostgreSQL transaction READ ONLY (the replica)."""
    url = url or settings.database_url
    if url.startswith("sqlite"):
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        _make_sqlite_transactional(engine)
        return engine
    options: dict[str, Any] = {}
    if url.startswith("postgresql"):
        # Bounded: a database that does not answer fails the request (a 503), never hangs it.
        options["connect_args"] = {"connect_timeout": settings.DB_CONNECT_TIMEOUT_SECONDS}
        if read_only:
            options["execution_options"] = {"postgresql_readonly": True}
    return create_engine(
        url,
        pool_size=settings.DB_POOL_SIZE,
        max_overflow=settings.DB_MAX_OVERFLOW,
        pool_recycle=settings.DB_POOL_RECYCLE_SECONDS,
        pool_pre_ping=True,
        **options,
    )


class Database:
    """Engine and session factory of one app; one session per app context (request).

    With DATABASE_REPLICA_URL, a second engine on the replica serves `read_session`, which
    read-only routes use; without it `read_session` is `session` (the primary).
    """

    def __init__(self, settings: Settings) -> None:
        self.engine = build_engine(settings)
        self.session_factory: sessionmaker[Session] = sessionmaker(
            bind=self.engine, expire_on_commit=False
        )
        self.replica_engine: Engine | None = None
        self.read_session_factory: sessionmaker[Session] | None = None
        if settings.DATABASE_REPLICA_URL:
            self.replica_engine = build_engine(
                settings, settings.DATABASE_REPLICA_URL, read_only=True
            )
            self.read_session_factory = sessionmaker(
                bind=self.replica_engine, expire_on_commit=False
            )

    def init_app(self, app: Flask) -> None:
        app.extensions["quantdesk.db"] = self
        app.teardown_appcontext(self._close_context_session)

    @property
    def session(self) -> Session:
        """The session of the current app context, created on first use."""
        session: Session | None = g.get("_quantdesk_session")
        if session is None:
            session = self.session_factory()
            g._quantdesk_session = session
        return session

    @property
    def read_session(self) -> Session:
        """For read-only queries: the replica's session of this app context when a replica is
        set (it may lag the primary), else `session`. Never write through it."""
        if self.read_session_factory is None:
            return self.session
        session: Session | None = g.get("_quantdesk_read_session")
        if session is None:
            session = self.read_session_factory()
            g._quantdesk_read_session = session
        return session

    def _close_context_session(self, _exc: BaseException | None) -> None:
        for name in ("_quantdesk_session", "_quantdesk_read_session"):
            session: Session | None = g.pop(name, None)
            if session is not None:
                session.close()

    @contextlib.contextmanager
    def session_scope(self) -> Iterator[Session]:
        """A session for work outside a request (tasks, CLI): commit on success, else roll back."""
        session = self.session_factory()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
        if self.replica_engine is not None:
            self.replica_engine.dispose()
