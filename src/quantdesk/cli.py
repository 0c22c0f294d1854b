"""The `quantdesk` command: serve, init-db, create-admin, worker, scheduler, data, seed-demo,
backup, restore."""

from __future__ import annotations

import datetime as dt
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from quantdesk import migrate
from quantdesk.db import build_engine
from quantdesk.errors import APIError
from quantdesk.logs import configure_logging
from quantdesk.settings import Settings, load_settings

if TYPE_CHECKING:
    from flask import Flask

log = logging.getLogger("quantdesk.cli")


def _settings() -> Settings:
    try:
        settings = load_settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise click.ClickException(f"invalid settings: {exc}") from exc
    configure_logging(settings)
    return settings


def _apply_migrations(settings: Settings) -> None:
    engine = build_engine(settings)
    try:
        migrate.upgrade(engine)
        log.info("database at revision %s", migrate.current_revision(engine))
    finally:
        engine.dispose()


@click.group()
def main() -> None:
    """QuantDesk: the platform's command line."""


@main.command("init-db")
def init_db() -> None:
    """Create or upgrade the database schema (Alembic migrations to head)."""
    settings = _settings()
    _apply_migrations(settings)
    click.echo(f"database ready: {_redacted(settings.database_url)}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
def serve(host: str, port: int) -> None:
    """Development server: applies pending migrations, then serves the API."""
    from quantdesk.app import create_app

    settings = _settings()
    _apply_migrations(settings)
    app = create_app(settings)
    if settings.MARKET_SEED_ON_START:
        _seed_once(app)
    scheduler = None
    if settings.SCHEDULER_IN_SERVER:
        from quantdesk.scheduler import build_scheduler

        scheduler = build_scheduler(app)
        scheduler.start()
    click.echo(f"QuantDesk API on http://{host}:{port}/api  (docs: http://{host}:{port}/api/docs)")
    try:
        app.run(host=host, port=port, threaded=True, use_reloader=False, debug=False)
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)


@main.command("create-admin")
@click.option("--username", required=True)
@click.option("--email", required=True)
@click.option(
    "--password",
    help="omit to be asked; for an existing account, sets a new password when given",
)
def create_admin(username: str, email: str, password: str | None) -> None:
    """Create an admin account, or give an existing account the admin role."""
    from quantdesk.app import create_app
    from quantdesk.auth import service
    from quantdesk.extensions import extensions_of

    settings = _settings()
    _apply_migrations(settings)
    app = create_app(settings)
    ext = extensions_of(app)
    with ext.db.session_scope() as session:
        exists = service.get_user_by_username(session, username) is not None
        if password is None and not exists:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        try:
            user, created = service.ensure_admin(
                session, settings=settings, username=username, email=email, password=password
            )
        except APIError as exc:
            details = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in exc.details.items())
            raise click.ClickException(f"{exc.message} {details}".strip()) from exc
        verb = "created" if created else "granted admin to"
        click.echo(f"{verb} {user.username} (id {user.id}, roles {', '.join(user.role_names)})")


