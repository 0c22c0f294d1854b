"""Write bars fast and idempotently: COPY via a staging table on PostgreSQL, executemany on SQLite.

Both paths are upserts on (symbol, date) that only touch a row whose values changed, so running
the same sync twice writes nothing the second time, and a later correction from the source
replaces the old values. Nothing here deletes bars, except `replace_owner` when a symbol moves
to another provider, in the same transaction as the new owner's bars.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from quantdesk.db import utcnow
from quantdesk.market.models import Stock, StockPrice
from quantdesk.market.providers.base import Listing

log = logging.getLogger(__name__)

#: Column order of a prepared bar frame and of the staging table.
ROW_COLUMNS = (
    "symbol",
    "date",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "amount",
    "adj_close",
    "adj_factor",
    "prev_close",
    "is_st",
    "suspended",
)
_VALUE_COLUMNS = ROW_COLUMNS[2:]
_NULLABLE = ("amount", "prev_close")
_PG_TYPES = (
    "varchar",
    "date",
    "float8",
    "float8",
    "float8",
    "float8",
    "int8",
    "float8",
    "float8",
    "float8",
    "float8",
    "bool",
    "bool",
)
_STAGE_DDL = """
CREATE TEMP TABLE quantdesk_bars_stage (
    symbol varchar(48), date date, open float8, high float8, low float8, close float8,
    volume bigint, amount float8, adj_close float8, adj_factor float8, prev_close float8,
    is_st boolean, suspended boolean
)
"""


def _upsert_sql(rows: str, *, distinct: str) -> str:
    """INSERT `rows` ON CONFLICT DO UPDATE, but only where a value differs (`distinct` operator).

    SQLite compares row values with IS NOT (3.15+); PostgreSQL with IS DISTINCT FROM.
    """
    columns = ", ".join(ROW_COLUMNS)
    assignments = ", ".join(f"{c} = excluded.{c}" for c in _VALUE_COLUMNS)
    old = ", ".join(f"stock_prices.{c}" for c in _VALUE_COLUMNS)
    new = ", ".join(f"excluded.{c}" for c in _VALUE_COLUMNS)
    return (
        f"INSERT INTO stock_prices ({columns}) {rows} "
        f"ON CONFLICT (symbol, date) DO UPDATE SET {assignments} "
        f"WHERE ({old}) {distinct} ({new})"
    )


def write_bars(session: Session, bars: pd.DataFrame, *, fresh: Iterable[str] = ()) -> int:
    """Upsert prepared bars (columns ROW_COLUMNS); returns how many rows were new or changed.

    `fresh` names symbols that have no stored bars: on PostgreSQL their rows are copied
    straight into the table (nothing can conflict, and this is the bulk case of a first load);
    should another writer have raced us there, the batch falls back to the upsert.
    """
    if bars.empty:
        return 0
    frame = bars.loc[:, list(ROW_COLUMNS)]
    connection = session.connection()
    raw: Any = connection.connection.driver_connection
    if connection.dialect.name != "postgresql":
        return _executemany_sqlite(raw, frame)
    new = frame["symbol"].isin(set(fresh))
    written = 0
    if new.any():
        savepoint = session.begin_nested()
        session.connection()  # emits the SAVEPOINT (SQLAlchemy begins it lazily)
        try:
            with raw.cursor() as cursor:
                _copy(cursor, "stock_prices", frame[new])
            savepoint.commit()
            written += int(new.sum())
        except Exception as exc:  # the driver's own error: we wrote through its connection
            if not str(getattr(exc, "sqlstate", "")).startswith("23"):  # not an integrity error
                raise
            savepoint.rollback()
            log.warning("direct COPY of new bars conflicted, upserting instead: %s", exc)
            new[:] = False
    if (~new).any():
        written += _upsert_postgres(raw, frame[~new])
    return written


def _copy(cursor: Any, table: str, frame: pd.DataFrame) -> None:
    """Binary COPY of `frame` (ROW_COLUMNS) into `table`; NaN in nullable columns is NULL."""
    columns = []
    for name in ROW_COLUMNS:
        series = frame[name]
        if name in _NULLABLE:
            columns.append(series.astype(object).where(series.notna(), None).tolist())
        elif name == "date":
            columns.append(pd.to_datetime(series).dt.date.tolist())
        else:
            columns.append(series.tolist())
    with cursor.copy(f"COPY {table} ({', '.join(ROW_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(_PG_TYPES))
        for row in zip(*columns, strict=True):
            copy.write_row(row)


def _upsert_postgres(raw: Any, frame: pd.DataFrame) -> int:
    with raw.cursor() as cursor:
        cursor.execute(_STAGE_DDL)
        try:
            _copy(cursor, "quantdesk_bars_stage", frame)
            stage = f"SELECT {', '.join(ROW_COLUMNS)} FROM quantdesk_bars_stage"  # noqa: S608
            cursor.execute(_upsert_sql(stage, distinct="IS DISTINCT FROM"))
            return int(cursor.rowcount)
        finally:
            cursor.execute("DROP TABLE IF EXISTS quantdesk_bars_stage")


def _executemany_sqlite(raw: Any, frame: pd.DataFrame) -> int:
    rows = [
        tuple(None if isinstance(v, float) and math.isnan(v) else v for v in row)
        for row in _python_rows(frame)
    ]
    placeholders = "VALUES (" + ", ".join("?" for _ in ROW_COLUMNS) + ")"
    cursor = raw.cursor()
    try:
        before = raw.total_changes
        cursor.executemany(_upsert_sql(placeholders, distinct="IS NOT"), rows)
        return int(raw.total_changes - before)
    finally:
        cursor.close()


def _python_rows(frame: pd.DataFrame) -> Iterable[tuple[Any, ...]]:
    dates = [d.isoformat() for d in pd.to_datetime(frame["date"]).dt.date]
    columns: list[list[Any]] = [frame["symbol"].astype(str).tolist(), dates]
    for name in ROW_COLUMNS[2:]:
        values = frame[name].to_numpy()
        if name in ("is_st", "suspended"):
            columns.append([int(v) for v in values.astype(bool)])
        elif name == "volume":
            columns.append(values.astype(np.int64).tolist())
        else:
            columns.append(values.astype(np.float64).tolist())
    return zip(*columns, strict=True)


def upsert_listings(session: Session, listings: Sequence[Listing], *, source: str) -> int:
    """Insert new instruments and refresh known ones; an existing row keeps its owner (source).

    A field the provider does not know (None) keeps its stored value.
    """
    if not listings:
        return 0
    now = utcnow()
    rows = [
        {
            "symbol": item.symbol,
            "name": item.name,
            "exchange": item.exchange,
            "board": item.board,
            "market": item.market,
            "kind": item.kind,
            "sector": item.sector,
            "industry": item.industry,
            "market_cap": item.market_cap,
            "currency": item.currency,
            "listed_on": item.listed_on,
            "is_st": item.is_st,
            "source": source,
            "created_at": now,
            "updated_at": now,
        }
        for item in listings
    ]
    dialect = session.connection().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(Stock)
    keep = ("sector", "industry", "market_cap", "listed_on")
    changes: dict[str, Any] = {
        name: func.coalesce(stmt.excluded[name], getattr(Stock, name)) for name in keep
    }
    for name in ("name", "exchange", "board", "market", "kind", "currency", "is_st"):
        changes[name] = stmt.excluded[name]
    changes["updated_at"] = stmt.excluded.updated_at
    for start in range(0, len(rows), 500):
        session.execute(
            stmt.on_conflict_do_update(index_elements=["symbol"], set_=changes),
            rows[start : start + 500],
        )
    return len(rows)


def replace_owner(session: Session, symbol: str, *, source: str) -> bool:
    """Make `source` the owner of `symbol`; drops the previous owner's bars. True if it moved."""
    current = session.scalar(select(Stock.source).where(Stock.symbol == symbol))
    if current is None or current == source:
        return False
    session.execute(delete(StockPrice).where(StockPrice.symbol == symbol))
    session.execute(update(Stock).where(Stock.symbol == symbol).values(source=source))
    return True


