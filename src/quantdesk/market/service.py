"""Market data rules: instruments, adjusted bars, indicators, indices, sectors and watchlists.

Plain functions over a SQLAlchemy session, no Flask; routes, tasks, the engine's loaders and the
AI assistant's tools call them. History and indicators are the hot reads: they come back as
JSON text, computed once per (symbol, parameters, data version) and cached (cache.py).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.orm import Session

from quantdesk.engine.rules import Market, Rule, board_of, limit_prices, rule_value
from quantdesk.errors import Conflict, Invalid, NotFound
from quantdesk.files import datasets as user_sets
from quantdesk.market import analytics
from quantdesk.market import symbols as sym
from quantdesk.market.analytics import Adjust, Freq
from quantdesk.market.cache import MARKET_WIDE, MarketCache
from quantdesk.market.calendar import CN_CALENDAR_INDEX, TradingCalendar, cn_calendar
from quantdesk.market.models import Stock, StockPrice, TechnicalIndicator, WatchlistItem
from quantdesk.market.store import change_of

DEFAULT_WINDOW = dt.timedelta(days=365)  # history without `start`: the last year
_BAR_COLUMNS = (
    "date",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "amount",
    "adj_factor",
    "prev_close",
    "suspended",
    "is_st",
)
_SORTS: dict[str, Any] = {
    "symbol": Stock.symbol.asc(),
    "-symbol": Stock.symbol.desc(),
    "name": Stock.name.asc(),
    "market_cap": Stock.market_cap.asc().nulls_last(),
    "-market_cap": Stock.market_cap.desc().nulls_last(),
    "change_pct": Stock.change_pct.asc().nulls_last(),
    "-change_pct": Stock.change_pct.desc().nulls_last(),
}
SORTS = tuple(_SORTS)
_HISTORY_KEYS = (
    "date",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "amount",
    "change_pct",
    "suspended",
    "is_st",
)


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# ---------------------------------------------------------------- instruments


def get_stock(session: Session, symbol: str, *, user_id: int | None = None) -> Stock:
    """The instrument `symbol` (any common spelling), or NotFound.

    `user:<name>` is the data set of that name of `user_id` (files.datasets), seen as an
    unsaved Stock; without `user_id`, or for another user's name, it is NotFound.
    """
    canonical = sym.normalise(symbol)
    if canonical and sym.market_of(canonical) is sym.Market.USER:
        return user_sets.instrument(session, canonical, user_id)
    stock = session.get(Stock, canonical) if canonical else None
    if stock is None:
        raise NotFound(f"No instrument {symbol!r}.", details={"symbol": symbol})
    return stock


def search_stocks(
    session: Session,
    *,
    query: str | None = None,
    exchange: str | None = None,
    sector: str | None = None,
    kind: str | None = None,
    market: str | None = None,
    sort: str = "symbol",
) -> Select[Any]:
    """Instruments whose symbol starts with `query` or whose name contains it, filtered."""
    stmt = select(Stock)
    if query:
        text = query.strip()
        like = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        matches: list[Any] = [
            Stock.symbol.ilike(f"{like}%", escape="\\"),
            Stock.name.ilike(f"%{like}%", escape="\\"),
        ]
        canonical = sym.normalise(text)
        if canonical:
            matches.append(Stock.symbol == canonical)
        stmt = stmt.where(or_(*matches))
    if exchange:
        stmt = stmt.where(func.upper(Stock.exchange) == exchange.upper())
    if sector:
        stmt = stmt.where(Stock.sector == sector)
    if kind:
        stmt = stmt.where(Stock.kind == kind)
    if market:
        stmt = stmt.where(Stock.market == market)
    return stmt.order_by(_SORTS[sort], Stock.symbol)


def _latest_bar(session: Session, symbol: str) -> Any:
    return session.execute(
        select(StockPrice)
        .where(StockPrice.symbol == symbol)
        .order_by(StockPrice.date.desc())
        .limit(1)
    ).scalar_one_or_none()


def latest_price(session: Session, *, symbol: str) -> dict[str, Any]:
    """The latest bar, its change against the reference price and, for A-shares, the limits."""
    stock = get_stock(session, symbol)
    bar = _latest_bar(session, stock.symbol)
    if bar is None:
        raise NotFound(f"No bars stored for {stock.symbol}.", details={"symbol": stock.symbol})
    change, change_pct = change_of(bar.close, bar.prev_close)
    up, down = _limits(session, stock, bar.date, bar.prev_close, bar.is_st)
    return {
        "symbol": stock.symbol,
        "name": stock.name,
        "date": bar.date,
        "open": bar.open,
        "high": bar.high,
        "low": bar.low,
        "close": bar.close,
        "volume": bar.volume,
        "amount": bar.amount,
        "prev_close": bar.prev_close,
        "change": change,
        "change_pct": change_pct,
        "suspended": bar.suspended,
        "is_st": bar.is_st,
        "limit_up": up,
        "limit_down": down,
        "currency": stock.currency,
    }


def _limits(
    session: Session, stock: Stock, day: dt.date, prev_close: float | None, is_st: bool
) -> tuple[float | None, float | None]:
    """The day's limit-up and limit-down prices (the engine's dated rulebook), if any."""
    if stock.market != "cn_a" or stock.kind != "stock" or prev_close is None:
        return None, None
    board = board_of(stock.symbol)
    free = int(rule_value(Rule.NEW_LISTING_FREE_DAYS, Market.CN_A, board, day))
    if stock.listed_on and stock.listed_on > day - dt.timedelta(days=31):
        sessions = session.scalar(
            select(func.count()).where(
                StockPrice.symbol == stock.symbol,
                StockPrice.date >= stock.listed_on,
                StockPrice.date <= day,
            )
        )
        if (sessions or 0) <= free:
            return None, None
    rule = Rule.PRICE_LIMIT_ST if is_st else Rule.PRICE_LIMIT
    pct = rule_value(rule, Market.CN_A, board, day)
    up, down = limit_prices(np.array([prev_close]), np.array([pct]))
    return (float(up[0]), float(down[0])) if np.isfinite(up[0]) else (None, None)


# ---------------------------------------------------------------- bars


def _anchors(session: Session, symbol: str) -> tuple[float, float]:
    """The first and the latest adjustment factor of `symbol`'s whole stored series."""

    def edge(order: Any) -> Any:
        return (
            select(StockPrice.adj_factor)
            .where(StockPrice.symbol == symbol)
            .order_by(order)
            .limit(1)
            .scalar_subquery()
        )

    first, last = (
        session.connection()
        .execute(select(edge(StockPrice.date.asc()), edge(StockPrice.date.desc())))
        .one()
    )
    return float(first or 1.0), float(last or 1.0)


