"""Background tasks: the in-process pool and a real Celery worker on Redis and PostgreSQL."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from quantdesk.app import create_app
from quantdesk.extensions import extensions_of
from quantdesk.mail import OutboxEmail
from quantdesk.settings import Settings
from quantdesk.tasks import CeleryRunner, InProcessRunner, task_name
from tests.conftest import FAST, TEST_REDIS_URL
from tests.support import BIN, Api, server_env

BROKER_URL = TEST_REDIS_URL.rsplit("/", 1)[0] + "/14"
SECRETS = {"SECRET_KEY": "s" * 40, "JWT_SECRET_KEY": "j" * 40}


def _wait_for_mail(database_url: str, *, timeout: float = 30.0) -> OutboxEmail:
    engine = create_engine(database_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with Session(engine) as session:
                mail = session.scalars(select(OutboxEmail)).first()
                if mail is not None and mail.status != "pending":
                    return mail
            time.sleep(0.2)
        raise AssertionError("the mail task did not run")
    finally:
        engine.dispose()


def _settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values = {**FAST, **SECRETS, "TASKS_EAGER": False, **overrides}
    return Settings(  # type: ignore[call-arg]
        _env_file=None, VAR_DIR=tmp_path, DATABASE_URL=database_url, REDIS_URL="", **values
    )


def test_only_registered_functions_are_tasks() -> None:
    with pytest.raises(ValueError, match="not a @background_task"):
        task_name(print)


@pytest.mark.slow
def test_in_process_pool_runs_the_task_after_the_request(
    tmp_path: Path, scratch_database: Callable[[str], str]
) -> None:
    database_url = scratch_database("pool")
    app = create_app(_settings(tmp_path, database_url))
    ext = extensions_of(app)
    assert isinstance(ext.tasks, InProcessRunner)
    try:
        api = Api(app)
        account = api.register()
        response = api.post("/api/auth/reset-password", json={"email": account.email})
        assert response.status_code == 202
        assert _wait_for_mail(database_url).status == "logged"
    finally:
        ext.tasks.shutdown()
        ext.db.dispose()


@contextmanager
def _worker(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [str(BIN / "quantdesk"), "worker", "--concurrency", "1", "--loglevel", "WARNING"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.slow
def test_celery_worker_runs_the_task(
    tmp_path: Path, scratch_database: Callable[[str], str]
) -> None:
    redis.Redis.from_url(BROKER_URL).flushdb()
    database_url = scratch_database("celery")
    settings = _settings(tmp_path, database_url, CELERY_BROKER_URL=BROKER_URL)
    app = create_app(settings)
    ext = extensions_of(app)
    assert isinstance(ext.tasks, CeleryRunner)
    env = server_env(
        QUANTDESK_ENV="production",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=BROKER_URL,
        VAR_DIR=str(tmp_path),
        **SECRETS,
    )
    try:
        api = Api(app)
        account = api.register()
        # The task is queued in Redis before any worker runs: nothing is lost meanwhile.
        assert api.post("/api/auth/reset-password", json={"email": account.email}).status_code
        assert redis.Redis.from_url(BROKER_URL).llen("celery") == 1
        with _worker(env):
            mail = _wait_for_mail(database_url)
        assert mail.status == "logged"
        assert mail.to_address == account.email
    finally:
        ext.db.dispose()
