"""Paper-trading schedules in-process: persisted jobs follow the runs; a tick enqueues a step."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import time_machine
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk import migrate
from quantdesk.app import create_app
from quantdesk.db import build_engine
from quantdesk.extensions import extensions_of
from quantdesk.market import tasks as market_tasks
from quantdesk.scheduler import build_scheduler, scheduler_jobs
from quantdesk.strategies.models import StrategyExecution, StrategyStatus
from quantdesk.strategies.schedule import fire, job_id, should_enqueue, sync_jobs
from quantdesk.strategies.tasks import daily_sync_then_steps
from tests.conftest import Backend
from tests.strategies.paper_data import add_bars, create_strategy, logs, run, trading_days
from tests.support import Api

DAYS = trading_days(30)


@pytest.fixture
def fresh_app(
    backend: Backend, tmp_path: Path, scratch_database: Callable[[str], str]
) -> Iterator[Flask]:
    """An app on a database of its own: the scheduler's job store commits on its own connection."""
    overrides: dict[str, object] = {"VAR_DIR": tmp_path}
    if backend.name == "production":
        overrides["DATABASE_URL"] = scratch_database("paper_schedule")
    settings = backend.make_settings(**overrides)
    engine = build_engine(settings)
    try:
        migrate.upgrade(engine)  # a no-op on the scratch database
    finally:
        engine.dispose()
    app = create_app(settings)
    try:
        yield app
    finally:
        extensions_of(app).db.dispose()


def _session(app: Flask) -> Session:
    return extensions_of(app).db.session_factory()


def _stored_jobs(app: Flask) -> list[tuple[str, float]]:
    with extensions_of(app).db.engine.connect() as connection:
        rows = connection.execute(select(scheduler_jobs.c.id, scheduler_jobs.c.next_run_time))
        return [(row.id, row.next_run_time) for row in rows]


def _running(app: Flask) -> tuple[Api, object, int, dict]:
    with _session(app) as session:
        add_bars(session, DAYS)
    api = Api(app)
    owner = api.logged_in()
    sid = create_strategy(api, owner)
    return api, owner, sid, run(api, owner, sid, schedule="0 16 * * 1-5")


def test_persisted_jobs_follow_the_running_executions(fresh_app: Flask) -> None:
    api, owner, sid, execution = _running(fresh_app)
    scheduler = build_scheduler(fresh_app)
    scheduler.start(paused=True)  # job stores open, nothing fires
    try:
        with _session(fresh_app) as session:
            assert sync_jobs(scheduler, session, misfire_grace=60) == (1, 0)
            assert sync_jobs(scheduler, session, misfire_grace=60) == (0, 0)
        ((stored_id, next_run),) = _stored_jobs(fresh_app)
        assert stored_id == job_id(execution["id"])
        expected = dt.datetime.fromisoformat(execution["next_run_time"])
        assert next_run == pytest.approx(expected.timestamp())
        job = scheduler.get_job(stored_id)
        assert job.func is fire
        assert list(job.args) == [execution["id"]]
        assert job.coalesce is True
        assert job.misfire_grace_time == 60
        assert str(job.trigger.timezone) == "Asia/Shanghai"
        stopped = api.post(f"/api/strategies/{sid}/stop", headers=owner.headers)  # type: ignore[attr-defined]
        assert stopped.status_code == 200
        with _session(fresh_app) as session:
            assert sync_jobs(scheduler, session, misfire_grace=60) == (0, 1)
        assert _stored_jobs(fresh_app) == []
    finally:
        scheduler.shutdown(wait=False)


def test_a_job_another_scheduler_removed_does_not_break_this_one(fresh_app: Flask) -> None:
    _, _, _, execution = _running(fresh_app)
    first, second = build_scheduler(fresh_app), build_scheduler(fresh_app)
    first.start(paused=True)
    second.start(paused=True)
    try:
        with _session(fresh_app) as session:
            assert sync_jobs(first, session, misfire_grace=60) == (1, 0)
            # The second sees the first's job in the shared table and adds none of its own.
            assert sync_jobs(second, session, misfire_grace=60) == (0, 0)
        name = job_id(execution["id"])
        stale = second._lookup_jobstore("default").lookup_job(name)
        first.remove_job(name)
        second._lookup_jobstore("default").update_job(stale)  # what its loop does after a run
        assert _stored_jobs(fresh_app) == []
    finally:
        first.shutdown(wait=False)
        second.shutdown(wait=False)