def bar_arrays(
    session: Session,
    symbol: str,
    *,
    start: dt.date | None,
    end: dt.date | None,
    adjust: Adjust,
    user_id: int | None = None,
) -> dict[str, Any]:
    """Stored bars of `symbol` as columns (numpy arrays; `date` a list), prices adjusted.

    `comparable` is close x factor: ratios of it are real returns whatever the adjustment.
    The hot path of history: Core rows straight into arrays, no DataFrame. A `user:` symbol
    reads `user_id`'s data set (factor 1: uploaded prices are taken as they are).
    """
    if sym.market_of(symbol) is sym.Market.USER:
        rows: Sequence[Any] = user_sets.bar_rows(
            session, symbol, user_id=user_id, start=start, end=end
        )
    else:
        stmt = select(*(getattr(StockPrice, c) for c in _BAR_COLUMNS)).where(
            StockPrice.symbol == symbol
        )
        if start is not None:
            stmt = stmt.where(StockPrice.date >= start)
        if end is not None:
            stmt = stmt.where(StockPrice.date <= end)
        rows = session.connection().execute(stmt.order_by(StockPrice.date)).all()
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in _BAR_COLUMNS]
    raw = dict(zip(_BAR_COLUMNS, columns, strict=True))
    out: dict[str, Any] = {"date": list(raw["date"])}
    factors = np.array(raw["adj_factor"], dtype=np.float64)
    user_set = sym.market_of(symbol) is sym.Market.USER
    first, last = _anchors(session, symbol) if rows and not user_set else (1.0, 1.0)
    scale = analytics.adjustment(factors, adjust, first=first, last=last)
    for column in ("open", "high", "low", "close", "prev_close"):
        out[column] = np.array(raw[column], dtype=np.float64) * scale  # None -> NaN
    out["comparable"] = np.array(raw["close"], dtype=np.float64) * factors
    out["adj_factor"] = factors
    out["volume"] = np.array(raw["volume"], dtype=np.int64)
    out["amount"] = np.array(raw["amount"], dtype=np.float64)
    out["suspended"] = np.array(raw["suspended"], dtype=bool)
    out["is_st"] = np.array(raw["is_st"], dtype=bool)
    return out


