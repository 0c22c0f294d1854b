"""Paper-trading schedules: one persisted cron job per running execution, which enqueues its step.

The job runs in the scheduler (inside `quantdesk serve`, or the `quantdesk scheduler` process)
and never runs strategy code: on a trading day it enqueues `tasks.paper_step(id)` for a worker.
Jobs live in the database (APScheduler's SQLAlchemyJobStore), so a restart keeps them and a
tick missed while no scheduler ran still fires when one comes back. `sync_jobs` keeps the jobs
equal to the running executions: `run` and `stop` only change rows, the scheduler follows.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk.cron import cron_trigger
from quantdesk.extensions import current_extensions
from quantdesk.market.service import trading_calendar
from quantdesk.strategies.models import StrategyExecution, StrategyStatus
from quantdesk.strategies.tasks import paper_step

log = logging.getLogger(__name__)

JOB_PREFIX = "paper-"
JOBSTORE = "default"  # the persisted store (scheduler.py)


def job_id(execution_id: int) -> str:
    return f"{JOB_PREFIX}{execution_id}"


def trigger_of(config: dict[str, Any]) -> CronTrigger:
    """The execution's cron trigger from its stored `schedule` and `timezone`."""
    return cron_trigger(config["schedule"], config["timezone"])


def next_tick(execution: StrategyExecution, now: dt.datetime | None = None) -> dt.datetime | None:
    """When the schedule next fires (None unless running), in UTC."""
    if execution.status != StrategyStatus.RUNNING:
        return None
    try:
        trigger = trigger_of(execution.config)
    except (KeyError, ValueError):
        return None
    moment = trigger.get_next_fire_time(None, now or dt.datetime.now(dt.UTC))
    return moment.astimezone(dt.UTC) if moment is not None else None


def is_trading_day(session: Session, *, market: str | None, day: dt.date) -> bool:
    """A session of the run's market: the SSE calendar for A-shares, weekdays for US symbols."""
    if market == "us":
        return day.weekday() < 5
    return trading_calendar(session).is_session(day)


def should_enqueue(
    session: Session, execution: StrategyExecution | None, *, now: dt.datetime, trading_only: bool
) -> bool:
    """Whether a tick at `now` enqueues a step: the run is on, and (if asked) the market open."""
    if execution is None or execution.status != StrategyStatus.RUNNING:
        return False
    if not trading_only:
        return True
    day = now.astimezone(ZoneInfo(execution.config["timezone"])).date()
    return is_trading_day(session, market=execution.config.get("market"), day=day)


def fire(execution_id: int) -> None:
    """The job of one execution's schedule: enqueue its step (a worker runs it)."""
    ext = current_extensions()
    with ext.db.session_scope() as session:
        execution = session.get(StrategyExecution, execution_id)
        due = should_enqueue(
            session,
            execution,
            now=dt.datetime.now(dt.UTC),
            trading_only=ext.settings.PAPER_TRADING_DAYS_ONLY,
        )
    if not due:
        log.info("paper schedule of execution %s: nothing to do today", execution_id)
        return
    ext.tasks.submit(paper_step, execution_id)
    log.info("paper step of execution %s enqueued", execution_id)


def sync_jobs(scheduler: BaseScheduler, session: Session, *, misfire_grace: int) -> tuple[int, int]:
    """Add a job for each running execution that has none; remove jobs of the others.

    Safe to run in two schedulers at once: a job the other one added or removed first is left
    as it is. Returns (added, removed).
    """
    rows = session.execute(
        select(StrategyExecution.id, StrategyExecution.config).where(
            StrategyExecution.status == StrategyStatus.RUNNING
        )
    )
    running: dict[int, dict[str, Any]] = {row.id: row.config for row in rows}
    wanted = {job_id(execution_id): execution_id for execution_id in running}
    existing = {
        job.id for job in scheduler.get_jobs(jobstore=JOBSTORE) if job.id.startswith(JOB_PREFIX)
    }
    added = removed = 0
    for name, execution_id in wanted.items():
        if name in existing:
            continue
        try:
            trigger = trigger_of(running[execution_id])
        except (KeyError, ValueError) as exc:
            log.error("execution %s has no valid schedule: %s", execution_id, exc)
            continue
        try:
            scheduler.add_job(
                fire,
                trigger=trigger,
                args=[execution_id],
                id=name,
                name=f"paper trading of execution {execution_id}",
                jobstore=JOBSTORE,
                coalesce=True,  # ticks missed while down fire once, not once each
                max_instances=1,
                misfire_grace_time=misfire_grace,
            )
            added += 1
        except ConflictingIdError:
            pass
    for name in existing - set(wanted):
        try:
            scheduler.remove_job(name, jobstore=JOBSTORE)
            removed += 1
        except JobLookupError:
            pass
    if added or removed:
        log.info("paper-trading jobs: %s added, %s removed", added, removed)
    return added, removed