def test_a_tick_enqueues_the_step_which_runs_on_the_new_bar(fresh_app: Flask) -> None:
    api, owner, sid, execution = _running(fresh_app)
    with _session(fresh_app) as session:
        add_bars(session, trading_days(1, start=DAYS[-1] + dt.timedelta(days=1)))
    with fresh_app.app_context():
        fire(execution["id"])  # TASKS_EAGER: the enqueued step runs inline
    steps = [
        line["message"][:15]
        for line in logs(api, owner, sid)  # type: ignore[arg-type]
        if line["message"].startswith("Step ")
    ]
    assert steps == ["Step 2024-02-12", "Step 2024-02-13"]
    with fresh_app.app_context():
        fire(execution["id"])  # no new bar: nothing more
    assert len([m for m in logs(api, owner, sid) if m["message"].startswith("Step ")]) == 2  # type: ignore[arg-type]


def test_ticks_skip_days_the_market_is_closed(db: Session) -> None:
    def execution(market: str, status: str = StrategyStatus.RUNNING) -> StrategyExecution:
        return StrategyExecution(
            status=status, config={"market": market, "timezone": "Asia/Shanghai"}
        )

    def at(moment: str) -> dt.datetime:
        return dt.datetime.fromisoformat(moment)

    cn = execution("cn_a")
    # 2024-10-01 (a Tuesday) is National Day: the SSE is closed; 2024-10-08 it trades.
    assert not should_enqueue(db, cn, now=at("2024-10-01T07:30:00+00:00"), trading_only=True)
    assert should_enqueue(db, cn, now=at("2024-10-08T07:30:00+00:00"), trading_only=True)
    assert not should_enqueue(db, cn, now=at("2024-10-12T07:30:00+00:00"), trading_only=True)
    # The day is the exchange's: 23:30 UTC on Monday is Tuesday morning in Shanghai.
    assert should_enqueue(db, cn, now=at("2024-10-07T23:30:00+00:00"), trading_only=True)
    us = execution("us")
    assert should_enqueue(db, us, now=at("2024-10-01T07:30:00+00:00"), trading_only=True)
    assert not should_enqueue(db, us, now=at("2024-10-12T07:30:00+00:00"), trading_only=True)
    assert should_enqueue(db, cn, now=at("2024-10-01T07:30:00+00:00"), trading_only=False)
    stopped = execution("cn_a", StrategyStatus.STOPPED)
    assert not should_enqueue(db, stopped, now=at("2024-10-08T07:30:00+00:00"), trading_only=True)
    assert not should_enqueue(db, None, now=at("2024-10-08T07:30:00+00:00"), trading_only=True)


def test_a_tick_on_a_holiday_enqueues_nothing(make_app: Callable[..., Flask]) -> None:
    app = make_app(PAPER_TRADING_DAYS_ONLY=True)
    with _session(app) as session:
        add_bars(session, DAYS)
    api = Api(app)
    owner = api.logged_in()
    sid = create_strategy(api, owner)
    execution = run(api, owner, sid)
    with _session(app) as session:
        add_bars(session, trading_days(1, start=DAYS[-1] + dt.timedelta(days=1)))

    def last_bar() -> str:
        response = api.get(f"/api/strategies/{sid}/execution", headers=owner.headers)
        return str(response.get_json()["last_bar_date"])

    with app.app_context(), time_machine.travel(dt.datetime(2024, 10, 1, 8, tzinfo=dt.UTC)):
        fire(execution["id"])  # National Day: the SSE is closed
    assert last_bar() == DAYS[-1].isoformat()
    with app.app_context(), time_machine.travel(dt.datetime(2024, 10, 8, 8, tzinfo=dt.UTC)):
        fire(execution["id"])
    assert last_bar() == "2024-02-13"


def test_the_daily_sync_is_followed_by_a_step_of_every_running_run(
    app: Flask, api: Api, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_bars(db, DAYS)
    owner = api.logged_in()
    sid = create_strategy(api, owner)
    run(api, owner, sid)
    stopped_sid = create_strategy(api, owner, name="Stopped")
    run(api, owner, stopped_sid)
    api.post(f"/api/strategies/{stopped_sid}/stop", headers=owner.headers)
    new_day = trading_days(1, start=DAYS[-1] + dt.timedelta(days=1))

    def sync_writes_the_day() -> None:  # stands in for the providers' daily sync
        with extensions_of(app).db.session_scope() as session:
            add_bars(session, new_day)

    monkeypatch.setattr(market_tasks, "daily_sync", sync_writes_the_day)
    with app.app_context():
        daily_sync_then_steps()

    def last_bar(strategy_id: int) -> str:
        response = api.get(f"/api/strategies/{strategy_id}/execution", headers=owner.headers)
        return str(response.get_json()["last_bar_date"])

    assert last_bar(sid) == new_day[0].isoformat()
    assert last_bar(stopped_sid) == DAYS[-1].isoformat()  # a stopped run stays where it was
