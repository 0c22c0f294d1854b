"""The `quantdesk` command: serve, init-db, create-admin (more commands join with their issues)."""

from __future__ import annotations

import logging
import sys

import click

from quantdesk import migrate
from quantdesk.db import build_engine
from quantdesk.errors import APIError
from quantdesk.logs import configure_logging
from quantdesk.settings import Settings, load_settings

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
    click.echo(f"QuantDesk API on http://{host}:{port}/api  (docs: http://{host}:{port}/api/docs)")
    app.run(host=host, port=port, threaded=True, use_reloader=False, debug=False)


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

    ext.celery.worker_main(
        [
            "worker",
            f"--loglevel={loglevel}",
            f"--concurrency={concurrency or settings.WORKER_CONCURRENCY}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    sys.exit(main())
