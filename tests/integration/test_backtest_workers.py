"""Backtests on real Celery workers (Redis broker, PostgreSQL): a killed worker's run finishes.

The web side is an app in this process whose task runner sends to Redis; the workers are
`quantdesk worker` processes. Killing a worker with SIGKILL in the middle of a backtest leaves
its message unacknowledged (late acknowledgement); once the visibility timeout has passed, the
next worker to start takes it back and runs the backtest again, and it is stored exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from quantdesk.app import create_app
from quantdesk.backtests.models import Backtest, BacktestEquity, BacktestResult
from quantdesk.extensions import extensions_of
from quantdesk.market import sync
from quantdesk.notifications.models import Notification
from quantdesk.settings import Settings
from quantdesk.tasks import CeleryRunner
from tests.backtests import SMA, make_strategy, start
from tests.conftest import FAST, TEST_REDIS_URL
from tests.support import BIN, Api, server_env

BROKER_URL = TEST_REDIS_URL.rsplit("/", 1)[0] + "/14"
SECRETS = {"SECRET_KEY": "s" * 40, "JWT_SECRET_KEY": "j" * 40}
VISIBILITY_SECONDS = 3

# About 3.5 s of CPU on two years of bars: long enough to be killed in the middle.
SLOW = SMA.replace(
    'PARAMS = {"fast": 5, "slow": 20}', 'PARAMS = {"fast": 5, "slow": 20, "spin": 100000}'
)
SLOW = SLOW.replace(
    "def handle_bar(ctx, data):\n",
    "def handle_bar(ctx, data):\n    n = 0\n    for i in range(ctx.params['spin']):\n"
    "        n += i\n",
)


@pytest.fixture
def stack(tmp_path: Path, scratch_database: Callable[[str], str]) -> Iterator[dict[str, Any]]:
    """A scratch database with the sample data, a web app sending to Redis, a worker env."""
    redis.Redis.from_url(BROKER_URL).flushdb()
    database_url = scratch_database("backtest_workers")
    engine = create_engine(database_url)
    with Session(engine) as session:
        assert sync.seed_demo(session).status == "finished"
    values = {**FAST, **SECRETS, "TASKS_EAGER": False}
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        VAR_DIR=tmp_path,
        DATABASE_URL=database_url,
        REDIS_URL="",
        CELERY_BROKER_URL=BROKER_URL,
        CELERY_VISIBILITY_TIMEOUT_SECONDS=VISIBILITY_SECONDS,
        **values,
    )
    app = create_app(settings)
    assert isinstance(extensions_of(app).tasks, CeleryRunner)
    env = server_env(
        QUANTDESK_ENV="production",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=BROKER_URL,
        CELERY_VISIBILITY_TIMEOUT_SECONDS=str(VISIBILITY_SECONDS),
        VAR_DIR=str(tmp_path),
        **SECRETS,
    )
    try:
        yield {"app": app, "api": Api(app), "engine": engine, "env": env}
    finally:
        extensions_of(app).db.dispose()
        engine.dispose()


@contextmanager
def _worker(env: dict[str, str], concurrency: int = 1) -> Iterator[subprocess.Popen[bytes]]:
    """A `quantdesk worker` in its own process group (so SIGKILL takes its pool too)."""
    process = subprocess.Popen(
        [
            str(BIN / "quantdesk"),
            "worker",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


def _row(engine: Any, backtest_id: int) -> Backtest:
    with Session(engine) as session:
        row = session.get(Backtest, backtest_id)
        assert row is not None
        return row


def _wait(engine: Any, backtest_id: int, statuses: set[str], timeout: float = 90) -> Backtest:
    deadline = time.monotonic() + timeout
    while True:
        row = _row(engine, backtest_id)
        if row.status in statuses:
            return row
        assert time.monotonic() < deadline, (row.status, row.error)
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_backtest_whose_worker_is_killed_finishes_once_after_a_restart(
    stack: dict[str, Any],
) -> None:
    api, engine = stack["api"], stack["engine"]
    account = api.logged_in()
    created = start(api, account, make_strategy(api, account, SLOW, "slow"))
    assert created["status"] == "queued"
    assert redis.Redis.from_url(BROKER_URL).llen("celery") == 1  # queued before any worker

    with _worker(stack["env"]) as first:
        running = _wait(engine, created["id"], {"running", "finished", "failed"})
        assert running.status == "running", running.error
        delivered = time.monotonic()
        time.sleep(1.0)  # in the middle of the strategy's run
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    killed = _row(engine, created["id"])
    assert killed.status == "running"
    assert killed.attempts == 1
    with Session(engine) as session:
        stored = select(func.count()).select_from(BacktestResult)
        assert session.scalar(stored.where(BacktestResult.task_id == created["id"])) == 0

    # The broker hands the unacknowledged task to the next worker once the timeout has passed.
    time.sleep(max(0.0, VISIBILITY_SECONDS + 1.0 - (time.monotonic() - delivered)))
    with _worker(stack["env"]):
        done = _wait(engine, created["id"], {"finished", "failed"})
    assert done.status == "finished", done.error
    assert done.attempts == 2
    assert done.progress == 1
    with Session(engine) as session:
        (result_id,) = session.scalars(
            select(BacktestResult.id).where(BacktestResult.task_id == created["id"])
        ).all()
        days = select(func.count()).select_from(BacktestEquity)
        assert session.scalar(days.where(BacktestEquity.result_id == result_id)) == 487
        events = session.scalars(
            select(Notification.event).where(Notification.user_id == account.id)
        ).all()
    assert events == ["backtest_finished"]
    response = api.get(f"/api/backtests/{created['id']}/metrics", headers=account.headers)
    assert response.status_code == 200
    assert response.get_json()["trades_count"] > 0


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_grid_fans_out_over_celery_and_is_ranked(stack: dict[str, Any]) -> None:
    api, engine = stack["api"], stack["engine"]
    account = api.logged_in()
    grid = start(
        api, account, make_strategy(api, account), param_grid={"fast": [3, 5], "slow": [20, 40]}
    )
    assert redis.Redis.from_url(BROKER_URL).llen("celery") == 4  # one task per combination
    with _worker(stack["env"], concurrency=2):
        done = _wait(engine, grid["id"], {"finished", "failed"})
    assert done.status == "finished", done.error
    table = api.get(f"/api/backtests/{grid['id']}/grid", headers=account.headers).get_json()
    assert [row["rank"] for row in table["rows"]] == [1, 2, 3, 4]
    scores = [row["score"] for row in table["rows"]]
    assert scores == sorted(scores, reverse=True)
    with Session(engine) as session:
        events = session.scalars(
            select(Notification.event).where(Notification.user_id == account.id)
        ).all()
    assert events == ["backtest_finished"]
