"""Alembic migrations: apply on SQLite and PostgreSQL, match the models, and go back down."""

from __future__ import annotations

import warnings
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, select, text

from quantdesk import migrate
from quantdesk.db import build_engine
from quantdesk.models import metadata
from tests.conftest import Backend


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as connection, warnings.catch_warnings():
        # SQLite cannot reflect the lower(username) expression index; PostgreSQL checks it.
        warnings.filterwarnings("ignore", message=".*expression-based index.*")
        return compare_metadata(MigrationContext.configure(connection), metadata)


def test_migrated_schema_matches_the_models(backend: Backend) -> None:
    engine = build_engine(backend.settings)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert _diff(engine) == []
        tables = set(inspect(engine).get_table_names())
        assert {"users", "roles", "user_roles", "token_families", "revoked_tokens"} <= tables
        assert {
            "login_attempts",
            "audit_events",
            "password_reset_tokens",
            "outbox_emails",
        } <= tables
        assert {
            "stocks",
            "stock_prices",
            "technical_indicators",
            "watchlists",
            "sync_runs",
        } <= tables
        with engine.connect() as connection:
            roles = connection.execute(text("SELECT name, permissions FROM roles ORDER BY name"))
            assert [row[0] for row in roles] == ["admin", "user"]
    finally:
        engine.dispose()


def test_upgrade_is_idempotent_and_downgrade_works(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        migrate.upgrade(engine)
        migrate.upgrade(engine)  # a second run changes nothing
        assert migrate.current_revision(engine) == migrate.head_revision()
        migrate.downgrade(engine, "base")
        assert "users" not in inspect(engine).get_table_names()
        migrate.upgrade(engine)
        with engine.connect() as connection:
            count = connection.execute(select(text("count(*)")).select_from(text("roles")))
            assert count.scalar() == 2
    finally:
        engine.dispose()