def bars_frame(
    session: Session,
    symbol: str,
    *,
    start: dt.date | None,
    end: dt.date | None,
    adjust: Adjust,
    user_id: int | None = None,
) -> pd.DataFrame:
    """`bar_arrays` as a DataFrame (for resampling, indicators and the engine)."""
    return pd.DataFrame(
        bar_arrays(session, symbol, start=start, end=end, adjust=adjust, user_id=user_id)
    )


def _window(stock: Stock, start: dt.date | None, end: dt.date | None) -> tuple[dt.date, dt.date]:
    last = end or stock.last_date or dt.datetime.now(dt.UTC).date()
    first = start or max(last - DEFAULT_WINDOW, stock.first_date or dt.date.min)
    if first > last:
        raise Invalid("start is after end.", details={"start": ["Must not be after end."]})
    return first, last


def history_json(
    session: Session,
    *,
    symbol: str,
    start: dt.date | None = None,
    end: dt.date | None = None,
    adjust: Adjust = Adjust.QFQ,
    freq: Freq = Freq.DAILY,
    cache: MarketCache | None = None,
    user_id: int | None = None,
) -> str:
    """History as JSON text: `{symbol, adjust, freq, start, end, bars: [...]}` (cached).

    `user_id` makes the user's own `user:<name>` data sets readable (get_stock).
    """

    def compute(stock: Stock) -> str:
        first, last = _window(stock, start, end)
        return _history(session, stock, first, last, adjust, freq, _owner(stock, user_id))

    request = ("history", start, end, adjust.value, freq.value)
    return _cached(session, cache, symbol, user_id, request, compute, open_ended=end is None)


def _owner(stock: Stock, user_id: int | None) -> int | None:
    """The owner whose data set `stock` is (a `user:` symbol), else None (shared data)."""
    return user_id if stock.market == sym.Market.USER else None


def _cached(
    session: Session,
    cache: MarketCache | None,
    symbol: str,
    user_id: int | None,
    request: tuple[Any, ...],
    compute: Callable[[Stock], str],
    *,
    open_ended: bool,
) -> str:
    """`compute(stock)`'s answer to `request` about `symbol`, through the market cache.

    A shared cache (Redis) learns of every sync, in any process, by a new token: there the
    request alone names the answer, and a hit costs no database query. An in-process cache
    cannot see a sync run by another process (the CLI's), so its key also holds the row's
    `updated_at`, which every sync of the symbol changes. A user's data set is its owner's
    alone: its key always names the owner, after the ownership check in get_stock.
    `open_ended`: the request has no end date, so its window ends at the last bar, or today
    for a symbol with none.
    """
    canonical = sym.normalise(symbol) if cache is not None and cache.shared else None
    if cache is not None and canonical and sym.market_of(canonical) is not sym.Market.USER:
        today = dt.datetime.now(dt.UTC).date() if open_ended else None
        return cache.get_or_compute(
            canonical,
            (*request, today),
            lambda: compute(get_stock(session, symbol, user_id=user_id)),
        )
    stock = get_stock(session, symbol, user_id=user_id)
    if cache is None:
        return compute(stock)
    parts = (*request, stock.updated_at, _owner(stock, user_id))
    return cache.get_or_compute(stock.symbol, parts, lambda: compute(stock))