def refresh_latest(session: Session, symbols: Iterable[str]) -> None:
    """Copy each symbol's first date and latest bar into `stocks` (lists read them from there)."""
    for symbol in symbols:
        first = session.scalar(select(func.min(StockPrice.date)).where(StockPrice.symbol == symbol))
        last = session.execute(
            select(StockPrice.date, StockPrice.close, StockPrice.prev_close)
            .where(StockPrice.symbol == symbol)
            .order_by(StockPrice.date.desc())
            .limit(1)
        ).first()
        values: dict[str, Any] = {"first_date": first, "updated_at": utcnow()}
        if last is not None:
            change, change_pct = change_of(last.close, last.prev_close)
            values.update(
                last_date=last.date, last_close=last.close, change=change, change_pct=change_pct
            )
        session.execute(update(Stock).where(Stock.symbol == symbol).values(**values))


def change_of(close: float, prev_close: float | None) -> tuple[float | None, float | None]:
    """The day's change and change in percent against the reference price."""
    if prev_close is None or not prev_close or math.isnan(prev_close):
        return None, None
    change = close - prev_close
    return round(change, 4), round(change / prev_close * 100.0, 4)


def stored_tail(session: Session, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Stored (date, close, adj_factor) from the last bar before `start` through `end`.

    What the sync needs to join new bars to old: the previous close for the first new bar and
    the factors on overlapping dates (to put new factors on the stored scale).
    """
    before = session.scalar(
        select(func.max(StockPrice.date)).where(
            StockPrice.symbol == symbol, StockPrice.date < start
        )
    )
    rows = session.execute(
        select(StockPrice.date, StockPrice.close, StockPrice.adj_factor)
        .where(StockPrice.symbol == symbol, StockPrice.date >= (before or start))
        .where(StockPrice.date <= end)
        .order_by(StockPrice.date)
    ).all()
    return pd.DataFrame(rows, columns=["date", "close", "adj_factor"])
