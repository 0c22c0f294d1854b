"""`quantdesk backup` and `quantdesk restore`: real data through the app, the real commands, a
fresh database restored, and every row of every table, the Alembic revision and the uploaded
bytes compared; plus the refusals (a database in use, a wrong or broken archive, no database).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from quantdesk import backup, migrate
from quantdesk.app import create_app
from quantdesk.cli import main
from quantdesk.extensions import extensions_of
from quantdesk.models import metadata
from quantdesk.settings import Settings
from tests.backtests import make_strategy, notifications, start, wait_until
from tests.conftest import FAST, TEST_DATABASE_URL
from tests.files import upload
from tests.support import BIN, Api, server_env

PRICES = (
    b"date,open,high,low,close,volume\n"
    b"2024-01-02,10,11,9,10.5,1000\n"
    b"2024-01-03,10.5,12,10,11.5,2000\n"
    b"2024-01-04,11.5,12.5,11,12,1500\n"
)
STRATEGY_FILE = b"def handle_bar(ctx, data):\n    ctx.log('hello from a file')\n"
NOTE = "notes: \u00e9t\u00e9 \u2603\n".encode() + bytes(range(32, 127)) * 40


# ---------------------------------------------------------------- helpers


def cli(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def env_for(var_dir: Path, database_url: str) -> dict[str, str]:
    return server_env(VAR_DIR=str(var_dir), DATABASE_URL=database_url, REDIS_URL="")


def populate(env: dict[str, str]) -> dict[str, Any]:
    """Real data through the real paths: the sample market data by `quantdesk seed-demo`; a
    user, a strategy, a finished backtest (with its notification) and three uploaded files
    (one a data set) through the API of an app on the same database. Returns the uploads."""
    seeded = cli(env, "seed-demo")
    assert seeded.exit_code == 0, seeded.output
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        **{**FAST, "VAR_DIR": env["VAR_DIR"], "DATABASE_URL": env["DATABASE_URL"]},
        REDIS_URL="",
    )
    app = create_app(settings)
    try:
        api = Api(app)
        account = api.logged_in("backup_owner")
        strategy_id = make_strategy(api, account)
        backtest = start(api, account, strategy_id)
        assert wait_until(api, account, backtest["id"], "finished")["status"] == "finished"
        assert notifications(api, account), "a finished backtest notifies its owner"
        uploads = {}
        for content, name, form in (
            (PRICES, "prices.csv", {"category": "data", "dataset": "mine"}),
            (STRATEGY_FILE, "strategy.py", {"category": "strategy"}),
            (NOTE, "note.txt", {}),
        ):
            response = upload(api, account, content, name, **form)
            assert response.status_code == 201, response.get_json()
            uploads[response.get_json()["sha256"]] = content
        return uploads
    finally:
        extensions_of(app).db.dispose()


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the models' metadata, in primary-key order, plus the
    database's table names and its Alembic revision."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            names = sorted(inspect(connection).get_table_names())
            rows: dict[str, list[tuple[Any, ...]]] = {"(tables)": [tuple(names)]}
            for table in metadata.sorted_tables:
                assert table.name in names, table.name
                order = list(table.primary_key.columns) or list(table.columns)
                query = select(table).order_by(*order)
                rows[table.name] = [tuple(row) for row in connection.execute(query)]
            rows["alembic_version"] = [
                tuple(row)
                for row in connection.execute(text("SELECT version_num FROM alembic_version"))
            ]
            return rows
    finally:
        engine.dispose()


def assert_same_data(source: dict[str, list[Any]], restored: dict[str, list[Any]]) -> None:
    assert set(restored) == set(source)
    for name, rows in source.items():
        assert len(restored[name]) == len(rows), f"{name}: row count"
        assert restored[name] == rows, f"{name}: contents"


def assert_rich(rows: dict[str, list[Any]]) -> None:
    """The data covers every domain the backup must carry (a vacuous comparison proves nothing)."""
    for name in (
        "users",
        "strategies",
        "backtest_tasks",
        "backtest_results",
        "backtest_equity",
        "notifications",
        "file_records",
        "user_datasets",
        "user_dataset_bars",
        "stocks",
        "stock_prices",
        "audit_events",
    ):
        assert rows[name], f"no rows in {name}"
    assert rows["alembic_version"] == [(migrate.head_revision(),)]


def stored_bytes(var_dir: Path, url: str) -> dict[str, bytes]:
    """sha256 -> the bytes stored under VAR_DIR/uploads for each file row; checks the hash."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT storage_key, sha256, size FROM file_records"))
            found = {}
            for key, sha256, size in rows:
                content = (var_dir / "uploads" / key[:2] / key).read_bytes()
                assert hashlib.sha256(content).hexdigest() == sha256
                assert len(content) == size
                found[sha256] = content
            return found
    finally:
        engine.dispose()