def _history(
    session: Session,
    stock: Stock,
    first: dt.date,
    last: dt.date,
    adjust: Adjust,
    freq: Freq,
    user_id: int | None,
) -> str:
    bars = bar_arrays(session, stock.symbol, start=first, end=last, adjust=adjust, user_id=user_id)
    digits = 2 if stock.market == "cn_a" and adjust is Adjust.NONE else 4
    if freq is Freq.DAILY:
        with np.errstate(divide="ignore", invalid="ignore"):
            bars["change_pct"] = np.round((bars["close"] / bars["prev_close"] - 1.0) * 100.0, 4)
    elif bars["date"]:
        frame = analytics.resample(pd.DataFrame(bars), freq)
        bars = {name: frame[name].to_numpy() for name in frame.columns}
        bars["date"] = list(frame["date"])
        bars["change_pct"] = np.round(bars["change_pct"].astype(np.float64), 4)
    else:
        bars["change_pct"] = np.array([], dtype=np.float64)
    columns: list[list[Any]] = [analytics.iso(bars["date"])]
    for name in ("open", "high", "low", "close"):
        columns.append(np.round(np.asarray(bars[name], dtype=np.float64), digits).tolist())
    columns.append(np.asarray(bars["volume"], dtype=np.int64).tolist())
    for name in ("amount", "change_pct"):
        columns.append(analytics.nan_to_none(np.asarray(bars[name], dtype=np.float64)))
    columns.append(np.asarray(bars["suspended"], dtype=bool).tolist())
    columns.append(np.asarray(bars["is_st"], dtype=bool).tolist())
    head = {
        "symbol": stock.symbol,
        "adjust": adjust.value,
        "freq": freq.value,
        "start": first.isoformat(),
        "end": last.isoformat(),
    }
    return _dumps(head)[:-1] + ',"bars":' + _objects(_HISTORY_KEYS, columns) + "}"


def _objects(keys: tuple[str, ...], columns: list[list[Any]]) -> str:
    """A JSON array of objects from columns of numbers, booleans, None and comma-free strings.

    Each column is encoded once by the C encoder and cut at its commas; the pieces are joined
    row by row with one format string. Same text as dumping a list of dicts, in about 2/3 of
    the time: the hot path of 10-year histories (benchmarks/market.py).
    """
    if not columns or not columns[0]:
        return "[]"
    template = "{" + ",".join(f'"{key}":%s' for key in keys) + "}"
    pieces = [json.dumps(column, separators=(",", ":"))[1:-1].split(",") for column in columns]
    return "[" + ",".join([template % row for row in zip(*pieces, strict=True)]) + "]"


def indicators_json(
    session: Session,
    *,
    symbol: str,
    names: Sequence[str],
    params: dict[str, Any],
    start: dt.date | None = None,
    end: dt.date | None = None,
    adjust: Adjust = Adjust.QFQ,
    cache: MarketCache | None = None,
) -> str:
    """Indicator series as JSON text: `{symbol, adjust, dates, series: {name: [...]}, params}`.

    Computed over the whole stored history up to `end` (so warm-up and EMA seeds are the same
    whatever the window), on trading bars only (suspended days carry no trade), then cut to
    [start, end]. The first values are null until an indicator has enough bars.
    """
    chosen = list(dict.fromkeys(names))
    resolved = {name: analytics.resolve_params(name, params) for name in chosen}
    key = tuple(sorted((name, analytics.canonical(p)) for name, p in resolved.items()))

    def compute(stock: Stock) -> str:
        first, last = _window(stock, start, end)
        return _dumps(_indicators(session, stock, chosen, params, first, last, adjust))

    request = ("indicators", start, end, adjust.value, key)
    return _cached(session, cache, symbol, None, request, compute, open_ended=end is None)


