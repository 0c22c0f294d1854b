"""The schedule: APScheduler with its jobs in the database, inside `serve` or `quantdesk scheduler`.

Jobs only enqueue work through the task runner (`ext.tasks.submit`): with a Celery broker the
work runs on `quantdesk worker`s, embedded it runs in the server's own thread pool. Paper-trading
jobs (strategies/schedule.py) are persisted in `scheduler_jobs` (APScheduler's
SQLAlchemyJobStore on the app's database), so they survive restarts; two fixed jobs live in
memory and are made again at each start: matching the persisted jobs to the running strategies
every SCHEDULER_SYNC_SECONDS (which also picks up jobs another process changed), and the
daily market-data sync (market/tasks.py), followed by a step of every running strategy.
Production runs one scheduler; should two run, a tick may be enqueued twice, and the step's
row lock still stores it once.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask
from sqlalchemy import Column, Float, LargeBinary, MetaData, Table, Unicode

from quantdesk.db import Base
from quantdesk.extensions import current_extensions, extensions_of

log = logging.getLogger(__name__)

JOBS_TABLE = "scheduler_jobs"

# APScheduler's own table layout (jobstores/sqlalchemy.py), declared here so that the migrations
# create it and Alembic knows it; the job store finds it there and creates nothing.
scheduler_jobs = Table(
    JOBS_TABLE,
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


class SharedJobStore(SQLAlchemyJobStore):  # type: ignore[misc]
    """The SQL job store, tolerant of a second scheduler on the same table.

    APScheduler updates a job after running it; if another scheduler removed that job
    meanwhile (its strategy stopped), the update finds no row, and the error would end the
    scheduler's loop. A job that is gone is simply gone.
    """

    def update_job(self, job: Job) -> None:
        try:
            super().update_job(job)
        except JobLookupError:
            log.info("scheduled job %s was removed meanwhile", job.id)


def _enter_app_context(app: Flask) -> None:
    # Each executor thread works inside the app for its whole life (jobs use session_scope()).
    app.app_context().push()


def sync_paper_jobs(scheduler: BackgroundScheduler) -> None:
    """The periodic job: persisted paper-trading jobs follow the running executions."""
    from quantdesk.strategies.schedule import sync_jobs

    ext = current_extensions()
    with ext.db.session_scope() as session:
        sync_jobs(scheduler, session, misfire_grace=ext.settings.PAPER_MISFIRE_GRACE_SECONDS)


def enqueue_daily_sync() -> None:
    """The daily job after the close: enqueue the market-data sync and the paper steps after it.

    The sync skips a session it already has; each step does nothing without a new bar.
    """
    from quantdesk.strategies.tasks import daily_sync_then_steps

    current_extensions().tasks.submit(daily_sync_then_steps)


def build_scheduler(app: Flask, *, threads: int = 4) -> BackgroundScheduler:
    """A scheduler for `app` (not started): the persisted job store and the two fixed jobs."""
    from quantdesk.market.tasks import daily_trigger

    ext = extensions_of(app)
    settings = ext.settings
    zone = ZoneInfo(settings.PAPER_TIMEZONE)
    scheduler = BackgroundScheduler(
        jobstores={
            "default": SharedJobStore(
                engine=ext.db.engine, tablename=JOBS_TABLE, metadata=MetaData()
            ),
            "memory": MemoryJobStore(),
        },
        executors={
            "default": ThreadPoolExecutor(
                threads, pool_kwargs={"initializer": _enter_app_context, "initargs": (app,)}
            )
        },
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": settings.PAPER_MISFIRE_GRACE_SECONDS,
        },
        timezone=zone,
    )
    scheduler.add_job(
        sync_paper_jobs,
        "interval",
        seconds=settings.SCHEDULER_SYNC_SECONDS,
        args=[scheduler],
        id="sync-paper-jobs",
        jobstore="memory",
        next_run_time=dt.datetime.now(zone),  # at once on start
    )
    scheduler.add_job(
        enqueue_daily_sync,
        "cron",
        id="market-daily-sync",
        jobstore="memory",
        **daily_trigger(settings),
    )
    return scheduler


def run_until_stopped(app: Flask, stop: threading.Event) -> None:
    """Run the schedule until `stop` is set (the `quantdesk scheduler` process)."""
    scheduler = build_scheduler(app)
    scheduler.start()
    log.info("scheduler started")
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=True)
        log.info("scheduler stopped")
