"""Paper trading: run and stop a strategy, and read its runs, log lines and signals.

`run` stores a running execution (symbols, capital, schedule, the strategy's version and
params), commits, and enqueues its first step at once; the scheduler then steps it on every
tick of its schedule (strategies/schedule.py). Every function checks ownership through
`get_strategy`, so another user's strategy, runs and logs are a 404.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, select, update
from sqlalchemy.orm import Session

from quantdesk.auth.models import User
from quantdesk.cron import cron_trigger
from quantdesk.db import utcnow
from quantdesk.engine.errors import ConfigError
from quantdesk.engine.rules import market_of
from quantdesk.errors import Conflict, Invalid, NotFound
from quantdesk.market import symbols as sym
from quantdesk.market.models import Stock
from quantdesk.notifications.delivery import Runtime
from quantdesk.settings import Settings
from quantdesk.strategies.models import (
    ExecutionLog,
    Signal,
    Strategy,
    StrategyExecution,
    StrategyStatus,
)
from quantdesk.strategies.service import get_strategy
from quantdesk.strategies.step import latest_bar_date
from quantdesk.strategies.tasks import paper_step

log = logging.getLogger(__name__)

LOG_SORTS: dict[str, ColumnElement[Any]] = {
    "time": ExecutionLog.id.asc(),
    "-time": ExecutionLog.id.desc(),
}


def _symbols(session: Session, raw: Sequence[str]) -> list[str]:
    """Canonical, stored symbols in the order given (duplicates dropped), else a 422."""
    chosen: list[str] = []
    unknown: list[str] = []
    for text in raw:
        canonical = sym.normalise(text)
        if canonical is not None and canonical.startswith("user:"):
            raise Invalid(
                "Paper trading needs market symbols.",
                details={"symbols": [f"{text} is an uploaded data set: it gets no new bars"]},
            )
        if canonical is None or session.get(Stock, canonical) is None:
            unknown.append(text)
        elif canonical not in chosen:
            chosen.append(canonical)
    if unknown:
        raise Invalid(
            "Unknown symbols.", details={"symbols": [f"no stored instrument: {', '.join(unknown)}"]}
        )
    missing = [s for s in chosen if latest_bar_date(session, [s]) is None]
    if missing:
        raise Invalid(
            "Symbols without bars.", details={"symbols": [f"no stored bars: {', '.join(missing)}"]}
        )
    return chosen


def start_run(
    session: Session,
    *,
    user: User,
    strategy_id: int,
    symbols: Sequence[str],
    initial_capital: float,
    schedule: str | None,
    settings: Settings,
    runtime: Runtime,
) -> StrategyExecution:
    """Start paper trading (409 when it runs already) and enqueue its first step."""
    strategy = get_strategy(session, user=user, strategy_id=strategy_id)
    if strategy.status == StrategyStatus.RUNNING:
        raise Conflict("The strategy is already running as paper trading: stop it first.")
    chosen = _symbols(session, symbols)
    try:
        market = market_of(chosen).value
    except ConfigError as exc:
        raise Invalid("Mixed markets.", details={"symbols": [str(exc)]}) from None
    expression = " ".join((schedule or settings.PAPER_SCHEDULE).split())
    try:
        cron_trigger(expression, settings.PAPER_TIMEZONE)
    except ValueError as exc:
        raise Invalid("Invalid schedule.", details={"schedule": [str(exc)]}) from None
    # Conditional, so two simultaneous `run`s start one execution (the other is a 409).
    claimed = session.execute(
        update(Strategy)
        .where(Strategy.id == strategy.id, Strategy.status != StrategyStatus.RUNNING)
        .values(status=StrategyStatus.RUNNING)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if claimed != 1:
        session.rollback()
        raise Conflict("The strategy is already running as paper trading: stop it first.")
    now = utcnow()
    execution = StrategyExecution(
        strategy_id=strategy.id,
        version=strategy.version,
        status=StrategyStatus.RUNNING,
        start_time=now,
        profit_loss=0.0,
        config={
            "symbols": chosen,
            "initial_capital": float(initial_capital),
            "schedule": expression,
            "timezone": settings.PAPER_TIMEZONE,
            "market": market,
            "params": dict(strategy.params),
        },
        portfolio={
            "date": None,
            "cash": float(initial_capital),
            "equity": float(initial_capital),
            "positions": [],
            "pending_orders": [],
        },
        state={},
        logs="Started",
    )
    session.add(execution)
    session.flush()
    session.add(
        ExecutionLog(
            execution_id=execution.id,
            time=now,
            level="info",
            message=(
                f"Paper trading started: version {strategy.version}, {', '.join(chosen)}, "
                f"capital {float(initial_capital):,.2f}, schedule '{expression}' "
                f"({settings.PAPER_TIMEZONE})"
            ),
        )
    )
    session.commit()
    try:
        runtime.tasks.submit(paper_step, execution.id)
    except Exception:  # the broker is down: the run stands, and its next tick steps it
        log.exception("could not enqueue the first step of execution %s", execution.id)
    session.refresh(execution)  # an inline step (TASKS_EAGER) has already stored its results
    session.refresh(strategy)
    return execution


def stop_run(session: Session, *, user: User, strategy_id: int) -> StrategyExecution:
    """Stop paper trading (409 when it is not running); waits for a step in progress."""
    strategy = get_strategy(session, user=user, strategy_id=strategy_id)
    execution = session.scalars(
        select(StrategyExecution)
        .where(
            StrategyExecution.strategy_id == strategy.id,
            StrategyExecution.status == StrategyStatus.RUNNING,
        )
        .order_by(StrategyExecution.id.desc())
        .with_for_update()
    ).first()
    if execution is None:
        session.rollback()
        raise Conflict("The strategy is not running.")
    now = utcnow()
    execution.status = StrategyStatus.STOPPED
    execution.end_time = now
    execution.logs = "Stopped"
    strategy.status = StrategyStatus.STOPPED
    session.add(
        ExecutionLog(
            execution_id=execution.id, time=now, level="info", message="Paper trading stopped."
        )
    )
    session.commit()
    return execution


def _own_executions(session: Session, *, user: User, strategy_id: int) -> Select[Any]:
    strategy = get_strategy(session, user=user, strategy_id=strategy_id)
    return select(StrategyExecution.id).where(StrategyExecution.strategy_id == strategy.id)


def list_executions(session: Session, *, user: User, strategy_id: int) -> Select[StrategyExecution]:
    get_strategy(session, user=user, strategy_id=strategy_id)
    return (
        select(StrategyExecution)
        .where(StrategyExecution.strategy_id == strategy_id)
        .order_by(StrategyExecution.id.desc())
    )


def get_execution(
    session: Session, *, user: User, strategy_id: int, execution_id: int | None = None
) -> StrategyExecution:
    """One run of the strategy, by default its latest (with the current paper portfolio)."""
    stmt = list_executions(session, user=user, strategy_id=strategy_id)
    if execution_id is not None:
        stmt = stmt.where(StrategyExecution.id == execution_id)
    execution = session.scalars(stmt.limit(1)).first()
    if execution is None:
        raise NotFound("No such run." if execution_id else "The strategy has not been run yet.")
    return execution


def list_logs(
    session: Session,
    *,
    user: User,
    strategy_id: int,
    execution_id: int | None = None,
    level: str | None = None,
    sort: str = "-time",
) -> Select[ExecutionLog]:
    """Log lines of the strategy's runs (or one run), newest first unless `sort=time`."""
    runs = _own_executions(session, user=user, strategy_id=strategy_id)
    stmt = select(ExecutionLog).where(ExecutionLog.execution_id.in_(runs.scalar_subquery()))
    if execution_id is not None:
        stmt = stmt.where(ExecutionLog.execution_id == execution_id)
    if level:
        stmt = stmt.where(ExecutionLog.level == level)
    return stmt.order_by(LOG_SORTS[sort])


def list_signals(
    session: Session, *, user: User, strategy_id: int, execution_id: int | None = None
) -> Select[Signal]:
    """The orders paper trading would place, newest first."""
    runs = _own_executions(session, user=user, strategy_id=strategy_id)
    stmt = select(Signal).where(Signal.execution_id.in_(runs.scalar_subquery()))
    if execution_id is not None:
        stmt = stmt.where(Signal.execution_id == execution_id)
    return stmt.order_by(Signal.id.desc())