def _indicators(
    session: Session,
    stock: Stock,
    names: list[str],
    params: dict[str, Any],
    first: dt.date,
    last: dt.date,
    adjust: Adjust,
) -> dict[str, Any]:
    frame = bars_frame(session, stock.symbol, start=None, end=last, adjust=adjust)
    frame = frame[~frame["suspended"]] if not frame.empty else frame
    arrays = {c: frame[c].to_numpy(dtype=np.float64) for c in ("high", "low", "close", "volume")}
    series, used = analytics.compute(names, arrays, params)
    dates = pd.Series(frame["date"])
    keep = ((dates >= first) & (dates <= last)).to_numpy()
    return {
        "symbol": stock.symbol,
        "adjust": adjust.value,
        "start": first.isoformat(),
        "end": last.isoformat(),
        "dates": analytics.iso(list(dates[keep])),
        "series": {key: analytics.nan_to_none(values[keep]) for key, values in series.items()},
        "params": used,
    }


def store_indicators(
    session: Session, *, symbol: str, names: Sequence[str], params: dict[str, Any]
) -> int:
    """Materialise indicator series into `technical_indicators` (replacing the same ones)."""
    stock = get_stock(session, symbol)
    frame = bars_frame(session, stock.symbol, start=None, end=None, adjust=Adjust.QFQ)
    frame = frame[~frame["suspended"]] if not frame.empty else frame
    arrays = {c: frame[c].to_numpy(dtype=np.float64) for c in ("high", "low", "close", "volume")}
    written = 0
    for name in dict.fromkeys(names):
        series, used = analytics.compute([name], arrays, params)
        key = analytics.canonical(used[name])
        for output, values in series.items():
            session.query(TechnicalIndicator).filter_by(
                symbol=stock.symbol, indicator_type=output, parameters=key
            ).delete()
            rows = [
                TechnicalIndicator(
                    symbol=stock.symbol,
                    date=day,
                    indicator_type=output,
                    parameters=key,
                    value=value,
                )
                for day, value in zip(frame["date"], analytics.nan_to_none(values), strict=True)
            ]
            session.add_all(rows)
            written += len(rows)
    session.commit()
    return written


def load_bars(
    session: Session,
    *,
    symbols: Sequence[str],
    start: dt.date,
    end: dt.date,
    adjust: Adjust = Adjust.NONE,
    user_id: int | None = None,
) -> tuple[pd.DataFrame, dict[str, dt.date]]:
    """Bars of many symbols as one long frame for `engine.data.Bars.from_long`, and listing dates.

    Unadjusted by default: the engine trades real prices under real limits. `user_id` (the
    run's owner) makes that user's `user:<name>` data sets loadable; without it they are 404.
    """
    frames, listed = [], {}
    for raw in symbols:
        stock = get_stock(session, raw, user_id=user_id)
        frame = bars_frame(
            session, stock.symbol, start=start, end=end, adjust=adjust, user_id=user_id
        )
        frames.append(frame.drop(columns=["adj_factor", "comparable"]).assign(symbol=stock.symbol))
        if stock.listed_on:
            listed[stock.symbol] = stock.listed_on
    return pd.concat(frames, ignore_index=True), listed


def trading_calendar(session: Session) -> TradingCalendar:
    """The A-share calendar: akshare's offline SSE file plus stored SSE Composite sessions."""
    days = session.scalars(select(StockPrice.date).where(StockPrice.symbol == CN_CALENDAR_INDEX))
    return cn_calendar(days)


# ---------------------------------------------------------------- market overview


