"""Reading a finished backtest: the stored run and its documents (result, metrics, grid).

The result endpoints, the report and the exports all read through here, and only what the run
stored (ARCHITECTURE.md, "The way of one backtest", step 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk.auth.models import User
from quantdesk.backtests import spec
from quantdesk.backtests.grids import best_combination, grid_table
from quantdesk.backtests.models import (
    Backtest,
    BacktestEquity,
    BacktestLog,
    BacktestRefusal,
    BacktestResult,
    BacktestTrade,
    Kind,
    Status,
)
from quantdesk.backtests.service import get_backtest
from quantdesk.errors import Conflict


def _result_row(session: Session, task_id: int) -> BacktestResult | None:
    return session.scalars(select(BacktestResult).where(BacktestResult.task_id == task_id)).first()


@dataclass(frozen=True)
class Stored:
    """One finished run as stored: the backtest, its result and its rows, read-only."""

    backtest: Backtest
    result: BacktestResult
    equity: list[BacktestEquity]
    trades: list[BacktestTrade]
    refusals: list[BacktestRefusal]
    logs: list[BacktestLog]

    @property
    def metrics(self) -> dict[str, Any]:
        return {m: getattr(self.result, m) for m in spec.METRICS}

    @property
    def cost_summary(self) -> dict[str, Any]:
        r = self.result
        total = r.total_commission + r.total_stamp_duty + r.total_transfer_fee
        return {
            "commission": r.total_commission,
            "min_commission_fills": r.min_commission_fills,
            "min_commission_topup": r.min_commission_topup,
            "stamp_duty": r.total_stamp_duty,
            "transfer_fee": r.total_transfer_fee,
            "slippage": r.total_slippage,
            "total": total,
            "fills": len(self.trades),
            "share_of_capital": total / self.backtest.initial_capital,
        }


def finished_run(session: Session, *, user: User, backtest_id: int) -> Stored:
    """The stored run of a finished backtest (a grid's best combination); 409 before that."""
    backtest = get_backtest(session, user=user, backtest_id=backtest_id)
    if backtest.status != Status.FINISHED:
        raise Conflict(
            f"The backtest is {backtest.status}: results exist once it has finished.",
            details={"status": backtest.status},
        )
    run = backtest
    if backtest.kind == Kind.GRID:
        best = best_combination(session, backtest.id)
        if best is None:
            raise Conflict("No combination of the grid finished.", details={"status": "failed"})
        run = best
    return load_stored(session, run)


def load_stored(session: Session, backtest: Backtest) -> Stored:
    result = _result_row(session, backtest.id)
    if result is None:
        raise Conflict("The backtest has no stored result.", details={"status": backtest.status})

    def rows(model: Any, order: Any) -> list[Any]:
        return list(
            session.scalars(select(model).where(model.result_id == result.id).order_by(order))
        )

    return Stored(
        backtest=backtest,
        result=result,
        equity=rows(BacktestEquity, BacktestEquity.date),
        trades=rows(BacktestTrade, BacktestTrade.seq),
        refusals=rows(BacktestRefusal, BacktestRefusal.seq),
        logs=rows(BacktestLog, BacktestLog.seq),
    )


def result_document(session: Session, *, user: User, backtest_id: int) -> dict[str, Any]:
    """GET .../result: final value, metrics, equity curve, trades, refusals, logs, costs."""
    run = finished_run(session, user=user, backtest_id=backtest_id)
    document = stored_document(run)
    document["backtest_id"] = backtest_id
    document["combination_id"] = _combination_id(run, backtest_id)
    if run.backtest.id != backtest_id:
        document["grid"] = grid_table(session, user=user, grid_id=backtest_id)
    return document


def stored_document(run: Stored) -> dict[str, Any]:
    """A stored run as JSON-ready data (the result endpoint and the json export)."""
    result = run.result
    return {
        "backtest_id": run.backtest.id,
        "final_value": result.final_value,
        "metrics": run.metrics,
        "cost_summary": run.cost_summary,
        "rulebook_version": run.backtest.rulebook_version,
        "benchmark": run.backtest.benchmark,
        "equity": [
            {
                "date": e.date,
                "equity": e.equity,
                "cash": e.cash,
                "benchmark": e.benchmark,
                "drawdown": e.drawdown,
            }
            for e in run.equity
        ],
        "trades": [trade_dict(t) for t in run.trades],
        "refusals": [
            {
                "date": r.date,
                "symbol": r.symbol,
                "side": r.side,
                "requested": r.requested,
                "filled": r.filled,
                "reason": r.reason,
            }
            for r in run.refusals
        ],
        "positions": result.positions,
        "logs": [{"date": line.date, "message": line.message} for line in run.logs],
        "records": result.records,
        "notices": run.backtest.notices,
    }


TRADE_FIELDS = (
    "timestamp",
    "symbol",
    "action",
    "quantity",
    "price",
    "value",
    "commission",
    "min_commission_topup",
    "stamp_duty",
    "transfer_fee",
    "slippage",
    "profit_loss",
)


def trade_dict(trade: BacktestTrade) -> dict[str, Any]:
    return {"id": trade.id, **{f: getattr(trade, f) for f in TRADE_FIELDS}}


def metrics_document(session: Session, *, user: User, backtest_id: int) -> dict[str, Any]:
    """GET .../metrics: STRATEGY_API.md section 4 (a grid: its best combination's)."""
    run = finished_run(session, user=user, backtest_id=backtest_id)
    return {
        "backtest_id": backtest_id,
        "combination_id": _combination_id(run, backtest_id),
        **run.metrics,
    }


def _combination_id(run: Stored, asked: int) -> int | None:
    return run.backtest.id if run.backtest.id != asked else None


def finished_with_grid(
    session: Session, *, user: User, backtest_id: int
) -> tuple[Backtest, Stored, dict[str, Any] | None]:
    """What the report and the exports read: the backtest, its stored run, its grid table."""
    run = finished_run(session, user=user, backtest_id=backtest_id)
    backtest = get_backtest(session, user=user, backtest_id=backtest_id)
    grid = None
    if backtest.kind == Kind.GRID:
        grid = grid_table(session, user=user, grid_id=backtest_id)
    return backtest, run, grid
