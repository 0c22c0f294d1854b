"""The notification a backtest sends when it ends: `backtest_finished` or `backtest_failed`.

A grid notifies once, with its best combination's metrics; its combinations do not notify.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk.backtests.grids import best_combination, lock_backtest
from quantdesk.backtests.models import Backtest, BacktestResult, Kind, Status
from quantdesk.notifications.delivery import Runtime
from quantdesk.notifications.service import notify

log = logging.getLogger(__name__)


def notify_outcome(session: Session, runtime: Runtime, backtest: Backtest) -> None:
    """`backtest_finished` or `backtest_failed` to the owner; never fails the caller.

    Runs in a transaction of its own that takes the backtest's row lock first: notify() reads
    before it writes, which SQLite only allows a transaction holding the write lock from the
    start (another thread may commit in between).
    """
    if backtest.status not in (Status.FINISHED, Status.FAILED):
        return
    event = "backtest_finished" if backtest.status == Status.FINISHED else "backtest_failed"
    try:
        session.commit()
        lock_backtest(session, backtest.id)
        data: dict[str, Any] = {
            "backtest_id": backtest.id,
            "name": backtest.name,
            "strategy_name": backtest.strategy_name,
        }
        if backtest.status == Status.FAILED:
            data["error"] = backtest.error
        else:
            shown = backtest
            if backtest.kind == Kind.GRID:
                shown = best_combination(session, backtest.id) or backtest
            result = session.scalars(
                select(BacktestResult).where(BacktestResult.task_id == shown.id)
            ).first()
            if result is not None:
                data.update({m: getattr(result, m) for m in _NOTIFIED_METRICS})
        notify(session, user_id=backtest.user_id, event=event, data=data, runtime=runtime)
    except Exception:
        session.rollback()
        log.exception("backtest %s: the %s notification failed", backtest.id, event)


_NOTIFIED_METRICS = ("total_return", "annual_return", "sharpe_ratio", "max_drawdown", "final_value")