def indices(session: Session, *, market: str | None = None) -> Select[Any]:
    """The indices, with their latest values (kept on `stocks` by the sync)."""
    stmt = select(Stock).where(Stock.kind == "index")
    if market:
        stmt = stmt.where(Stock.market == market)
    return stmt.order_by(Stock.market, Stock.symbol)


def sectors(
    session: Session, *, market: str | None = None, cache: MarketCache | None = None
) -> list[dict[str, Any]]:
    """Per sector: stock count, average latest change, advancers and decliners."""

    def compute() -> list[dict[str, Any]]:
        stmt = (
            select(
                Stock.sector,
                func.count(),
                func.avg(Stock.change_pct),
                func.sum(case((Stock.change_pct > 0, 1), else_=0)),
                func.sum(case((Stock.change_pct < 0, 1), else_=0)),
                func.max(Stock.last_date),
            )
            .where(and_(Stock.kind == "stock", Stock.sector.is_not(None)))
            .group_by(Stock.sector)
        )
        if market:
            stmt = stmt.where(Stock.market == market)
        out = [
            {
                "sector": sector,
                "stock_count": int(count),
                "avg_change_pct": round(float(avg), 4) if avg is not None else None,
                "advancers": int(up or 0),
                "decliners": int(down or 0),
                "date": last,
            }
            for sector, count, avg, up, down, last in session.execute(stmt)
        ]

        def strongest_first(row: dict[str, Any]) -> tuple[bool, float, str]:
            change = row["avg_change_pct"]
            return (change is None, -(change or 0.0), row["sector"])

        return sorted(out, key=strongest_first)

    changed = session.scalar(select(func.max(Stock.updated_at)))
    return (cache or MarketCache(None, timeout=0)).get_or_compute(
        MARKET_WIDE, ("sectors", market, changed), compute
    )


# ---------------------------------------------------------------- watchlists


def watchlist(session: Session, *, user_id: int, page: int, per_page: int) -> dict[str, Any]:
    """A page of the user's watchlist, newest first, with each instrument's latest values."""
    where = WatchlistItem.user_id == user_id
    total = session.scalar(select(func.count()).select_from(WatchlistItem).where(where)) or 0
    rows = session.execute(
        select(WatchlistItem, Stock)
        .join(Stock, Stock.symbol == WatchlistItem.symbol)
        .where(where)
        .order_by(WatchlistItem.created_at.desc(), WatchlistItem.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    items = [watchlist_row(item, stock) for item, stock in rows]
    return {"items": items, "page": page, "per_page": per_page, "total": total}


def watchlist_row(item: WatchlistItem, stock: Stock) -> dict[str, Any]:
    return {
        "symbol": stock.symbol,
        "name": stock.name,
        "exchange": stock.exchange,
        "kind": stock.kind,
        "last_date": stock.last_date,
        "last_close": stock.last_close,
        "change": stock.change,
        "change_pct": stock.change_pct,
        "added_at": item.created_at,
    }


def add_to_watchlist(session: Session, *, user_id: int, symbol: str) -> dict[str, Any]:
    stock = get_stock(session, symbol)
    exists = session.scalar(
        select(WatchlistItem.id).where(
            WatchlistItem.user_id == user_id, WatchlistItem.symbol == stock.symbol
        )
    )
    if exists is not None:
        raise Conflict(
            f"{stock.symbol} is already on your watchlist.",
            details={"symbol": ["Already on the watchlist."]},
        )
    item = WatchlistItem(user_id=user_id, symbol=stock.symbol)
    session.add(item)
    session.commit()
    return watchlist_row(item, stock)


def remove_from_watchlist(session: Session, *, user_id: int, symbol: str) -> None:
    canonical = sym.normalise(symbol) or symbol
    item = session.scalar(
        select(WatchlistItem).where(
            WatchlistItem.user_id == user_id, WatchlistItem.symbol == canonical
        )
    )
    if item is None:
        raise NotFound(f"{symbol} is not on your watchlist.", details={"symbol": symbol})
    session.delete(item)
    session.commit()