def archive_names(path: Path) -> list[str]:
    with tarfile.open(path, "r:gz") as tar:
        return tar.getnames()


# ---------------------------------------------------------------- round trips


@pytest.mark.slow
def test_postgres_round_trip(tmp_path: Path, scratch_database: Callable[[str], str]) -> None:
    source_url = scratch_database("backup_source")
    target_url = scratch_database("backup_target")  # migrated, never used: no --yes needed
    source_env = env_for(tmp_path / "source", source_url)
    uploads = populate(source_env)
    before = snapshot(source_url)
    assert_rich(before)

    # The installed console script, as an operator runs it, with no password prompt.
    archive = tmp_path / "nightly.tar.gz"
    made = subprocess.run(
        [str(BIN / "quantdesk"), "backup", str(archive)],
        env=source_env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    assert f"backup written: {archive}" in made.stdout
    assert "postgresql database at revision" in made.stdout
    assert "3 uploaded files" in made.stdout
    assert archive.stat().st_mode & 0o777 == 0o600
    names = archive_names(archive)
    assert names[0] == "manifest.json"
    assert "database.pgdump" in names
    assert len([n for n in names if n.startswith("files/") and n.count("/") == 2]) == 3

    target_env = env_for(tmp_path / "target", target_url)
    restored = cli(target_env, "restore", str(archive))
    assert restored.exit_code == 0, restored.output
    assert "restored" in restored.output
    assert "3 uploaded files" in restored.output
    assert "init-db" not in restored.output  # at head already
    assert_same_data(before, snapshot(target_url))
    assert stored_bytes(tmp_path / "target", target_url) == uploads

    # Now the target holds data: a second restore is refused, and changes nothing ...
    refused = cli(target_env, "restore", str(archive))
    assert refused.exit_code != 0
    assert isinstance(refused.exception, SystemExit)
    assert "already holds data" in refused.output
    assert "--yes" in refused.output
    # ... until --yes, which replaces everything, including rows made since the backup.
    engine = create_engine(target_url, poolclass=NullPool)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM notifications"))
        connection.execute(text("CREATE TABLE stray_from_a_newer_schema (id integer)"))
    engine.dispose()
    forced = cli(target_env, "restore", "--yes", str(archive))
    assert forced.exit_code == 0, forced.output
    after = snapshot(target_url)
    assert_same_data(before, after)
    assert "stray_from_a_newer_schema" not in after["(tables)"][0]


@pytest.mark.slow
def test_sqlite_round_trip_of_a_live_database(tmp_path: Path) -> None:
    source_var, target_var = tmp_path / "source", tmp_path / "target"
    source_env = env_for(source_var, "")
    assert cli(source_env, "init-db").exit_code == 0
    uploads = populate(source_env)
    source_url = f"sqlite:///{source_var / 'quantdesk.db'}"
    before = snapshot(source_url)
    assert_rich(before)

    # A connection with an open write transaction: the copy must still be consistent.
    live = create_engine(source_url, poolclass=NullPool)
    with live.connect() as connection:
        connection.execute(text("SELECT 1"))
        made = cli(source_env, "backup")
    live.dispose()
    assert made.exit_code == 0, made.output
    written = sorted((source_var / "backups").glob("quantdesk-*.tar.gz"))
    assert len(written) == 1, "the default: one timestamped archive under VAR_DIR/backups"
    assert f"backup written: {written[0]}" in made.output
    assert "sqlite database at revision" in made.output
    assert "database.sqlite3" in archive_names(written[0])
    again = cli(source_env, "backup", str(written[0]))
    assert again.exit_code != 0
    assert "already exists" in again.output

    target_env = env_for(target_var, "")  # no database yet: it is made by the restore
    restored = cli(target_env, "restore", str(written[0]))
    assert restored.exit_code == 0, restored.output
    target_url = f"sqlite:///{target_var / 'quantdesk.db'}"
    assert_same_data(before, snapshot(target_url))
    assert stored_bytes(target_var, target_url) == uploads

    refused = cli(target_env, "restore", str(written[0]))
    assert refused.exit_code != 0
    assert "already holds data" in refused.output
    forced = cli(target_env, "restore", "--force", str(written[0]))
    assert forced.exit_code == 0, forced.output
    assert_same_data(before, snapshot(target_url))


def test_an_older_backup_restores_at_its_revision_and_says_so(tmp_path: Path) -> None:
    source = tmp_path / "old"
    source.mkdir()
    engine = create_engine(f"sqlite:///{source / 'quantdesk.db'}", poolclass=NullPool)
    migrate.upgrade(engine, "0007")
    engine.dispose()
    made = cli(env_for(source, ""), "backup", str(tmp_path / "old.tar.gz"))
    assert made.exit_code == 0, made.output
    assert "revision 0007" in made.output

    target_env = env_for(tmp_path / "new", "")
    restored = cli(target_env, "restore", str(tmp_path / "old.tar.gz"))
    assert restored.exit_code == 0, restored.output
    assert f"older than this version's ({migrate.head_revision()})" in restored.output
    assert "quantdesk init-db" in restored.output
    target_url = f"sqlite:///{tmp_path / 'new' / 'quantdesk.db'}"
    engine = create_engine(target_url, poolclass=NullPool)
    try:
        assert migrate.current_revision(engine) == "0007"
        assert cli(target_env, "init-db").exit_code == 0
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


# ---------------------------------------------------------------- refusals


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _manifest(**changes: Any) -> bytes:
    body = {
        "format": "quantdesk-backup",
        "version": 1,
        "dialect": "sqlite",
        "revision": migrate.head_revision(),
        "created_at": "2026-01-01T00:00:00+00:00",
        "database": "database.sqlite3",
        **changes,
    }
    return json.dumps(body).encode()


BAD_ARCHIVES: dict[str, tuple[bytes, str]] = {
    "random bytes": (b"not a backup\x00\xff" * 200, "not a QuantDesk backup"),
    "an empty file": (b"", "not a QuantDesk backup"),
    "a tar of something else": (_tar({"hello.txt": b"hi"}), "has no manifest.json"),
    "a manifest that is not JSON": (_tar({"manifest.json": b"{nope"}), "not JSON"),
    "another program's manifest": (
        _tar({"manifest.json": b'{"format": "other"}'}),
        "not a QuantDesk backup manifest",
    ),
    "no database member": (_tar({"manifest.json": _manifest()}), "no database.sqlite3"),
    "a member outside the layout": (
        _tar({"manifest.json": _manifest(), "database.sqlite3": b"", "../evil": b"x"}),
        "unexpected member '../evil'",
    ),
    "a PostgreSQL backup": (
        _tar(
            {
                "manifest.json": _manifest(dialect="postgresql", database="database.pgdump"),
                "database.pgdump": b"PGDMP",
            }
        ),
        "is a backup of a postgresql database; DATABASE_URL is sqlite",
    ),
    "a revision from newer code": (
        _tar({"manifest.json": _manifest(revision="9999"), "database.sqlite3": b""}),
        "does not know",
    ),
    "a database that is not SQLite": (
        _tar({"manifest.json": _manifest(), "database.sqlite3": b"garbage " * 100}),
        "cannot be restored",
    ),
}


@pytest.mark.parametrize("kind", list(BAD_ARCHIVES))
def test_restore_refuses_what_is_not_a_backup(tmp_path: Path, kind: str) -> None:
    content, message = BAD_ARCHIVES[kind]
    path = tmp_path / "suspect.tar.gz"
    path.write_bytes(content)
    var_dir = tmp_path / "var"
    result = cli(env_for(var_dir, ""), "restore", "--yes", str(path))
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), "a clear message, not a traceback"
    assert "Traceback" not in result.output
    assert message in result.output
    assert not (tmp_path / "evil").exists()
    assert not (var_dir / "quantdesk.db").exists() or (var_dir / "quantdesk.db").stat().st_size == 0


