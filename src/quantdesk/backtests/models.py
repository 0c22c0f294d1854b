"""Backtest tables: the request with everything needed to reproduce it, and what the run produced.

`backtest_tasks` keeps the seed's columns plus the run's full config, the code it ran (a
snapshot: later edits of the strategy do not change a stored backtest), the data range and
rulebook it used and the request hash that lets an identical request reuse a finished result.
A parameter grid is one `grid` row whose combinations are `combination` rows of their own
(parent_id), each with its own result; `backtest_grid_rows` holds their params and ranking.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from quantdesk.db import Base, UTCDateTime, utcnow


class Status(StrEnum):
    """A backtest's state (API.md "Long work"): queued -> running -> finished | failed."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({Status.FINISHED, Status.FAILED, Status.CANCELLED})
ACTIVE = frozenset({Status.QUEUED, Status.RUNNING})


class Kind(StrEnum):
    SINGLE = "single"  # one run
    GRID = "grid"  # a parameter grid: no run of its own, its combinations run
    COMBINATION = "combination"  # one combination of a grid (parent_id = the grid)


class Backtest(Base):
    __tablename__ = "backtest_tasks"
    __table_args__ = (
        Index("ix_backtest_tasks_user_created", "user_id", "created_at"),
        Index("ix_backtest_tasks_reuse", "user_id", "request_hash", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    strategy_id: Mapped[int] = mapped_column(
        ForeignKey("strategies.id", ondelete="CASCADE"), index=True
    )
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("backtest_tasks.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(12), default=Kind.SINGLE)
    name: Mapped[str] = mapped_column(String(200))
    strategy_name: Mapped[str] = mapped_column(String(100))
    # The request (STRATEGY_API.md section 5 knobs) ...
    symbols: Mapped[list[str]] = mapped_column(JSON)
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date] = mapped_column(Date)
    initial_capital: Mapped[float] = mapped_column(Float)
    benchmark: Mapped[str | None] = mapped_column(String(48))
    market: Mapped[str] = mapped_column(String(8))
    adjust: Mapped[str] = mapped_column(String(4))
    fill: Mapped[str] = mapped_column(String(12))
    slippage_bps: Mapped[float] = mapped_column(Float, default=0.0)
    costs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    risk_free_rate: Mapped[float] = mapped_column(Float, default=0.0)
    # The code's PARAMS merged with the request's params (a combination's own values included).
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    param_grid: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    rank_by: Mapped[str | None] = mapped_column(String(32))
    # ... and the config exactly as the sandbox receives it (sandbox.runner.run_backtest).
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # What makes it reproducible: the code it ran, the rules, the engine, the data.
    strategy_version: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(Text)
    code_sha256: Mapped[str] = mapped_column(String(64))
    rulebook_version: Mapped[str] = mapped_column(String(32))
    engine_version: Mapped[str] = mapped_column(String(40))
    data_fingerprint: Mapped[str] = mapped_column(String(64))
    request_hash: Mapped[str] = mapped_column(String(64))
    data_start: Mapped[dt.date | None] = mapped_column(Date)  # first and last bar the run saw
    data_end: Mapped[dt.date | None] = mapped_column(Date)
    bars_count: Mapped[int | None] = mapped_column(Integer)  # trading days
    reused_from_id: Mapped[int | None] = mapped_column(
        ForeignKey("backtest_tasks.id", ondelete="SET NULL")
    )
    # The run.
    status: Mapped[str] = mapped_column(String(12), default=Status.QUEUED)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    # The limit that stopped a run (cpu, wall, memory, file_size, result_size, integrity).
    error_kind: Mapped[str | None] = mapped_column(String(20))
    notices: Mapped[list[str]] = mapped_column(JSON, default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # > 1: delivered again
    # Seconds per phase: queue, load, run (sandbox), store, total; the sandbox's cpu and rss.
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    result: Mapped[BacktestResult | None] = relationship(
        viewonly=True, lazy="selectin", uselist=False
    )


class BacktestResult(Base):
    """Every metric of STRATEGY_API.md section 4, the cost summary and the small leftovers."""

    __tablename__ = "backtest_results"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Unique: storing a result twice (a task delivered again) is refused by the database too.
    task_id: Mapped[int] = mapped_column(
        ForeignKey("backtest_tasks.id", ondelete="CASCADE"), unique=True
    )
    final_value: Mapped[float] = mapped_column(Float)
    total_return: Mapped[float | None] = mapped_column(Float)
    annual_return: Mapped[float | None] = mapped_column(Float)
    annual_volatility: Mapped[float | None] = mapped_column(Float)
    sharpe_ratio: Mapped[float | None] = mapped_column(Float)
    sortino_ratio: Mapped[float | None] = mapped_column(Float)
    max_drawdown: Mapped[float | None] = mapped_column(Float)
    max_drawdown_duration: Mapped[int | None] = mapped_column(Integer)
    calmar_ratio: Mapped[float | None] = mapped_column(Float)
    trades_count: Mapped[int] = mapped_column(Integer)
    round_trips_count: Mapped[int | None] = mapped_column(Integer)
    win_rate: Mapped[float | None] = mapped_column(Float)
    profit_loss_ratio: Mapped[float | None] = mapped_column(Float)
    benchmark_return: Mapped[float | None] = mapped_column(Float)
    alpha: Mapped[float | None] = mapped_column(Float)
    beta: Mapped[float | None] = mapped_column(Float)
    information_ratio: Mapped[float | None] = mapped_column(Float)
    tracking_error: Mapped[float | None] = mapped_column(Float)
    turnover: Mapped[float | None] = mapped_column(Float)
    # Cost summary: money paid over the run, and how many fills paid the minimum commission.
    total_commission: Mapped[float] = mapped_column(Float, default=0.0)
    min_commission_fills: Mapped[int] = mapped_column(Integer, default=0)
    min_commission_topup: Mapped[float] = mapped_column(Float, default=0.0)
    total_stamp_duty: Mapped[float] = mapped_column(Float, default=0.0)
    total_transfer_fee: Mapped[float] = mapped_column(Float, default=0.0)
    total_slippage: Mapped[float] = mapped_column(Float, default=0.0)
    # Final holdings, ctx.record series, ctx.state, and the closes (as the run saw them) of up
    # to five traded symbols for the report's price charts.
    positions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    records: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prices: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BacktestTrade(Base):
    """One fill with its costs; `profit_loss` is a sell's realised P&L (FIFO lots, net of costs)."""

    __tablename__ = "backtest_trades"
    __table_args__ = (Index("ix_backtest_trades_result_seq", "result_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("backtest_results.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)  # execution order
    symbol: Mapped[str] = mapped_column(String(48))
    action: Mapped[str] = mapped_column(String(4))  # buy | sell
    quantity: Mapped[float] = mapped_column(Float)
    price: Mapped[float] = mapped_column(Float)
    timestamp: Mapped[dt.date] = mapped_column(Date)  # the trading day of the fill
    value: Mapped[float] = mapped_column(Float)
    commission: Mapped[float] = mapped_column(Float)  # includes the minimum top-up
    min_commission_topup: Mapped[float] = mapped_column(Float)
    stamp_duty: Mapped[float] = mapped_column(Float)
    transfer_fee: Mapped[float] = mapped_column(Float)
    slippage: Mapped[float] = mapped_column(Float)  # money lost to slippage (inside the price)
    profit_loss: Mapped[float | None] = mapped_column(Float)


class BacktestEquity(Base):
    """The daily equity curve: equity, cash, the benchmark scaled to the capital, drawdown."""

    __tablename__ = "backtest_equity"
    __table_args__ = (UniqueConstraint("result_id", "date", name="uq_backtest_equity_result_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("backtest_results.id", ondelete="CASCADE"))
    date: Mapped[dt.date] = mapped_column(Date)
    equity: Mapped[float] = mapped_column(Float)
    cash: Mapped[float] = mapped_column(Float)
    benchmark: Mapped[float | None] = mapped_column(Float)
    drawdown: Mapped[float] = mapped_column(Float)


class BacktestRefusal(Base):
    """An order the rules refused or trimmed, with its reason (STRATEGY_API.md section 3)."""

    __tablename__ = "backtest_refusals"
    __table_args__ = (Index("ix_backtest_refusals_result_seq", "result_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("backtest_results.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    date: Mapped[dt.date] = mapped_column(Date)
    symbol: Mapped[str] = mapped_column(String(48))
    side: Mapped[str] = mapped_column(String(4))
    requested: Mapped[float] = mapped_column(Float)
    filled: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(String(20))


class BacktestLog(Base):
    """A `ctx.log` line of the run (capped by SANDBOX_MAX_LOG_LINES / _BYTES)."""

    __tablename__ = "backtest_logs"
    __table_args__ = (Index("ix_backtest_logs_result_seq", "result_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("backtest_results.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    date: Mapped[dt.date | None] = mapped_column(Date)
    message: Mapped[str] = mapped_column(Text)


class BacktestGridRow(Base):
    """One combination of a grid: its params, its backtest, and its rank once the grid is done."""

    __tablename__ = "backtest_grid_rows"
    __table_args__ = (
        UniqueConstraint("grid_id", "position", name="uq_backtest_grid_rows_position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("backtest_tasks.id", ondelete="CASCADE"))
    backtest_id: Mapped[int] = mapped_column(
        ForeignKey("backtest_tasks.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)  # order of the combination in the grid
    params: Mapped[dict[str, Any]] = mapped_column(JSON)  # the grid's keys only
    rank: Mapped[int | None] = mapped_column(Integer)  # 1 = best; None until ranked or if failed
    score: Mapped[float | None] = mapped_column(Float)  # the rank_by metric's value
