"""Market data tables: instruments, raw daily bars (with what adjustment and limits need), lists.

Bars are stored unadjusted with a cumulative adjustment factor; forward (qfq) and backward (hfq)
adjusted prices are computed on read (service.py), so a new dividend never rewrites history.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from quantdesk.db import Base, UTCDateTime, utcnow

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit id for the bars.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Stock(Base):
    """An instrument (stock or index) with its listing facts and its latest bar, denormalised.

    `last_*` and `change_pct` repeat the newest bar so that lists, sectors and indices are one
    cheap query; the sync keeps them in step with `stock_prices`.
    """

    __tablename__ = "stocks"

    symbol: Mapped[str] = mapped_column(String(48), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    exchange: Mapped[str] = mapped_column(String(16), index=True)  # SH SZ BJ NASDAQ NYSE
    board: Mapped[str] = mapped_column(String(16))  # main chinext star bse us index
    market: Mapped[str] = mapped_column(String(8))  # cn_a us
    kind: Mapped[str] = mapped_column(String(8), default="stock", index=True)  # stock index
    sector: Mapped[str | None] = mapped_column(String(50), index=True)
    industry: Mapped[str | None] = mapped_column(String(100))
    market_cap: Mapped[float | None] = mapped_column(Float)  # in `currency`
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    listed_on: Mapped[dt.date | None] = mapped_column(Date)
    is_st: Mapped[bool] = mapped_column(default=False, server_default=false())
    source: Mapped[str] = mapped_column(String(20))  # the provider that owns the rows
    first_date: Mapped[dt.date | None] = mapped_column(Date)
    last_date: Mapped[dt.date | None] = mapped_column(Date)
    last_close: Mapped[float | None] = mapped_column(Float)
    change: Mapped[float | None] = mapped_column(Float)
    change_pct: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class StockPrice(Base):
    """One daily bar, unadjusted, as the exchange printed it.

    `adj_factor` is cumulative: price x adj_factor is comparable across corporate actions
    (only ratios of factors matter; providers anchor them differently). `adj_close` is
    close x adj_factor. `prev_close` is the exchange's reference price for the day (the
    previous close, ex-rights on ex-dates), the base of the day's change and price limits.
    Volume is in shares, amount in the quote currency.

    No foreign key to `stocks`: its per-row check halves the bulk-load rate (COPY, measured in
    benchmarks/market.py); the sync stores the listing before any bar of it.
    """

    __tablename__ = "stock_prices"
    __table_args__ = (UniqueConstraint("symbol", "date", name="uq_stock_prices_symbol_date"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(48))
    date: Mapped[dt.date] = mapped_column(Date)
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[float | None] = mapped_column(Float)
    adj_close: Mapped[float] = mapped_column(Float)
    adj_factor: Mapped[float] = mapped_column(Float, default=1.0)
    prev_close: Mapped[float | None] = mapped_column(Float)
    is_st: Mapped[bool] = mapped_column(default=False, server_default=false())
    suspended: Mapped[bool] = mapped_column(default=False, server_default=false())


class TechnicalIndicator(Base):
    """A stored indicator value (`quantdesk data indicators`), for SQL and BI readers.

    The API computes indicators on read from the bars; this table holds materialised series.
    `indicator_type` names one output (`sma`, `macd_signal`, `boll_upper`); `parameters` is the
    canonical `name=value` list the values were computed with (`n=20`).
    """

    __tablename__ = "technical_indicators"
    __table_args__ = (
        UniqueConstraint(
            "symbol", "indicator_type", "parameters", "date", name="uq_technical_indicators_key"
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    symbol: Mapped[str] = mapped_column(String(48), ForeignKey("stocks.symbol", ondelete="CASCADE"))
    date: Mapped[dt.date] = mapped_column(Date)
    indicator_type: Mapped[str] = mapped_column(String(32))
    parameters: Mapped[str] = mapped_column(String(100), default="")
    value: Mapped[float | None] = mapped_column(Float)


class WatchlistItem(Base):
    """A symbol on a user's watchlist; each user sees only their own."""

    __tablename__ = "watchlists"
    __table_args__ = (UniqueConstraint("user_id", "symbol", name="uq_watchlists_user_symbol"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    symbol: Mapped[str] = mapped_column(String(48), ForeignKey("stocks.symbol", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SyncRun(Base):
    """One data sync: what it was asked, what it wrote, which symbols failed and why."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_kind_session", "kind", "provider", "session_date"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(10))  # manual daily seed
    session_date: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10))  # running finished failed
    symbols_total: Mapped[int] = mapped_column(default=0)
    symbols_ok: Mapped[int] = mapped_column(default=0)
    bars_written: Mapped[int] = mapped_column(BigInteger, default=0)
    failures: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