def _damage(kind: str, data: bytes) -> bytes:
    if kind == "truncated":
        return data[: len(data) // 2]
    damaged = bytearray(data)
    if kind == "flipped bytes":
        for index in range(len(data) // 2, len(data) // 2 + 50):
            damaged[index] ^= 0xFF
    else:  # a wrong CRC in the gzip trailer: only reading to the very end notices
        damaged[-6] ^= 0xFF
    return bytes(damaged)


@pytest.mark.parametrize("kind", ["truncated", "flipped bytes", "wrong checksum"])
def test_restore_refuses_a_damaged_backup(tmp_path: Path, kind: str) -> None:
    source_env = env_for(tmp_path / "source", "")
    assert cli(source_env, "init-db").exit_code == 0
    made = cli(source_env, "backup", str(tmp_path / "good.tar.gz"))
    assert made.exit_code == 0, made.output
    damaged = tmp_path / "damaged.tar.gz"
    damaged.write_bytes(_damage(kind, (tmp_path / "good.tar.gz").read_bytes()))
    target = tmp_path / "target"
    result = cli(env_for(target, ""), "restore", str(damaged))
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "not a readable .tar.gz archive" in result.output
    assert not (target / "quantdesk.db").exists()
    intact = cli(env_for(target, ""), "restore", str(tmp_path / "good.tar.gz"))
    assert intact.exit_code == 0, intact.output


def test_restore_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    result = cli(env_for(tmp_path, ""), "restore", str(tmp_path / "nowhere.tar.gz"))
    assert result.exit_code == 1
    assert "does not exist" in result.output


def test_backup_of_a_missing_sqlite_database(tmp_path: Path) -> None:
    result = cli(env_for(tmp_path, ""), "backup", str(tmp_path / "out.tar.gz"))
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "no SQLite database at" in result.output
    assert not (tmp_path / "quantdesk.db").exists(), "a backup never creates the database"
    assert list(tmp_path.iterdir()) == [], "and leaves no partial archive"


def test_backup_of_a_missing_postgres_database(tmp_path: Path) -> None:
    missing = make_url(TEST_DATABASE_URL).set(database="quantdesk_no_such_database_for_backup")
    url = missing.render_as_string(hide_password=False)
    result = cli(env_for(tmp_path, url), "backup", str(tmp_path / "out.tar.gz"))
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "cannot connect to" in result.output
    assert "does not exist" in result.output
    assert not (tmp_path / "out.tar.gz").exists()


def test_backup_of_a_database_without_the_schema(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'quantdesk.db'}", poolclass=NullPool)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE unrelated (id integer)"))
    engine.dispose()
    result = cli(env_for(tmp_path, ""), "backup", str(tmp_path / "out.tar.gz"))
    assert result.exit_code == 1
    assert "no QuantDesk schema" in result.output


