"""Parameter grids: settle a grid once its last combination ends, rank it, read its table.

Each combination is a backtest of its own (its own task, fanned out on Celery); whichever
combination ends last settles the grid. Two ending at the same moment are serialised by a lock
on the grid's row, so the grid is ranked, finished and notified once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from quantdesk.auth.models import User
from quantdesk.backtests import spec
from quantdesk.backtests.models import (
    TERMINAL,
    Backtest,
    BacktestGridRow,
    BacktestResult,
    Kind,
    Status,
)
from quantdesk.db import utcnow
from quantdesk.errors import NotFound


def lock_backtest(session: Session, backtest_id: int) -> None:
    """Take the row's write lock first thing in a transaction (PostgreSQL: the row; SQLite: the
    database, waiting up to busy_timeout instead of failing on a stale read snapshot)."""
    session.execute(
        update(Backtest).where(Backtest.id == backtest_id).values(attempts=Backtest.attempts)
    )


def settle_grid(session: Session, *, grid_id: int) -> bool:
    """Update the grid's progress; when every combination has ended, rank and finish it.

    Returns True when this call finished the grid (the caller notifies its owner). Commits.
    """
    session.commit()  # a fresh transaction: the lock comes first
    lock_backtest(session, grid_id)
    grid = session.get(Backtest, grid_id, populate_existing=True)
    if grid is None or grid.status in TERMINAL:
        session.commit()
        return False
    counts = dict(
        session.execute(
            select(Backtest.status, func.count())
            .where(Backtest.parent_id == grid_id)
            .group_by(Backtest.status)
        ).all()
    )
    total = sum(counts.values())
    done = sum(n for status, n in counts.items() if status in TERMINAL)
    grid.progress = done / total if total else 1.0
    if done < total:
        if grid.status == Status.QUEUED and counts.get(Status.QUEUED, 0) < total:
            grid.status, grid.started_at = Status.RUNNING, grid.started_at or utcnow()
        session.commit()
        return False
    _rank(session, grid)
    now = utcnow()
    grid.finished_at = now
    grid.started_at = grid.started_at or now
    grid.timings = {
        **grid.timings,
        "total_seconds": (now - grid.created_at).total_seconds(),
        "combinations": total,
        "finished": counts.get(Status.FINISHED, 0),
    }
    if counts.get(Status.FINISHED, 0):
        grid.status = Status.FINISHED
        failed = total - counts[Status.FINISHED]
        if failed:
            grid.notices = [*grid.notices, f"{failed} of {total} combinations did not finish"]
    else:
        first_error = session.scalars(
            select(Backtest.error)
            .where(Backtest.parent_id == grid_id, Backtest.error.is_not(None))
            .order_by(Backtest.id)
        ).first()
        grid.status = Status.FAILED
        grid.error = f"no combination finished; the first error: {first_error}"
    session.commit()
    return True


def _rank(session: Session, grid: Backtest) -> None:
    rank_by = grid.rank_by or spec.DEFAULT_RANK_BY
    metric = getattr(BacktestResult, rank_by)
    rows = session.execute(
        select(BacktestGridRow, Backtest.status, metric)
        .join(Backtest, Backtest.id == BacktestGridRow.backtest_id)
        .outerjoin(BacktestResult, BacktestResult.task_id == Backtest.id)
        .where(BacktestGridRow.grid_id == grid.id)
    ).all()
    finished = [(row, score) for row, status, score in rows if status == Status.FINISHED]
    finished.sort(key=lambda item: (*spec.sort_key(rank_by, item[1]), item[0].position))
    for rank, (row, score) in enumerate(finished, start=1):
        row.rank, row.score = rank, score
    for row, status, _ in rows:
        if status != Status.FINISHED:
            row.rank = row.score = None


def best_combination(session: Session, grid_id: int) -> Backtest | None:
    """The combination ranked first, once the grid is settled."""
    return session.scalars(
        select(Backtest)
        .join(BacktestGridRow, BacktestGridRow.backtest_id == Backtest.id)
        .where(BacktestGridRow.grid_id == grid_id, BacktestGridRow.rank == 1)
    ).first()


_TABLE_METRICS = (
    "total_return",
    "annual_return",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "calmar_ratio",
    "win_rate",
    "trades_count",
    "final_value",
)


def grid_table(session: Session, *, user: User, grid_id: int) -> dict[str, Any]:
    """The ranked table of a grid: best first, then the combinations that did not finish."""
    grid = session.get(Backtest, grid_id)
    if grid is None or grid.user_id != user.id:
        raise NotFound("No such backtest.")
    if grid.kind != Kind.GRID:
        raise NotFound("This backtest has no parameter grid.")
    rank_by = grid.rank_by or spec.DEFAULT_RANK_BY
    shown = tuple(dict.fromkeys((rank_by, *_TABLE_METRICS)))
    columns = [getattr(BacktestResult, m) for m in shown]
    rows = session.execute(
        select(BacktestGridRow, Backtest.status, Backtest.error, *columns)
        .join(Backtest, Backtest.id == BacktestGridRow.backtest_id)
        .outerjoin(BacktestResult, BacktestResult.task_id == Backtest.id)
        .where(BacktestGridRow.grid_id == grid_id)
    ).all()
    table = []
    for row, status, error, *values in rows:
        metrics = dict(zip(shown, values, strict=True))
        table.append(
            {
                "rank": row.rank,
                "position": row.position,
                "backtest_id": row.backtest_id,
                "params": row.params,
                "status": status,
                "score": row.score if row.rank is not None else metrics[rank_by],
                "error": error,
                "metrics": metrics,
            }
        )
    table.sort(
        key=lambda r: (
            r["rank"] is None,
            r["rank"] or 0,
            *spec.sort_key(rank_by, r["score"]),
            r["position"],
        )
    )
    return {
        "grid_id": grid.id,
        "status": grid.status,
        "rank_by": rank_by,
        "lower_is_better": rank_by in spec.LOWER_IS_BETTER,
        "parameters": list(grid.param_grid or {}),
        "param_grid": grid.param_grid or {},
        "rows": table,
    }
