"""Backups of one deployment: its database and its uploaded files (`quantdesk backup`, `restore`).

A backup is one `.tar.gz` archive, so it is moved, kept and restored as a unit:

- `manifest.json`: what the archive holds (database kind, Alembic revision, tool versions),
  read first so a restore can refuse a wrong archive before it touches anything;
- the database: `database.pgdump` (`pg_dump --format=custom`, uncompressed because the archive
  is gzipped once) or `database.sqlite3` (sqlite3's online backup API, a consistent copy of a
  live database, which a plain file copy of a WAL database is not);
- `files/<k[:2]>/<key>`: the bytes of every uploaded file whose row the database holds, when
  FILES_STORAGE=local. Rows without their bytes would be a broken restore, so they travel
  together. The database is dumped first and the files read after: an upload stores its
  bytes before its row commits, so every row in the dump has its bytes on disk by then. With
  FILES_STORAGE=s3 the objects stay in the bucket (use the bucket's versioning or replication);
  a restore still writes any files an archive holds through the configured storage.

Restoring refuses a target that already holds data unless forced, empties the target's schema
and loads the archive, leaving the schema at the archive's Alembic revision (never migrating:
`quantdesk init-db` upgrades an older one). Keys are not in the archive: webhook secrets are
encrypted under ENCRYPTION_KEY or SECRET_KEY, which must come along separately.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import gzip
import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

from sqlalchemy import Connection, Engine, create_engine, inspect, literal, select, table
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from quantdesk import migrate
from quantdesk.files.storage import LocalStorage, build_storage
from quantdesk.settings import FileStorage, Settings

FORMAT = "quantdesk-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PG_MEMBER = "database.pgdump"
SQLITE_MEMBER = "database.sqlite3"
FILES_DIR = "files"
FILES_TABLE = "file_records"
# Tables that `quantdesk init-db` fills by itself: rows there do not make a database "in use".
SEED_TABLES = frozenset({"alembic_version", "roles", "file_categories"})
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
_KEY = re.compile(r"[0-9a-f]{32}")
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")
_TOOL_TIMEOUT = 10
CONNECT_TIMEOUT_SECONDS = 10


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why, for the operator."""


@dataclass(frozen=True)
class PgTool:
    """One installed PostgreSQL client program and its version (major, minor)."""

    path: str
    version: tuple[int, int]