# ---------------------------------------------------------------- the PostgreSQL programs


def _fake_tool(path: Path, version: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{path.name} (PostgreSQL) {version}'\n")
    path.chmod(0o755)


def test_the_newest_pg_tool_is_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tool(tmp_path / "path" / "pg_dump", "13.4")
    _fake_tool(tmp_path / "lib" / "16" / "bin" / "pg_dump", "16.2 (Debian 16.2-1)")
    _fake_tool(tmp_path / "lib" / "14" / "bin" / "pg_dump", "14.11")
    monkeypatch.setattr(backup, "PG_BIN_GLOB", str(tmp_path / "lib" / "*" / "bin"))
    found = backup.find_pg_tool("pg_dump", search_path=str(tmp_path / "path"))
    assert found.version == (16, 2)
    assert found.path == str(tmp_path / "lib" / "16" / "bin" / "pg_dump")
    with pytest.raises(backup.BackupError, match=r"older than PostgreSQL 17.*postgresql-client-17"):
        backup.find_pg_tool("pg_dump", at_least=17, search_path=str(tmp_path / "path"))


def test_a_missing_pg_tool_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backup, "PG_BIN_GLOB", str(tmp_path / "none" / "*" / "bin"))
    with pytest.raises(backup.BackupError, match=r"pg_restore was not found.*postgresql-client"):
        backup.find_pg_tool("pg_restore", search_path=str(tmp_path))


def test_the_password_goes_to_the_environment_not_argv() -> None:
    dbname, env = backup.libpq_connection(
        "postgresql+psycopg://quant:s3cr%40t@db.internal:6543/prod?sslmode=require"
    )
    assert dbname == "postgresql://quant@db.internal:6543/prod?sslmode=require"
    assert "s3cr" not in dbname
    assert env["PGPASSWORD"] == "s3cr@t"
    assert env["PATH"] == os.environ["PATH"]