@main.command()
@click.option("--concurrency", type=click.IntRange(1, 64), help="default: WORKER_CONCURRENCY")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(concurrency: int | None, loglevel: str) -> None:
    """Run a Celery worker for background tasks (needs CELERY_BROKER_URL)."""
    from celery.signals import worker_process_init

    from quantdesk.app import create_app
    from quantdesk.extensions import extensions_of

    settings = _settings()
    if not settings.CELERY_BROKER_URL:
        raise click.ClickException("set CELERY_BROKER_URL (redis://... or amqp://...) first")
    app = create_app(settings)
    ext = extensions_of(app)
    if ext.celery is None:
        raise click.ClickException("Celery is off: TASKS_EAGER is set")

    @worker_process_init.connect(weak=False)
    def _fresh_connections(**_: object) -> None:
        # A forked pool process must not share the parent's database connections.
        ext.db.engine.dispose(close=False)

    if settings.WORKER_METRICS_PORT:
        from quantdesk import metrics

        metrics.clear_multiprocess_dir()
        metrics.start_metrics_server(
            settings.WORKER_METRICS_PORT, broker_url=settings.CELERY_BROKER_URL
        )

    ext.celery.worker_main(
        [
            "worker",
            f"--loglevel={loglevel}",
            f"--concurrency={concurrency or settings.WORKER_CONCURRENCY}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@main.command()
def scheduler() -> None:
    """Run the schedule (paper-trading steps, the daily data sync); its jobs only enqueue tasks.

    Production runs one such process beside the workers (set SCHEDULER_IN_SERVER=false for any
    `quantdesk serve`). Stops on SIGTERM or Ctrl-C.
    """
    import signal
    import threading

    from quantdesk.app import create_app
    from quantdesk.scheduler import run_until_stopped

    settings = _settings()
    engine = build_engine(settings)
    try:
        current, head = migrate.current_revision(engine), migrate.head_revision()
    finally:
        engine.dispose()
    if current != head:
        raise click.ClickException(
            f"the database is at revision {current}, not {head}: run `quantdesk init-db` first"
        )
    if not settings.CELERY_BROKER_URL:
        log.warning("no CELERY_BROKER_URL: scheduled work runs in this process's thread pool")
    app = create_app(settings)
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("scheduler: signal %s, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo("QuantDesk scheduler running (Ctrl-C stops it)")
    run_until_stopped(app, stop)


# ---------------------------------------------------------------- market data


def _seed_once(app: Flask) -> None:
    """Load the sample market data into a database that has no instrument yet."""
    from quantdesk.extensions import extensions_of
    from quantdesk.market import sync
    from quantdesk.market.cache import market_cache

    ext = extensions_of(app)
    with app.app_context(), ext.db.session_scope() as session:
        if sync.has_stocks(session):
            return
        click.echo("loading the sample market data (first start only)...")
        cache = market_cache(ext)
        result = sync.seed_demo(session, cache=cache)
        click.echo(f"sample data: {result.symbols_ok} instruments, {result.bars_written} bars")


class _ProgressBar:
    """A terminal progress bar for a sync, opened when the sync knows its length."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None

    def __call__(self, done: int, total: int, symbol: str) -> None:
        if self.bar is None:
            self.bar = click.progressbar(
                length=total, label=self.label, item_show_func=lambda item: item, width=30
            )
            self.bar.__enter__()
        self.bar.update(1, current_item=symbol)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def _report(result: Any) -> None:
    click.echo(
        f"{result.provider} sync #{result.run_id} {result.status}: {result.symbols_ok} of "
        f"{result.symbols_total} symbols, {result.bars_written} bars written"
    )
    for symbol, reason in sorted(result.failures.items()):
        click.echo(f"  failed {symbol}: {reason}", err=True)
    if result.failures:
        raise click.ClickException(
            f"{len(result.failures)} failed; their stored bars are unchanged (see above)"
        )


@main.group()
def data() -> None:
    """Market data: sync bars from a provider, store indicator series."""


@data.command("sync")
@click.option(
    "--provider",
    type=click.Choice(["sample", "akshare", "yfinance"]),
    help="default: MARKET_PROVIDER",
)
@click.option("--symbols", help="comma-separated, e.g. 600519.SH,000001.SZ or AAPL,MSFT")
@click.option("--all", "everything", is_flag=True, help="the provider's universe and its symbols")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), help="default: after the last bar")
@click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="default: today")
@click.option("--refresh-listings", is_flag=True, help="fetch names and industries again")
def data_sync(
    provider: str | None,
    symbols: str | None,
    everything: bool,
    start: dt.datetime | None,
    end: dt.datetime | None,
    refresh_listings: bool,
) -> None:
    """Fetch daily bars into the database: idempotent, retried, never deleting on failure."""
    from quantdesk.app import create_app
    from quantdesk.extensions import extensions_of
    from quantdesk.market import sync
    from quantdesk.market.cache import market_cache
    from quantdesk.market.providers import get_provider
    from quantdesk.market.symbols import normalise

    if bool(symbols) == everything:
        raise click.UsageError("give --symbols or --all")
    wanted = None
    if symbols:
        raw = [s for s in symbols.split(",") if s.strip()]
        wanted = [normalise(s) for s in raw]
        bad = [r for r, s in zip(raw, wanted, strict=True) if s is None]
        if bad:
            raise click.UsageError(f"not symbols: {', '.join(bad)}")
    if start and end and start > end:
        raise click.UsageError("--start is after --end")
    settings = _settings()
    _apply_migrations(settings)
    app = create_app(settings)
    ext = extensions_of(app)
    chosen = get_provider(provider or settings.MARKET_PROVIDER, settings)
    bar = _ProgressBar(f"{chosen.name} sync")
    with app.app_context(), ext.db.session_scope() as session:
        try:
            result = sync.sync(
                session,
                provider=chosen,
                symbols=[s for s in wanted if s] if wanted else None,
                start=start.date() if start else None,
                end=end.date() if end else None,
                policy=sync.RetryPolicy.from_settings(settings),
                lookback_days=settings.MARKET_SYNC_LOOKBACK_DAYS,
                refresh_listings=refresh_listings,
                progress=bar,
                cache=market_cache(ext),
            )
        finally:
            bar.close()
    _report(result)


@data.command("indicators")
@click.option("--symbols", required=True, help="comma-separated")
@click.option("--names", default="sma,ema,macd,rsi,boll,kdj,atr,obv", show_default=True)
def data_indicators(symbols: str, names: str) -> None:
    """Compute indicator series with default parameters into technical_indicators."""
    from quantdesk.app import create_app
    from quantdesk.extensions import extensions_of
    from quantdesk.market import service
    from quantdesk.market.analytics import INDICATORS

    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in INDICATORS]
    if unknown:
        raise click.UsageError(f"unknown indicators {unknown}; known: {', '.join(INDICATORS)}")
    settings = _settings()
    _apply_migrations(settings)
    app = create_app(settings)
    with app.app_context(), extensions_of(app).db.session_scope() as session:
        for symbol in [s for s in symbols.split(",") if s.strip()]:
            try:
                rows = service.store_indicators(session, symbol=symbol, names=chosen, params={})
            except APIError as exc:
                raise click.ClickException(exc.message) from exc
            click.echo(f"{symbol}: {rows} indicator values stored")


@main.command("seed-demo")
def seed_demo() -> None:
    """Load the bundled sample market data (idempotent): real US bars, synthetic A-shares."""
    from quantdesk.app import create_app
    from quantdesk.extensions import extensions_of
    from quantdesk.market import sync
    from quantdesk.market.cache import market_cache

    settings = _settings()
    _apply_migrations(settings)
    app = create_app(settings)
    ext = extensions_of(app)
    bar = _ProgressBar("sample data")
    with app.app_context(), ext.db.session_scope() as session:
        try:
            cache = market_cache(ext)
            result = sync.seed_demo(session, cache=cache, progress=bar)
        finally:
            bar.close()
    _report(result)


# ---------------------------------------------------------------- backups


@main.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
def backup(path: Path | None) -> None:
    """Back up the database and the uploaded files into one .tar.gz archive.

    PATH is the archive, or a folder for it; default VAR_DIR/backups/quantdesk-<time>.tar.gz.
    """
    from quantdesk import backup as backups

    settings = _settings()
    try:
        result = backups.create_backup(settings, path)
    except (backups.BackupError, OSError) as exc:  # OSError: disk full, permissions
        raise click.ClickException(str(exc)) from exc
    manifest = result.manifest
    click.echo(
        f"backup written: {result.path} ({backups.describe_size(result.size)}; "
        f"{manifest.dialect} database at revision {manifest.revision}, "
        f"{manifest.files} uploaded files, {backups.describe_size(manifest.files_bytes)})"
    )
    if manifest.files_storage != "local":
        click.echo(
            "uploaded files live in the S3 bucket and are not in the archive: back the bucket "
            "up with its own versioning or replication",
            err=True,
        )
    for key in result.missing_files:
        click.echo(f"warning: the stored bytes of file {key} are missing (not backed up)", err=True)


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--yes",
    "--force",
    "force",
    is_flag=True,
    help="replace the contents of a database that already holds data",
)
def restore(path: Path, force: bool) -> None:
    """Restore a `quantdesk backup` archive into DATABASE_URL (and the files storage).

    Stop the web, worker and scheduler processes first. The schema ends at the backup's
    Alembic revision; `quantdesk init-db` then upgrades an older one.
    """
    from quantdesk import backup as backups

    settings = _settings()
    try:
        result = backups.restore_backup(settings, path, force=force)
    except (backups.BackupError, OSError) as exc:  # OSError: disk full, permissions
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"restored {path} into {_redacted(settings.database_url)}: revision "
        f"{result.manifest.revision}, {result.files_restored} uploaded files"
    )
    if result.behind_head:
        click.echo(
            f"the backup's schema ({result.manifest.revision}) is older than this version's "
            f"({result.head}): run `quantdesk init-db` to upgrade it"
        )


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    sys.exit(main())
