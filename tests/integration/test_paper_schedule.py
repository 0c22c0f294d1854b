"""Paper-trading schedules with real processes: `quantdesk scheduler`s, a Celery worker, PostgreSQL.

A tick fires once per schedule even with two schedulers on the same job table (each may enqueue
it; the step's row lock stores it once), and a tick missed while the scheduler was down fires
when it comes back, because the job lives in the database.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import redis
from flask import Flask
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session

from quantdesk.app import create_app
from quantdesk.extensions import extensions_of
from quantdesk.scheduler import scheduler_jobs
from quantdesk.settings import Settings
from quantdesk.strategies.models import ExecutionLog, Signal, StrategyExecution
from quantdesk.strategies.tasks import paper_step
from tests.conftest import FAST, TEST_REDIS_URL
from tests.strategies.paper_data import add_bars, create_strategy, run, trading_days
from tests.support import BIN, Api, server_env

SECRETS = {"SECRET_KEY": "s" * 40, "JWT_SECRET_KEY": "j" * 40}
DAYS = trading_days(30)  # 2024-01-02 .. 2024-02-12
NEXT = trading_days(3, start=DAYS[-1] + dt.timedelta(days=1))  # 02-13, 02-14, 02-15
EVERY_MINUTE = "* * * * *"


class Deployment:
    """The database, the broker, the web app (in this process) and the real processes."""

    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        redis.Redis.from_url(TEST_REDIS_URL).flushdb()
        values = {**FAST, **SECRETS, "TASKS_EAGER": False, "CELERY_BROKER_URL": TEST_REDIS_URL}
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, VAR_DIR=tmp_path, DATABASE_URL=database_url, REDIS_URL="", **values
        )
        self.app: Flask = create_app(settings)
        self.engine = create_engine(database_url)
        self.env = server_env(
            QUANTDESK_ENV="production",
            DATABASE_URL=database_url,
            CELERY_BROKER_URL=TEST_REDIS_URL,
            VAR_DIR=str(tmp_path),
            SCHEDULER_SYNC_SECONDS="1",
            PAPER_TRADING_DAYS_ONLY="false",  # a tick on any day, whatever day the test runs
            LOG_LEVEL="INFO",
            LOG_FORMAT="text",
            **SECRETS,
        )

    def close(self) -> None:
        extensions_of(self.app).db.dispose()
        self.engine.dispose()

    def add_bars(self, days: list[dt.date]) -> None:
        with extensions_of(self.app).db.session_scope() as session:
            add_bars(session, days)

    @contextmanager
    def process(self, *argv: str, log_name: str) -> Iterator[Path]:
        log_path = self.tmp_path / f"{log_name}.log"
        with log_path.open("ab") as out:
            process = subprocess.Popen(
                [str(BIN / "quantdesk"), *argv], env=self.env, stdout=out, stderr=out
            )
            try:
                yield log_path
            finally:
                process.terminate()
                process.wait(timeout=30)

    def worker(self) -> Iterator[Path]:
        return self.process(
            "worker", "--concurrency", "2", "--loglevel", "WARNING", log_name="worker"
        )

    def scheduler(self, name: str) -> Iterator[Path]:
        return self.process("scheduler", log_name=name)

    def execution(self, execution_id: int) -> StrategyExecution:
        with Session(self.engine) as session:
            found = session.get(StrategyExecution, execution_id)
            assert found is not None
            return found

    def wait_for_bar(self, execution_id: int, day: dt.date, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.execution(execution_id).last_bar_date != day:
            if time.monotonic() > deadline:
                logs = {p.name: p.read_text()[-3000:] for p in self.tmp_path.glob("*.log")}
                raise AssertionError(f"no step for {day} within {timeout} s; logs: {logs}")
            time.sleep(0.5)

    def jobs(self) -> list[tuple[str, float]]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(scheduler_jobs.c.id, scheduler_jobs.c.next_run_time))
            return [(row.id, row.next_run_time) for row in rows]

    def wait_for_job(self, timeout: float = 30) -> tuple[str, float]:
        deadline = time.monotonic() + timeout
        while not self.jobs():
            assert time.monotonic() < deadline, "the scheduler stored no job"
            time.sleep(0.2)
        (job,) = self.jobs()
        return job

    def steps_of(self, execution_id: int, day: dt.date) -> tuple[int, int]:
        """(stored steps for `day`, signals of `day`) of the execution."""
        with Session(self.engine) as session:
            steps = session.scalar(
                select(func.count()).where(
                    ExecutionLog.execution_id == execution_id,
                    ExecutionLog.message.like(f"Step {day.isoformat()}:%"),
                )
            )
            signals = session.scalar(
                select(func.count()).where(
                    Signal.execution_id == execution_id, Signal.bar_date == day
                )
            )
            return int(steps or 0), int(signals or 0)

    def start_run(self) -> int:
        self.add_bars(DAYS)
        api = Api(self.app)
        owner = api.logged_in()
        sid = create_strategy(api, owner)
        return int(run(api, owner, sid, schedule=EVERY_MINUTE)["id"])


@pytest.fixture
def deployment(tmp_path: Path, scratch_database: Callable[[str], str]) -> Iterator[Deployment]:
    built = Deployment(tmp_path, scratch_database("paper_schedule_processes"))
    try:
        yield built
    finally:
        built.close()


def _seconds_to_next_minute() -> float:
    now = time.time()
    return 60 - now % 60


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_schedulers_and_a_worker_step_once_per_tick(deployment: Deployment) -> None:
    execution_id = deployment.start_run()  # its first step waits in the broker
    with ExitStack() as stack:
        stack.enter_context(deployment.worker())
        logs = [stack.enter_context(deployment.scheduler(f"scheduler-{n}")) for n in (1, 2)]
        deployment.wait_for_bar(execution_id, DAYS[-1], timeout=60)  # the step `run` enqueued
        deployment.wait_for_job()
        deployment.add_bars(NEXT[:1])
        deployment.wait_for_bar(execution_id, NEXT[0], timeout=_seconds_to_next_minute() + 45)
        # Whatever the second scheduler enqueued for the same tick has run by now too.
        time.sleep(5)
        assert deployment.steps_of(execution_id, NEXT[0]) == (1, 2)
        enqueued = sum(
            log.read_text().count(f"paper step of execution {execution_id} enqueued")
            for log in logs
        )
        assert enqueued >= 1
        # A tick delivered twice at the same moment (two schedulers, a redelivered task): the
        # two tasks run side by side on the worker's two processes; the row lock lets one step.
        deployment.add_bars(NEXT[1:2])
        tasks = extensions_of(deployment.app).tasks
        tasks.submit(paper_step, execution_id)
        tasks.submit(paper_step, execution_id)
        deployment.wait_for_bar(execution_id, NEXT[1], timeout=60)
        time.sleep(5)
        assert deployment.steps_of(execution_id, NEXT[1]) == (1, 2)
    execution = deployment.execution(execution_id)
    assert execution.state == {"calls": 3}  # three bars, each stepped once
    assert execution.status == "running"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_tick_missed_while_the_scheduler_was_down_fires_after_a_restart(
    deployment: Deployment,
) -> None:
    execution_id = deployment.start_run()
    with deployment.worker():
        deployment.wait_for_bar(execution_id, DAYS[-1], timeout=60)
        if _seconds_to_next_minute() < 25:  # room to start and stop before the next tick
            time.sleep(_seconds_to_next_minute() + 1)
        with deployment.scheduler("scheduler-before"):
            name, tick = deployment.wait_for_job()
        assert deployment.jobs() == [(name, tick)]  # the job outlives its scheduler
        assert tick > time.time()
        deployment.add_bars(NEXT[:1])
        time.sleep(max(0.0, tick - time.time()) + 3)  # the tick passes with no scheduler up
        assert deployment.execution(execution_id).last_bar_date == DAYS[-1]
        with deployment.scheduler("scheduler-after") as log:
            # The missed tick fires at once (well before the next one is due).
            deployment.wait_for_bar(execution_id, NEXT[0], timeout=30)
            assert f"paper step of execution {execution_id} enqueued" in log.read_text()
            ((same, next_tick),) = deployment.jobs()
        assert same == name
        assert next_tick > tick  # the job moved on to the following tick
        assert deployment.steps_of(execution_id, NEXT[0]) == (1, 2)