@dataclass
class Manifest:
    """What an archive holds; the first member of every archive, as JSON."""

    dialect: str  # "postgresql" or "sqlite"
    revision: str
    created_at: str
    database: str
    files: int = 0
    files_bytes: int = 0
    files_storage: str = "local"
    tools: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        body = {"format": FORMAT, "version": FORMAT_VERSION, **self.__dict__}
        return json.dumps(body, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise BackupError(f"its {MANIFEST} is not JSON") from exc
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise BackupError(f"its {MANIFEST} is not a QuantDesk backup manifest")
        if body.get("version") != FORMAT_VERSION:
            raise BackupError(
                f"it is format version {body.get('version')!r}; "
                f"this QuantDesk reads {FORMAT_VERSION}"
            )
        try:
            manifest = cls(
                dialect=str(body["dialect"]),
                revision=str(body["revision"]),
                created_at=str(body["created_at"]),
                database=str(body["database"]),
                files=int(body.get("files", 0)),
                files_bytes=int(body.get("files_bytes", 0)),
                files_storage=str(body.get("files_storage", "local")),
                tools={str(k): str(v) for k, v in dict(body.get("tools", {})).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupError(f"its {MANIFEST} lacks or garbles {exc}") from exc
        expected = {"postgresql": PG_MEMBER, "sqlite": SQLITE_MEMBER}.get(manifest.dialect)
        if manifest.database != expected:
            raise BackupError(f"its {MANIFEST} names an unknown database {manifest.database!r}")
        return manifest


@dataclass
class BackupResult:
    path: Path
    size: int
    manifest: Manifest
    missing_files: list[str] = field(default_factory=list)


@dataclass
class RestoreResult:
    manifest: Manifest
    head: str | None
    files_restored: int

    @property
    def behind_head(self) -> bool:
        """The restored schema is older than this code's migrations (`init-db` upgrades it)."""
        return self.manifest.revision != self.head


# ---------------------------------------------------------------- the database URL


def dialect_of(url: str) -> str:
    """'postgresql' or 'sqlite'; BackupError for any other database."""
    name = make_url(url).get_backend_name()
    if name not in ("postgresql", "sqlite"):
        raise BackupError(f"backups handle PostgreSQL and SQLite, not {name}")
    return name


def redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path:
    """The file of a SQLite URL (relative paths are to the working directory, as SQLAlchemy's)."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        raise BackupError(f"{url} is not a SQLite database file")
    return Path(database)


def libpq_connection(url: str) -> tuple[str, dict[str, str]]:
    """The libpq connection URI of a SQLAlchemy PostgreSQL URL, and the environment to run a
    client program with.

    The `+psycopg` driver part goes (libpq knows only postgresql://); the password goes to
    PGPASSWORD, never into argv where `ps` shows it. Query parameters (sslmode, host=/socket
    dir...) are libpq's own and stay. `--no-password` on the command keeps it from prompting.
    """
    parsed: URL = make_url(url)
    env = dict(os.environ)
    env.setdefault("PGCONNECT_TIMEOUT", str(CONNECT_TIMEOUT_SECONDS))
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    # URL.set(password=None) would keep the password: build the URL again without it.
    plain = URL.create(
        "postgresql",
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=parsed.query,
    )
    return plain.render_as_string(hide_password=False), env


def _engine(url: str) -> Engine:
    """A short-lived engine of its own: no pool, nothing shared with an app, and a bounded
    connect, so an unreachable server fails the command instead of hanging it."""
    if dialect_of(url) == "postgresql":
        return create_engine(
            url, poolclass=NullPool, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS}
        )
    return create_engine(url, poolclass=NullPool)


def _reason(exc: BaseException) -> str:
    """The driver's words for a failed connection, without SQLAlchemy's link and SQL."""
    original = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(original).strip().splitlines() if line.strip()]
    return "; ".join(lines[:3]) or type(exc).__name__


# ---------------------------------------------------------------- PostgreSQL client programs


def _tool_version(path: str) -> tuple[int, int] | None:
    try:
        done = subprocess.run(  # noqa: S603 - a PostgreSQL program found on this machine
            [path, "--version"], capture_output=True, text=True, timeout=_TOOL_TIMEOUT, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(done.stdout)
    if done.returncode != 0 or not match:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def find_pg_tool(
    name: str, *, at_least: int | None = None, search_path: str | None = None
) -> PgTool:
    """The newest `name` (pg_dump, pg_restore) on PATH or under /usr/lib/postgresql/*/bin.

    Newest because pg_dump refuses a server newer than itself and pg_restore an archive newer
    than itself, while a newer one handles older servers and archives. `at_least` is the major
    version it must have (the server's, the archive's).
    """
    candidates: list[str] = []
    found = shutil.which(name, path=search_path)
    if found:
        candidates.append(found)
    candidates += sorted(glob.glob(f"{PG_BIN_GLOB}/{name}"))
    tools = [
        PgTool(path, version)
        for path in dict.fromkeys(candidates)
        if (version := _tool_version(path)) is not None
    ]
    if not tools:
        raise BackupError(
            f"{name} was not found on PATH or under {PG_BIN_GLOB}: install the PostgreSQL "
            "client programs (Debian: apt-get install postgresql-client)"
        )
    best = max(tools, key=lambda tool: tool.version)
    if at_least is not None and best.version[0] < at_least:
        raise BackupError(
            f"{name} {best.version[0]}.{best.version[1]} ({best.path}) is older than "
            f"PostgreSQL {at_least}, which it must handle: install the client programs of "
            f"version {at_least} or newer (Debian: postgresql-client-{at_least})"
        )
    return best


def _run_pg(tool: PgTool, args: list[str], env: dict[str, str], what: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own argv, no shell
        [tool.path, *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        detail = done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}"
        raise BackupError(f"{what} failed: {detail}")
    return done.stdout


# ---------------------------------------------------------------- backup


def default_path(settings: Settings, now: dt.datetime | None = None) -> Path:
    """VAR_DIR/backups/quantdesk-<UTC time>.tar.gz: the one folder a deployment keeps state in
    (a volume in Docker), and names that sort by time."""
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return settings.VAR_DIR / "backups" / f"quantdesk-{moment:%Y%m%dT%H%M%SZ}.tar.gz"


def create_backup(settings: Settings, path: Path | None = None) -> BackupResult:
    """Back up DATABASE_URL and the uploaded files into one archive at `path`.

    `path` may be an existing folder (the archive gets a timestamped name inside it); an
    existing file is refused rather than overwritten. The archive is written under a
    temporary name and renamed at the end, so a failed backup leaves no half archive, and it
    is readable by its owner only: it holds password hashes and every user's data.
    """
    url = settings.database_url
    dialect = dialect_of(url)
    target = path if path is not None else default_path(settings)
    if target.is_dir():
        target = target / default_path(settings).name
    if target.exists():
        raise BackupError(f"{target} already exists; give another path")
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".backup-") as scratch:
        database = Path(scratch) / "database"
        if dialect == "sqlite":
            revision, keys = _backup_sqlite(url, database)
            tools = {"sqlite": sqlite3.sqlite_version}
        else:
            revision, keys, tools = _backup_postgres(url, database)
        manifest = Manifest(
            dialect=dialect,
            revision=revision,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            database=SQLITE_MEMBER if dialect == "sqlite" else PG_MEMBER,
            files_storage=settings.FILES_STORAGE.value,
            tools=tools,
        )
        files, missing = _local_objects(settings, keys)
        manifest.files = len(files)
        manifest.files_bytes = sum(size for _, _, size in files)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with _private(partial), tarfile.open(partial, "w:gz", compresslevel=6) as tar:
                _add_bytes(tar, MANIFEST, manifest.to_json())
                tar.add(database, arcname=manifest.database, recursive=False)
                for key, object_path, _size in files:
                    try:
                        tar.add(object_path, arcname=f"{FILES_DIR}/{key[:2]}/{key}")
                    except FileNotFoundError:  # its file was deleted since the dump
                        missing.append(key)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return BackupResult(target, target.stat().st_size, manifest, missing)


@contextlib.contextmanager
def _private(path: Path) -> Iterator[None]:
    """Create `path` empty with mode 0600 before anything is written to it."""
    path.touch(mode=0o600, exist_ok=False)
    yield


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(dt.datetime.now(dt.UTC).timestamp())
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def _backup_sqlite(url: str, out: Path) -> tuple[str, list[str]]:
    """Copy a live SQLite database with the online backup API; its revision and file keys
    come from the copy, so they agree with it exactly."""
    source_path = sqlite_path(url)
    if not source_path.is_file():
        raise BackupError(f"no SQLite database at {source_path}: nothing to back up")
    try:
        with (
            contextlib.closing(sqlite3.connect(source_path)) as source,
            contextlib.closing(sqlite3.connect(out)) as copy,
        ):
            source.backup(copy)
            revision = _sqlite_revision(copy)
            keys = _sqlite_keys(copy)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"cannot read the SQLite database {source_path}: {exc}") from exc
    if revision is None:
        raise BackupError(
            f"{source_path} holds no QuantDesk schema (no Alembic revision): nothing to back up"
        )
    return revision, keys


def _sqlite_revision(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return None
    return str(row[0]) if row else None


def _sqlite_keys(connection: sqlite3.Connection) -> list[str]:
    try:
        rows = connection.execute("SELECT storage_key FROM file_records").fetchall()
    except sqlite3.OperationalError:  # a schema from before the files domain
        return []
    return [str(key) for (key,) in rows]


def _backup_postgres(url: str, out: Path) -> tuple[str, list[str], dict[str, str]]:
    """pg_dump the database, then read the file keys (after the dump: see the module doc)."""
    engine = _engine(url)
    try:
        try:
            with engine.connect() as connection:
                server = connection.dialect.server_version_info or (0,)
                revision = migrate.current_revision(engine)
        except SQLAlchemyError as exc:
            raise BackupError(f"cannot connect to {redacted(url)}: {_reason(exc)}") from exc
        if revision is None:
            raise BackupError(
                f"{redacted(url)} holds no QuantDesk schema (no Alembic revision): "
                "nothing to back up"
            )
        tool = find_pg_tool("pg_dump", at_least=int(server[0]))
        dbname, env = libpq_connection(url)
        _run_pg(
            tool,
            [
                "--format=custom",
                "--compress=0",
                "--no-password",
                f"--file={out}",
                f"--dbname={dbname}",
            ],
            env,
            "pg_dump",
        )
        try:
            with engine.connect() as connection:
                keys = _keys(connection)
        except SQLAlchemyError as exc:
            raise BackupError(f"cannot read {FILES_TABLE}: {_reason(exc)}") from exc
    finally:
        engine.dispose()
    tools = {
        "pg_dump": "{}.{}".format(*tool.version),
        "server": ".".join(str(part) for part in server[:2]),
    }
    return revision, keys, tools


def _keys(connection: Connection) -> list[str]:
    if not inspect(connection).has_table(FILES_TABLE):
        return []
    rows = connection.exec_driver_sql("SELECT storage_key FROM file_records")
    return [str(key) for (key,) in rows]


def _local_objects(
    settings: Settings, keys: list[str]
) -> tuple[list[tuple[str, Path, int]], list[str]]:
    """(key, path, size) of each stored object the rows name, and the keys whose bytes are
    missing; nothing when the files live in S3."""
    if settings.FILES_STORAGE is not FileStorage.LOCAL:
        return [], []
    storage = LocalStorage(settings.files_local_dir)
    present: list[tuple[str, Path, int]] = []
    missing: list[str] = []
    for key in sorted(set(keys)):
        if not _KEY.fullmatch(key):
            missing.append(key)
            continue
        object_path = storage.path_of(key)
        try:
            present.append((key, object_path, object_path.stat().st_size))
        except FileNotFoundError:
            missing.append(key)
    return present, missing


# ---------------------------------------------------------------- reading an archive


def read_manifest(path: Path) -> Manifest:
    """The manifest of the archive at `path`, after checking every member is one a backup has.

    BackupError, never a traceback, for anything else: a missing file, not a tar, no
    manifest, a member outside the layout (which would also guard extraction).
    """
    if not path.exists():
        raise BackupError(f"{path} does not exist")
    if not path.is_file():
        raise BackupError(f"{path} is not a file")
    try:
        _check_gzip(path)
        with tarfile.open(path, "r:gz") as tar:
            members = tar.getmembers()
            first = tar.extractfile(MANIFEST) if members and members[0].name == MANIFEST else None
            if first is None:
                raise BackupError(f"{path} is not a QuantDesk backup: it has no {MANIFEST}")
            manifest = Manifest.from_json(first.read())
    except (tarfile.TarError, EOFError, OSError, zlib.error, KeyError) as exc:
        raise BackupError(
            f"{path} is not a QuantDesk backup (not a readable .tar.gz archive: {exc})"
        ) from exc
    except BackupError as exc:
        raise BackupError(f"{path} is not a usable QuantDesk backup: {exc}") from exc
    names = {member.name for member in members}
    if manifest.database not in names:
        raise BackupError(f"{path} is not a usable QuantDesk backup: no {manifest.database}")
    for member in members[1:]:
        if not _expected_member(member, manifest):
            raise BackupError(
                f"{path} is not a usable QuantDesk backup: unexpected member {member.name!r}"
            )
    return manifest


def _check_gzip(path: Path) -> None:
    """Read the whole gzip stream, so its CRC and length are checked: tarfile stops at the
    end-of-archive blocks and never reaches the trailer, so a damaged archive could restore."""
    with gzip.open(path, "rb") as stream:
        while stream.read(1 << 20):
            pass


def _expected_member(member: tarfile.TarInfo, manifest: Manifest) -> bool:
    if member.name == manifest.database:
        return member.isfile()
    parts = member.name.split("/")
    if member.isdir():
        return parts[0] == FILES_DIR and len(parts) <= 2
    return (
        member.isfile()
        and len(parts) == 3
        and parts[0] == FILES_DIR
        and _KEY.fullmatch(parts[2]) is not None
        and parts[1] == parts[2][:2]
    )


# ---------------------------------------------------------------- restore


def holds_data(url: str) -> list[str]:
    """The tables of the target that hold rows a user made (all but the init-db seeds).

    Empty for a database that does not exist yet (SQLite), has no tables, or was only
    initialised: those are safe to restore into without --yes.
    """
    if dialect_of(url) == "sqlite" and not sqlite_path(url).exists():
        return []
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            used = []
            for name in sorted(inspect(connection).get_table_names()):
                if name in SEED_TABLES:
                    continue
                if connection.scalar(select(literal(1)).select_from(table(name)).limit(1)):
                    used.append(name)
            return used
    except SQLAlchemyError as exc:
        raise BackupError(f"cannot connect to {redacted(url)}: {_reason(exc)}") from exc
    finally:
        engine.dispose()


def restore_backup(settings: Settings, path: Path, *, force: bool = False) -> RestoreResult:
    """Replace DATABASE_URL's contents (and put the files) with the archive at `path`.

    Checks come first, in the order that changes nothing: the archive, its kind against the
    target, its revision against this code, the target's emptiness (unless `force`), the
    database member itself. Only then is the target emptied and loaded.
    """
    url = settings.database_url
    dialect = dialect_of(url)
    manifest = read_manifest(path)
    if manifest.dialect != dialect:
        raise BackupError(
            f"{path} is a backup of a {manifest.dialect} database; DATABASE_URL is {dialect}"
        )
    head = migrate.head_revision()
    if not _known_revision(manifest.revision):
        raise BackupError(
            f"{path} is at Alembic revision {manifest.revision}, which this QuantDesk does not "
            "know (a newer version made it): restore it with that version"
        )
    if not force:
        used = holds_data(url)
        if used:
            raise BackupError(
                f"{redacted(url)} already holds data (in {', '.join(used[:5])}"
                f"{', ...' if len(used) > 5 else ''}): restoring replaces all of it; "
                "pass --yes to do so"
            )
    scratch_root = settings.VAR_DIR
    scratch_root.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(dir=scratch_root, prefix=".restore-") as scratch,
        tarfile.open(path, "r:gz") as tar,
    ):
        database = Path(scratch) / "database"
        source = tar.extractfile(manifest.database)
        if source is None:  # read_manifest checked it is a regular file
            raise BackupError(f"{path}: {manifest.database} is not a file")
        with source, database.open("wb") as out:
            shutil.copyfileobj(source, out)
        if dialect == "sqlite":
            _restore_sqlite(url, database, manifest)
        else:
            _restore_postgres(url, database, manifest)
        restored = _revision_of(url)
        if restored != manifest.revision:
            raise BackupError(
                f"after the restore the database is at revision {restored}, not the backup's "
                f"{manifest.revision}"
            )
        files = _restore_files(settings, tar, url)
    return RestoreResult(manifest, head, files)


def _known_revision(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory(str(migrate.MIGRATIONS_DIR)).get_revision(revision) is not None
    except CommandError:
        return False


def _revision_of(url: str) -> str | None:
    engine = _engine(url)
    try:
        return migrate.current_revision(engine)
    except SQLAlchemyError as exc:
        raise BackupError(f"cannot read the restored revision: {_reason(exc)}") from exc
    finally:
        engine.dispose()


def _restore_sqlite(url: str, database: Path, manifest: Manifest) -> None:
    """Check the copy, then write it over the target page by page with the backup API, which
    takes the target's locks: a process that has it open sees the old or the new database."""
    try:
        with contextlib.closing(sqlite3.connect(database)) as copy:
            if copy.execute("PRAGMA integrity_check").fetchone() != ("ok",):
                raise BackupError("the backup's SQLite database fails its integrity check")
            if _sqlite_revision(copy) != manifest.revision:
                raise BackupError("the backup's SQLite database is not at its manifest's revision")
            target_path = sqlite_path(url)
            target_path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(sqlite3.connect(target_path)) as target:
                copy.backup(target)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the backup's SQLite database cannot be restored: {exc}") from exc


def _restore_postgres(url: str, dump: Path, manifest: Manifest) -> None:
    """Check the dump is readable (pg_restore --list), empty the target's schema, then
    pg_restore it in one transaction without owners or grants, so it loads into a database
    of another role and a failure part-way loads nothing."""
    dumped_by = manifest.tools.get("pg_dump", "0").split(".")[0]
    tool = find_pg_tool("pg_restore", at_least=int(dumped_by) if dumped_by.isdigit() else None)
    dbname, env = libpq_connection(url)
    _run_pg(tool, ["--list", str(dump)], env, "reading the backup's dump (pg_restore --list)")
    _empty_postgres(url)
    _run_pg(
        tool,
        [
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            "--no-password",
            f"--dbname={dbname}",
            str(dump),
        ],
        env,
        "pg_restore",
    )


def _empty_postgres(url: str) -> None:
    """Drop every view, table, sequence and enum type of the target's default schema.

    Rather than pg_restore --clean, which drops only what the dump holds: a table that a newer
    schema added would survive beside an older alembic_version, and `init-db` would then fail
    to create it.
    """
    engine = _engine(url)
    try:
        with engine.begin() as connection:
            quote = connection.dialect.identifier_preparer.quote
            inspector = inspect(connection)
            views = [quote(name) for name in inspector.get_view_names()]
            tables = [quote(name) for name in inspector.get_table_names()]
            sequences = [quote(name) for name in inspector.get_sequence_names()]
            enums = [quote(enum["name"]) for enum in inspector.get_enums()]  # type: ignore[attr-defined]
            for kind, names in (
                ("VIEW", views),
                ("TABLE", tables),
                ("SEQUENCE", sequences),
                ("TYPE", enums),
            ):
                if names:
                    connection.exec_driver_sql(f"DROP {kind} IF EXISTS {', '.join(names)} CASCADE")
    except SQLAlchemyError as exc:
        raise BackupError(f"cannot empty {redacted(url)}: {_reason(exc)}") from exc
    finally:
        engine.dispose()


def _restore_files(settings: Settings, tar: tarfile.TarFile, url: str) -> int:
    """Write the archive's files through the configured storage (local folder or S3), each
    atomically; stored objects the archive does not hold are left alone."""
    members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(f"{FILES_DIR}/")]
    if not members:
        return 0
    content_types = _content_types(url)
    storage = build_storage(settings)
    for member in members:
        key = member.name.rsplit("/", 1)[-1]
        source = tar.extractfile(member)
        if source is None:
            continue
        try:
            with source:
                storage.put(
                    key,
                    cast("BinaryIO", source),
                    content_type=content_types.get(key, "application/octet-stream"),
                )
        except Exception as exc:  # OSError, or botocore's errors for S3
            raise BackupError(
                f"the database is restored, but storing uploaded file {key} failed ({exc}): "
                "restore again with --yes once the files storage works"
            ) from exc
    return len(members)


def _content_types(url: str) -> dict[str, str]:
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(FILES_TABLE):
                return {}
            rows = connection.exec_driver_sql("SELECT storage_key, content_type FROM file_records")
            return {str(key): str(kind) for key, kind in rows}
    finally:
        engine.dispose()


def describe_size(size: int) -> str:
    """A byte count for people: 512 B, 3.4 KB, 12.0 MB."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns
