"""Strategies, their versions, and paper-trading executions with their own log and signal rows."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from quantdesk.db import Base, UTCDateTime, utcnow


class StrategyStatus(StrEnum):
    """A strategy's paper-trading state (API.md): running, stopped, or error."""

    STOPPED = "stopped"
    RUNNING = "running"
    ERROR = "error"


class Strategy(Base):
    __tablename__ = "strategies"
    __table_args__ = (Index("ix_strategies_user_updated", "user_id", "updated_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(20), default="python")
    # event | vectorized, from the sandbox check of the current code
    api: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=StrategyStatus.STOPPED)
    category: Mapped[str | None] = mapped_column(String(50))
    risk_level: Mapped[str | None] = mapped_column(String(20))
    # Default params: the code's PARAMS merged with the user's overrides.
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    versions: Mapped[list[StrategyVersion]] = relationship(
        back_populates="strategy",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="StrategyVersion.version",
    )


class StrategyVersion(Base):
    __tablename__ = "strategy_versions"
    __table_args__ = (UniqueConstraint("strategy_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    strategy_id: Mapped[int] = mapped_column(ForeignKey("strategies.id", ondelete="CASCADE"))
    version: Mapped[int]
    code: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    changelog: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    strategy: Mapped[Strategy] = relationship(back_populates="versions")


class StrategyExecution(Base):
    """One paper-trading run of a strategy, from `run` to `stop` (or an error)."""

    __tablename__ = "strategy_executions"
    __table_args__ = (Index("ix_strategy_executions_strategy_status", "strategy_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    strategy_id: Mapped[int] = mapped_column(ForeignKey("strategies.id", ondelete="CASCADE"))
    version: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), default=StrategyStatus.RUNNING)
    start_time: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    end_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    profit_loss: Mapped[float] = mapped_column(Float, default=0.0)
    # A short summary; the lines themselves are execution_logs rows (pageable).
    logs: Mapped[str | None] = mapped_column(Text)
    # {symbols, initial_capital, schedule, market, params}
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The paper portfolio and ctx.state carried from one step to the next.
    portfolio: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_step_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_bar_date: Mapped[dt.date | None]
    error: Mapped[str | None] = mapped_column(Text)


class ExecutionLog(Base):
    __tablename__ = "execution_logs"
    __table_args__ = (Index("ix_execution_logs_execution_id_id", "execution_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    execution_id: Mapped[int] = mapped_column(
        ForeignKey("strategy_executions.id", ondelete="CASCADE")
    )
    time: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    level: Mapped[str] = mapped_column(String(10), default="info")
    message: Mapped[str] = mapped_column(Text)


class Signal(Base):
    """An order paper trading would place: "buy 200 600519.SH at the next open"."""

    __tablename__ = "strategy_signals"
    __table_args__ = (Index("ix_strategy_signals_execution_id_id", "execution_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    execution_id: Mapped[int] = mapped_column(
        ForeignKey("strategy_executions.id", ondelete="CASCADE")
    )
    bar_date: Mapped[dt.date]
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    shares: Mapped[float] = mapped_column(Float)
    reference_price: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
