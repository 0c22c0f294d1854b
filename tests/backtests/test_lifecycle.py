"""A backtest's life with its task held back: queued, running, cancelled, delivered twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from quantdesk.backtests import execution
from quantdesk.backtests.models import Backtest, BacktestEquity, BacktestResult
from quantdesk.extensions import Extensions, extensions_of
from quantdesk.tasks import CeleryRunner
from tests.backtests import CN_BODY, fetch, make_strategy, notifications, start
from tests.backtests.conftest import HeldRunner
from tests.conftest import Backend
from tests.support import Account, Api, assert_error, free_port


def _results(db: Session, backtest_id: int) -> int:
    stmt = select(func.count()).select_from(BacktestResult)
    return int(db.scalar(stmt.where(BacktestResult.task_id == backtest_id)) or 0)


def test_queued_then_running_with_progress_then_finished(
    api: Api, user: Account, held: HeldRunner, ext: Extensions, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = start(api, user, make_strategy(api, user))
    assert [(fn.__name__, args) for fn, args in held.held] == [("run_backtest", (created["id"],))]
    assert fetch(api, user, created["id"])["status"] == "queued"
    seen: list[tuple[str, float, bool, bool]] = []
    real = execution.sandbox.run_backtest

    def watched(*args: Any, **kwargs: Any) -> Any:
        # What a client polling the backtest would read while the strategy runs.
        with ext.db.session_scope() as session:
            row = session.get(Backtest, created["id"])
            assert row is not None
            seen.append((row.status, row.progress, row.started_at is None, row.finished_at is None))
        return real(*args, **kwargs)

    monkeypatch.setattr(execution.sandbox, "run_backtest", watched)
    held.run_all()
    ((status, progress, not_started, not_finished),) = seen
    assert status == "running"
    assert 0 < progress < 1
    assert not not_started
    assert not_finished
    done = fetch(api, user, created["id"])
    assert done["status"] == "finished"
    assert done["progress"] == 1


def test_delete_cancels_a_queued_backtest_which_then_never_runs(
    api: Api, user: Account, held: HeldRunner, db: Session
) -> None:
    created = start(api, user, make_strategy(api, user))
    assert api.delete(f"/api/backtests/{created['id']}", headers=user.headers).status_code == 204
    cancelled = fetch(api, user, created["id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["error"] == "cancelled by the user"
    held.run_all()  # the queued task arrives anyway
    assert fetch(api, user, created["id"])["status"] == "cancelled"
    assert _results(db, created["id"]) == 0
    assert notifications(api, user) == []
    assert_error(api.get(f"/api/backtests/{created['id']}/result", headers=user.headers), 409)
    # A second DELETE removes it.
    assert api.delete(f"/api/backtests/{created['id']}", headers=user.headers).status_code == 204
    assert_error(api.get(f"/api/backtests/{created['id']}", headers=user.headers), 404)


def test_a_backtest_cancelled_while_running_stores_nothing(
    api: Api, user: Account, held: HeldRunner, db: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = start(api, user, make_strategy(api, user))
    real = execution.sandbox.run_backtest

    def cancel_midway(*args: Any, **kwargs: Any) -> Any:
        outcome = real(*args, **kwargs)
        response = api.delete(f"/api/backtests/{created['id']}", headers=user.headers)
        assert response.status_code == 204
        return outcome

    monkeypatch.setattr(execution.sandbox, "run_backtest", cancel_midway)
    held.run_all()
    assert fetch(api, user, created["id"])["status"] == "cancelled"
    assert _results(db, created["id"]) == 0
    assert notifications(api, user) == []


def test_a_task_delivered_twice_stores_and_notifies_once(
    api: Api, user: Account, held: HeldRunner, db: Session
) -> None:
    created = start(api, user, make_strategy(api, user))
    ((task, args),) = held.held
    held.run_all()
    held.run(task, *args)  # delivered again after it finished: nothing happens
    done = fetch(api, user, created["id"])
    assert done["status"] == "finished"
    assert done["attempts"] == 1
    assert _results(db, created["id"]) == 1
    assert len(notifications(api, user)) == 1


def test_a_run_whose_worker_died_runs_again_and_finishes_once(
    api: Api, user: Account, held: HeldRunner, db: Session, ext: Extensions
) -> None:
    created = start(api, user, make_strategy(api, user))
    with held.app.app_context():
        assert execution.claim(ext, created["id"]) is not None  # the first worker, then killed
    assert fetch(api, user, created["id"])["status"] == "running"
    held.run_all()  # the broker delivers it again
    done = fetch(api, user, created["id"])
    assert done["status"] == "finished"
    assert done["attempts"] == 2
    assert _results(db, created["id"]) == 1
    result_id = db.scalar(select(BacktestResult.id).where(BacktestResult.task_id == created["id"]))
    count = select(func.count()).select_from(BacktestEquity)
    assert db.scalar(count.where(BacktestEquity.result_id == result_id)) == done["bars_count"]
    assert [n["event"] for n in notifications(api, user)] == ["backtest_finished"]


def test_an_internal_error_fails_the_run_without_details(
    api: Api, user: Account, held: HeldRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = start(api, user, make_strategy(api, user))

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(execution, "build_rows", broken)
    held.run_all()
    failed = fetch(api, user, created["id"])
    assert failed["status"] == "failed"
    assert failed["error"] == "internal error: RuntimeError"
    assert [n["event"] for n in notifications(api, user)] == ["backtest_failed"]


@pytest.mark.parametrize("grid", [False, True], ids=["single", "grid"])
def test_a_run_the_broker_cannot_take_is_failed_not_left_queued(
    make_app: Callable[..., Flask], market_data: Backend, grid: bool
) -> None:
    """The broker is down (a real Celery runner sending to a port where nothing listens): the
    request is a 503, and the committed rows say what happened instead of waiting for ever."""
    app = make_app(TASKS_EAGER=False, CELERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert isinstance(extensions_of(app).tasks, CeleryRunner)
    api = Api(app)
    account = api.logged_in()
    body = {**CN_BODY, "strategy_id": make_strategy(api, account)}
    if grid:
        body["param_grid"] = {"fast": [3, 5]}
    response = api.post("/api/backtests", json=body, headers=account.headers)
    assert assert_error(response, 503, "service_unavailable")["details"]["service"] == "broker"
    items = api.get("/api/backtests", headers=account.headers).get_json()["items"]
    assert len(items) == 1
    stored = fetch(api, account, items[0]["id"])
    assert stored["status"] == "failed"
    if grid:
        assert "never started" in stored["error"]  # the grid's "first error"
    else:
        assert stored["error_kind"] == "queue"
        assert "submit it again" in stored["error"]
