"""One paper-trading step: the bars since the last step, run in the sandbox from the stored book.

A step loads the history the strategy needs (PAPER_WARMUP_BARS before its first new bar) up to
the latest stored bar, and hands it to the sandbox with a `resume`: the bars before the first
new one are history only, the book starts from the stored cash and positions, the orders the
last step queued fill at the first new open, and `ctx.state` goes on from where it was. What
the run queues after the latest bar are the step's signals ("buy 200 600519.SH at the next
open"). The first step starts from the initial capital and trades from the latest bar only.

Exactly once per new bar: the step holds a row lock on the execution (SELECT ... FOR UPDATE on
PostgreSQL) while it runs, so a second step of the same execution waits and then finds the bar
done; its write is also conditional on the `last_bar_date` it started from (SQLite, which has
no row locks and must not hold a read transaction across the run, relies on that alone).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import distinct, func, select, update
from sqlalchemy.orm import Session

from quantdesk.db import utcnow
from quantdesk.engine import Bars
from quantdesk.engine.errors import EngineError
from quantdesk.errors import APIError
from quantdesk.market import service as market
from quantdesk.market.models import StockPrice, SyncRun
from quantdesk.notifications.delivery import Runtime
from quantdesk.notifications.service import notify
from quantdesk.sandbox.runner import SandboxOutcome, Status, run_backtest
from quantdesk.settings import Settings
from quantdesk.strategies.models import (
    ExecutionLog,
    Signal,
    Strategy,
    StrategyExecution,
    StrategyStatus,
    StrategyVersion,
)

log = logging.getLogger(__name__)

MAX_TRACEBACK = 20_000
# A data sync "running" for longer than this is taken as crashed (its row was never finished).
SYNC_STALE = dt.timedelta(hours=2)


@dataclass(frozen=True)
class StepOutcome:
    """What one call did: `stepped`, `no_new_bar`, `not_running`, `superseded` or `failed`."""

    status: str
    bar_date: dt.date | None = None
    signals: int = 0


@dataclass(frozen=True)
class _Window:
    start: dt.date  # first bar loaded (history)
    trade_from: dt.date  # first bar the strategy is called on
    latest: dt.date  # last bar loaded


def _locked(session: Session, execution_id: int) -> StrategyExecution | None:
    stmt = select(StrategyExecution).where(StrategyExecution.id == execution_id)
    # SQLite ignores FOR UPDATE; the conditional write in _claim covers it there.
    return session.scalars(stmt.with_for_update()).first()


def latest_bar_date(session: Session, symbols: list[str]) -> dt.date | None:
    """The newest stored bar of any of the symbols."""
    stmt = select(func.max(StockPrice.date)).where(StockPrice.symbol.in_(symbols))
    value: dt.date | None = session.scalar(stmt)
    return value


def final_bar_date(session: Session, symbols: list[str]) -> dt.date | None:
    """The newest bar date a step may treat as complete.

    A data sync writes in batches, so while one runs the newest day may have bars for some
    symbols only. Then that day waits (the sync's end enqueues the steps again, tasks.py);
    otherwise a symbol without the newest bar is suspended, and the day is complete.
    """
    latest = latest_bar_date(session, symbols)
    if latest is None:
        return None
    of_symbols = StockPrice.symbol.in_(symbols)
    present = session.scalar(
        select(func.count(distinct(StockPrice.symbol))).where(of_symbols, StockPrice.date == latest)
    )
    if present == len(set(symbols)):
        return latest
    syncing = session.scalar(
        select(func.count()).where(
            SyncRun.status == "running", SyncRun.started_at > utcnow() - SYNC_STALE
        )
    )
    if not syncing:
        return latest
    before: dt.date | None = session.scalar(
        select(func.max(StockPrice.date)).where(of_symbols, StockPrice.date < latest)
    )
    return before


def _window(
    session: Session, symbols: list[str], last: dt.date | None, latest: dt.date, warmup: int
) -> _Window:
    of_symbols = StockPrice.symbol.in_(symbols)
    trade_from = latest  # the first step trades from the latest bar only
    if last is not None:
        first_new = select(func.min(StockPrice.date)).where(of_symbols, StockPrice.date > last)
        trade_from = session.scalar(first_new) or latest
    dates = select(StockPrice.date).where(of_symbols).distinct()
    start = session.scalar(
        dates.where(StockPrice.date < trade_from)
        .order_by(StockPrice.date.desc())
        .offset(warmup - 1)
        .limit(1)
    )
    if start is None:  # less history than the warm-up: all of it
        start = session.scalar(select(func.min(StockPrice.date)).where(of_symbols))
    return _Window(start=start or trade_from, trade_from=trade_from, latest=latest)


def _code(session: Session, execution: StrategyExecution) -> str:
    """The code of the version the run was started with (later edits need a new run)."""
    version = session.scalars(
        select(StrategyVersion).where(
            StrategyVersion.strategy_id == execution.strategy_id,
            StrategyVersion.version == execution.version,
        )
    ).first()
    if version is not None:
        return version.code
    strategy = session.get(Strategy, execution.strategy_id)
    return strategy.code if strategy is not None else ""


def resume_of(execution: StrategyExecution, trade_from: dt.date) -> dict[str, Any]:
    """The engine's `resume` from the stored portfolio and state (see quantdesk.engine.Resume)."""
    portfolio = execution.portfolio or {}
    return {
        "trade_from": trade_from.isoformat(),
        "cash": float(portfolio.get("cash", execution.config["initial_capital"])),
        "positions": {
            p["symbol"]: {"shares": p["shares"], "avg_cost": p.get("avg_cost") or 0.0}
            for p in portfolio.get("positions", [])
        },
        "pending": [
            {"symbol": o["symbol"], "shares": o["shares"]}
            for o in portfolio.get("pending_orders", [])
        ],
        "state": dict(execution.state or {}),
        # The first step starts the strategy: its initialize(ctx) runs once, then never again.
        "initialize": execution.last_bar_date is None,
    }


def perform_step(
    session: Session, *, execution_id: int, settings: Settings, runtime: Runtime
) -> StepOutcome:
    """Run the step of a running execution if a bar arrived since its last one; else nothing.

    Commits (through `notify`). A failed run (the strategy raised, a sandbox limit stopped it,
    its data is gone) sets the execution and the strategy to `error`, logs the reason and
    notifies `strategy_error`. Raises only for faults of the platform (the sandbox cannot
    confine runs here); the execution stays running and the next tick tries again.
    """
    execution = _locked(session, execution_id)
    if execution is None or execution.status != StrategyStatus.RUNNING:
        session.rollback()
        return StepOutcome("not_running")
    config = execution.config
    symbols: list[str] = list(config["symbols"])
    last = execution.last_bar_date
    latest = final_bar_date(session, symbols)
    if latest is None or (last is not None and latest <= last):
        session.rollback()  # releases the row lock
        return StepOutcome("no_new_bar", bar_date=last)
    window = _window(session, symbols, last, latest, settings.PAPER_WARMUP_BARS)
    try:
        frame, listed = market.load_bars(
            session, symbols=symbols, start=window.start, end=window.latest
        )
        bars = Bars.from_long(frame, listing_dates=listed)
    except (APIError, EngineError) as exc:
        message = exc.message if isinstance(exc, APIError) else str(exc)
        return _fail(session, runtime, execution, window, last, f"the market data: {message}", None)
    code = _code(session, execution)
    run_config = {
        "market": config.get("market"),
        "initial_capital": float(config["initial_capital"]),
        "params": dict(config.get("params") or {}),
        "resume": resume_of(execution, window.trade_from),
    }
    if session.get_bind().dialect.name == "sqlite":
        # End the read transaction: SQLite (WAL) refuses a later write from a transaction that
        # started before another connection's commit. The conditional write guards instead.
        session.commit()
    outcome = run_backtest(code, bars, run_config, limits=settings.sandbox_limits())
    if outcome.status != Status.FINISHED or outcome.result is None:
        error = outcome.error or "the run failed"
        return _fail(session, runtime, execution, window, last, error, outcome)
    return _store(session, runtime, execution, window, last, outcome)


def _claim(
    session: Session, execution: StrategyExecution, last: dt.date | None, values: dict[str, Any]
) -> bool:
    """Write `values` if the execution is still running at `last`: the step is not a duplicate."""
    stmt = (
        update(StrategyExecution)
        .where(
            StrategyExecution.id == execution.id,
            StrategyExecution.status == StrategyStatus.RUNNING,
            StrategyExecution.last_bar_date.is_not_distinct_from(last),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    claimed = session.execute(stmt).rowcount == 1  # type: ignore[attr-defined]
    if not claimed:
        session.rollback()
        return False
    session.refresh(execution)
    return True


def _money(value: float) -> str:
    return f"{value:,.2f}"


def _fill_line(fill: dict[str, Any]) -> str:
    verb = "bought" if fill["side"] == "buy" else "sold"
    costs = sum(float(fill.get(k) or 0.0) for k in ("commission", "stamp_duty", "transfer_fee"))
    return (
        f"{fill['date']}: {verb} {fill['shares']:g} {fill['symbol']} at {_money(fill['price'])}"
        f" (costs {_money(costs)})"
    )


def _refusal_line(refusal: dict[str, Any]) -> str:
    filled = float(refusal.get("filled") or 0.0)
    what = f"cut to {filled:g}" if filled else "not filled"
    return (
        f"{refusal['date']}: {refusal['side']} {float(refusal['requested']):g} "
        f"{refusal['symbol']} {what}: {refusal['reason']}"
    )


def _positions(result: dict[str, Any]) -> list[dict[str, Any]]:
    marks = {row["symbol"]: row for row in result.get("positions", [])}
    held = []
    for symbol, position in sorted((result.get("book") or {}).get("positions", {}).items()):
        mark = marks.get(symbol, {})
        held.append(
            {
                "symbol": symbol,
                "shares": position["shares"],
                "avg_cost": position.get("avg_cost"),
                "close": mark.get("close"),
                "market_value": mark.get("market_value"),
            }
        )
    return held


def _store(
    session: Session,
    runtime: Runtime,
    execution: StrategyExecution,
    window: _Window,
    last: dt.date | None,
    outcome: SandboxOutcome,
) -> StepOutcome:
    result = outcome.result or {}
    now = utcnow()
    equity_row = result["equity"][-1]
    equity = float(equity_row["equity"])
    cash = float((result.get("book") or {}).get("cash", equity_row["cash"]))
    pending = [
        {
            "symbol": o["symbol"],
            "shares": o["shares"],
            "reference_price": o.get("reference_price"),
        }
        for o in result.get("pending_orders", [])
    ]
    profit = equity - float(execution.config["initial_capital"])
    day = window.latest.isoformat()
    summary = (
        f"Step {day}: equity {_money(equity)} (P&L {profit:+,.2f}), "
        f"{len(result.get('fills', []))} fills, {len(pending)} signals"
    )
    values = {
        "portfolio": {
            "date": day,
            "cash": cash,
            "equity": equity,
            "positions": _positions(result),
            "pending_orders": pending,
        },
        "state": result.get("state") or {},
        "last_bar_date": window.latest,
        "last_step_at": now,
        "profit_loss": profit,
        "logs": summary,
    }
    if not _claim(session, execution, last, values):
        return StepOutcome("superseded", bar_date=window.latest)
    # The run's own lines in bar order: fills, refused orders, then ctx.log lines of each day.
    dated: list[tuple[str, int, str, str]] = [
        (str(f["date"]), 0, "info", _fill_line(f)) for f in result.get("fills", [])
    ]
    dated += [
        (str(r["date"]), 1, "warning", _refusal_line(r))
        for r in result.get("refusals", [])
        if r["reason"] != "no_next_bar"  # the pending orders: the signals below
    ]
    dated += [
        (str(row["date"]), 2, "info", f"[{row['date']}] {row['message']}")
        for row in result.get("logs", [])
    ]
    dated.sort(key=lambda line: (line[0], line[1]))
    lines = [(level, text) for _, _, level, text in dated]
    lines += [("warning", notice) for notice in outcome.notices]
    signals = []
    for order in pending:
        side = "buy" if order["shares"] > 0 else "sell"
        shares = abs(float(order["shares"]))
        message = f"{side} {shares:g} {order['symbol']} at the next open"
        signals.append(
            Signal(
                execution_id=execution.id,
                bar_date=window.latest,
                symbol=order["symbol"],
                side=side,
                shares=shares,
                reference_price=order["reference_price"],
                message=message,
                created_at=now,
            )
        )
        price = order["reference_price"]
        lines.append(
            ("info", f"Signal: {message}" + (f" (last close {_money(price)})" if price else ""))
        )
    lines.append(("info", summary))
    session.add_all(
        ExecutionLog(execution_id=execution.id, time=now, level=level, message=text)
        for level, text in lines
    )
    session.add_all(signals)
    if not signals:
        session.commit()
        return StepOutcome("stepped", bar_date=window.latest)
    strategy = session.get(Strategy, execution.strategy_id)
    notify(
        session,
        user_id=strategy.user_id if strategy is not None else 0,
        event="strategy_signal",
        data={
            "strategy_id": execution.strategy_id,
            "strategy_name": strategy.name if strategy is not None else "",
            "execution_id": execution.id,
            "date": day,
            "signals": [
                {
                    "symbol": s.symbol,
                    "action": s.side,
                    "quantity": int(s.shares) if s.shares.is_integer() else s.shares,
                    "price": s.reference_price,
                }
                for s in signals
            ],
        },
        runtime=runtime,
    )
    return StepOutcome("stepped", bar_date=window.latest, signals=len(signals))


def _fail(
    session: Session,
    runtime: Runtime,
    execution: StrategyExecution,
    window: _Window,
    last: dt.date | None,
    error: str,
    outcome: SandboxOutcome | None,
) -> StepOutcome:
    now = utcnow()
    reason = f"Step {window.latest.isoformat()} failed: {error}"
    stmt = (
        update(StrategyExecution)
        .where(
            StrategyExecution.id == execution.id,
            StrategyExecution.status == StrategyStatus.RUNNING,
            StrategyExecution.last_bar_date.is_not_distinct_from(last),
        )
        .values(status=StrategyStatus.ERROR, error=error, end_time=now, logs=reason)
        .execution_options(synchronize_session=False)
    )
    if session.execute(stmt).rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()  # stopped meanwhile, or another step stored this bar
        return StepOutcome("superseded", bar_date=window.latest)
    session.execute(
        update(Strategy)
        .where(Strategy.id == execution.strategy_id, Strategy.status == StrategyStatus.RUNNING)
        .values(status=StrategyStatus.ERROR)
        .execution_options(synchronize_session=False)
    )
    lines = [("error", reason)]
    if outcome is not None and outcome.traceback:
        lines.append(("error", outcome.traceback[:MAX_TRACEBACK]))
    lines.append(("error", "Paper trading stopped with an error."))
    session.add_all(
        ExecutionLog(execution_id=execution.id, time=now, level=level, message=text)
        for level, text in lines
    )
    if outcome is not None and outcome.diagnostics:
        log.warning("paper step %s failed; worker output: %s", execution.id, outcome.diagnostics)
    strategy = session.get(Strategy, execution.strategy_id)
    session.refresh(execution)
    if strategy is not None:
        session.refresh(strategy)
    notify(
        session,
        user_id=strategy.user_id if strategy is not None else 0,
        event="strategy_error",
        data={
            "strategy_id": execution.strategy_id,
            "strategy_name": strategy.name if strategy is not None else "",
            "execution_id": execution.id,
            "error": error,
        },
        runtime=runtime,
    )
    return StepOutcome("failed", bar_date=window.latest)
