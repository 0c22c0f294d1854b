"""Sync a provider into the database: retries with backoff, idempotent bulk upserts, a daily job.

A sync asks the provider symbol by symbol, retries what may pass (timeouts, rate limits) with
exponentially growing pauses, and writes what it got in batches, each batch one transaction.
A symbol whose provider fails is reported in the run's `failures` and keeps its stored bars
untouched; one provider's outage never stops another's sync (`daily_job`).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk.db import Database, utcnow
from quantdesk.market import store
from quantdesk.market import symbols as sym
from quantdesk.market.cache import MarketCache
from quantdesk.market.calendar import CN_CALENDAR_INDEX, cn_calendar, due_session, parse_hhmm
from quantdesk.market.models import Stock, StockPrice, SyncRun
from quantdesk.market.providers import get_provider
from quantdesk.market.providers.base import Listing, Provider, ProviderError, clean_bars
from quantdesk.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_HISTORY_START = dt.date(2000, 1, 1)  # first fetch of a new symbol, unless --start
BATCH_ROWS = 100_000  # bars per transaction: big enough for COPY to pay, small enough to resume
ST_RECENT_DAYS = 7  # a provider's current ST flag is taken for bars this recent only
LISTINGS_KEY = "*listings"  # failures key of the provider's universe list

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How often to retry a provider call and how long to wait (backoff, 2x backoff, ...)."""

    retries: int = 3
    backoff: float = 2.0
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            retries=settings.MARKET_SYNC_RETRIES, backoff=settings.MARKET_SYNC_BACKOFF_SECONDS
        )


@dataclass
class SyncResult:
    run_id: int
    provider: str
    status: str
    symbols_total: int = 0
    symbols_ok: int = 0
    bars_written: int = 0
    failures: dict[str, str] = field(default_factory=dict)


def with_retries(call: Callable[[], T], policy: RetryPolicy, what: str) -> T:
    """`call()`, retried on retryable provider errors; the last error propagates."""
    attempt = 0
    while True:
        try:
            return call()
        except ProviderError as exc:
            if not exc.retryable or attempt >= policy.retries:
                raise
            pause = policy.backoff * 2**attempt
            log.warning("%s failed (%s); retry %d in %.1f s", what, exc, attempt + 1, pause)
            policy.sleep(pause)
            attempt += 1


def prepare_bars(
    frame: pd.DataFrame,
    *,
    symbol: str,
    source: str,
    is_st_now: bool,
    stored: pd.DataFrame,
    today: dt.date,
) -> pd.DataFrame:
    """A provider's bars as `stock_prices` rows, joined to the stored ones.

    * The factor is put on the stored scale: providers anchor factors differently (Yahoo at the
      latest bar, so every new dividend rescales its whole history), and only ratios matter, so
      new factors are multiplied by the median stored/new ratio on the overlapping dates.
    * A missing reference price is the previous close carried over corporate actions,
      close[t-1] x factor[t-1] / factor[t] (the exchanges' ex-rights price), to the cent for
      A-shares; the first new bar takes its predecessor from the stored bars.
    * A missing ST flag is the provider's current one for the last ST_RECENT_DAYS, else False.
    """
    bars = clean_bars(frame, symbol=symbol, source=source)
    if bars.empty:
        return bars.assign(symbol=[]).reindex(columns=list(store.ROW_COLUMNS))
    if "adj_factor" not in bars.columns:
        bars["adj_factor"] = 1.0
    if "amount" not in bars.columns:
        bars["amount"] = np.nan
    if "suspended" not in bars.columns:
        bars["suspended"] = False
    if "is_st" not in bars.columns:
        recent = pd.Series(bars["date"]) >= today - dt.timedelta(days=ST_RECENT_DAYS)
        bars["is_st"] = recent.to_numpy() & is_st_now
    if not stored.empty:
        overlap = bars.merge(stored, on="date", suffixes=("", "_stored"))
        if not overlap.empty:
            ratio = float(np.median(overlap["adj_factor_stored"] / overlap["adj_factor"]))
            bars["adj_factor"] = bars["adj_factor"] * ratio
    if "prev_close" not in bars.columns or bars["prev_close"].isna().any():
        carried = bars["close"] * bars["adj_factor"]
        prev = carried.shift(1) / bars["adj_factor"]
        before = stored[stored["date"] < bars["date"].iloc[0]] if not stored.empty else stored
        if not before.empty:
            last = before.iloc[-1]
            prev.iloc[0] = last["close"] * last["adj_factor"] / bars["adj_factor"].iloc[0]
        digits = 2 if sym.market_of(symbol) is sym.Market.CN_A else 4
        derived = prev.round(digits)
        given = bars["prev_close"] if "prev_close" in bars.columns else derived
        bars["prev_close"] = given.fillna(derived)
    bars["adj_close"] = bars["close"] * bars["adj_factor"]
    bars["symbol"] = symbol
    return bars.loc[:, list(store.ROW_COLUMNS)]


def _one_listing(provider: Provider, symbol: str) -> Listing:
    return provider.listings([symbol])[0]


def _stored_stocks(session: Session, symbols: Sequence[str]) -> dict[str, Stock]:
    found: dict[str, Stock] = {}
    for start in range(0, len(symbols), 500):
        chunk = symbols[start : start + 500]
        found.update(
            {s.symbol: s for s in session.scalars(select(Stock).where(Stock.symbol.in_(chunk)))}
        )
    return found


def _universe(
    session: Session,
    provider: Provider,
    symbols: Sequence[str] | None,
    *,
    policy: RetryPolicy,
    refresh: bool,
    failures: dict[str, str],
) -> tuple[list[str], list[Listing]]:
    """The symbols to sync and the listings to store first (new or refreshed instruments)."""
    if symbols is None:
        try:
            listed = with_retries(
                lambda: provider.listings(None), policy, f"{provider.name} listings"
            )
        except ProviderError as exc:
            failures[LISTINGS_KEY] = str(exc)
            listed = []
        owned = session.scalars(select(Stock.symbol).where(Stock.source == provider.name)).all()
        names = list(dict.fromkeys([item.symbol for item in listed] + list(owned)))
        return names, listed
    stored = _stored_stocks(session, symbols)
    names, listings = [], []
    for symbol in symbols:
        if not provider.covers(symbol):
            failures[symbol] = f"{provider.name} does not cover {symbol}"
            continue
        if symbol in stored and not refresh:
            names.append(symbol)
            continue
        try:
            listing = with_retries(
                functools.partial(_one_listing, provider, symbol), policy, f"listing of {symbol}"
            )
        except ProviderError as exc:
            if symbol not in stored:
                failures[symbol] = str(exc)
                continue
            log.warning("keeping the stored listing of %s: %s", symbol, exc)
        else:
            listings.append(listing)
        names.append(symbol)
    return names, listings


def sync(
    session: Session,
    *,
    provider: Provider,
    symbols: Sequence[str] | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    policy: RetryPolicy | None = None,
    lookback_days: int = 10,
    refresh_listings: bool = False,
    kind: str = "manual",
    session_date: dt.date | None = None,
    today: dt.date | None = None,
    progress: Progress | None = None,
    cache: MarketCache | None = None,
) -> SyncResult:
    """Fetch `symbols` (None: the provider's universe and its stored symbols) into the database.

    Without `start`, a stored symbol is fetched from `lookback_days` before its last bar (the
    overlap joins old and new factors, and picks up late corrections), a new one from
    DEFAULT_HISTORY_START. Returns what was written and which symbols failed, as stored in the
    run's `sync_runs` row.
    """
    policy = policy or RetryPolicy()
    today = today or dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()
    run = SyncRun(provider=provider.name, kind=kind, session_date=session_date, status="running")
    session.add(run)
    session.commit()
    result = SyncResult(run_id=run.id, provider=provider.name, status="running")
    try:
        job = _Job(
            provider,
            symbols,
            start,
            end,
            policy,
            lookback_days,
            refresh_listings,
            today,
            progress,
            cache,
        )
        _run(session, job, result)
    except BaseException as exc:
        session.rollback()
        _finish(session, run, result, error=f"{type(exc).__name__}: {exc}")
        raise
    _finish(session, run, result, error=None)
    return result


@dataclass(frozen=True)
class _Job:
    """What one sync was asked to do (the arguments of `sync`)."""

    provider: Provider
    symbols: Sequence[str] | None
    start: dt.date | None
    end: dt.date | None
    policy: RetryPolicy
    lookback_days: int
    refresh_listings: bool
    today: dt.date
    progress: Progress | None
    cache: MarketCache | None


def _run(session: Session, job: _Job, result: SyncResult) -> None:
    provider, start, end, cache = job.provider, job.start, job.end, job.cache
    names, listings = _universe(
        session,
        provider,
        job.symbols,
        policy=job.policy,
        refresh=job.refresh_listings,
        failures=result.failures,
    )
    if listings:
        store.upsert_listings(session, listings, source=provider.name)
        session.commit()
    stocks = _stored_stocks(session, names)
    result.symbols_total = len(names)
    batch: list[pd.DataFrame] = []
    batch_symbols: list[str] = []
    moving: set[str] = set()
    rows = 0

    def flush() -> None:
        nonlocal rows
        if not batch_symbols:
            return
        for symbol in moving:
            store.replace_owner(session, symbol, source=provider.name)
        frames = [frame for frame in batch if not frame.empty]
        fresh = moving | {s for s in batch_symbols if stocks[s].last_date is None}
        if frames:
            bars = pd.concat(frames, ignore_index=True)
            result.bars_written += store.write_bars(session, bars, fresh=fresh)
        store.refresh_latest(session, batch_symbols)
        session.commit()
        if cache is not None:
            cache.invalidate(batch_symbols)
        check_alerts(session, batch_symbols)
        batch.clear()
        batch_symbols.clear()
        moving.clear()
        rows = 0

    for done, symbol in enumerate(names, start=1):
        stock = stocks.get(symbol)
        if stock is None:
            result.failures.setdefault(symbol, "no listing could be stored")
        else:
            first = start or (
                stock.last_date - dt.timedelta(days=job.lookback_days)
                if stock.last_date and stock.source == provider.name
                else DEFAULT_HISTORY_START
            )
            last = end or job.today
            try:
                bars = _fetch(provider, symbol, first, last, job.policy)
                owned = stock.source == provider.name
                stored = store.stored_tail(session, symbol, first, last) if owned else None
                prepared = prepare_bars(
                    bars,
                    symbol=symbol,
                    source=provider.name,
                    is_st_now=stock.is_st,
                    stored=stored if stored is not None else pd.DataFrame(),
                    today=job.today,
                )
            except ProviderError as exc:
                result.failures[symbol] = str(exc)
                log.warning("sync %s: %s failed: %s", provider.name, symbol, exc)
            else:
                if not owned and prepared.empty:
                    result.failures[symbol] = (
                        f"owned by {stock.source}; {provider.name} has no bars"
                    )
                else:
                    if not owned:
                        moving.add(symbol)
                    batch.append(prepared)
                    batch_symbols.append(symbol)
                    rows += len(prepared)
                    result.symbols_ok += 1
        if rows >= BATCH_ROWS:
            flush()
        if job.progress is not None:
            job.progress(done, len(names), symbol)
    flush()


def check_alerts(session: Session, symbols: Sequence[str]) -> None:
    """Users' price alerts on the synced symbols, judged on each one's newest close."""
    from quantdesk.notifications.alerts import check_price_alerts

    rows = session.execute(
        select(Stock.symbol, Stock.last_date, Stock.last_close, Stock.change).where(
            Stock.symbol.in_(list(symbols)), Stock.last_close.is_not(None)
        )
    ).all()
    for symbol, day, close, change in rows:
        if close is None:
            continue
        previous = close - change if change is not None else None
        check_price_alerts(
            session, symbol=symbol, last_close=close, previous_close=previous, bar_date=day
        )


def _fetch(
    provider: Provider, symbol: str, start: dt.date, end: dt.date, policy: RetryPolicy
) -> pd.DataFrame:
    if start > end:
        return pd.DataFrame()
    return with_retries(lambda: provider.bars(symbol, start, end), policy, f"bars of {symbol}")


def _finish(session: Session, run: SyncRun, result: SyncResult, *, error: str | None) -> None:
    failed = error is not None or (result.symbols_ok == 0 and bool(result.failures))
    result.status = "failed" if failed else "finished"
    row = session.get(SyncRun, run.id)
    if row is None:  # the run row itself was rolled back (a test's savepoint): record anew
        row = SyncRun(provider=run.provider, kind=run.kind, session_date=run.session_date)
        session.add(row)
    row.status = result.status
    row.symbols_total, row.symbols_ok = result.symbols_total, result.symbols_ok
    row.bars_written, row.failures = result.bars_written, dict(result.failures)
    row.error, row.finished_at = error, utcnow()
    session.commit()
    result.run_id = row.id


# ---------------------------------------------------------------- the demo data and the daily job


def seed_demo(
    session: Session, *, cache: MarketCache | None = None, progress: Progress | None = None
) -> SyncResult:
    """Load the whole sample provider (real US bars and the synthetic A-shares)."""
    from quantdesk.market.providers.sample import SampleProvider

    return sync(session, provider=SampleProvider(), kind="seed", cache=cache, progress=progress)


def has_stocks(session: Session) -> bool:
    return session.scalar(select(Stock.symbol).limit(1)) is not None


def daily_job(
    db: Database,
    settings: Settings,
    *,
    now: dt.datetime | None = None,
    cache: MarketCache | None = None,
    providers: Mapping[str, Provider] | None = None,
    policy: RetryPolicy | None = None,
) -> list[SyncResult]:
    """Sync the latest session whose close has passed, once per provider and session.

    Meant to run after MARKET_SYNC_TIME (15:30 Asia/Shanghai) on weekdays; on a holiday or a
    second run it finds the session already synced and does nothing. Each provider that owns
    stored symbols (but `sample`, which never changes) syncs them in its own run: one
    provider's failure is recorded and the next one still runs.
    """
    tz = ZoneInfo(settings.MARKET_SYNC_TIMEZONE)
    now = now or dt.datetime.now(tz)
    policy = policy or RetryPolicy.from_settings(settings)
    results: list[SyncResult] = []
    with db.session_scope() as session:
        calendar = cn_calendar(_index_sessions(session))
        day = due_session(now, calendar, at=parse_hhmm(settings.MARKET_SYNC_TIME), tz=tz)
        owners = session.scalars(select(Stock.source).distinct()).all()
        for name in sorted(set(owners) - {"sample"}):
            if _already_synced(session, name, day):
                log.info("daily sync: %s already has the session of %s", name, day)
                continue
            symbols = session.scalars(
                select(Stock.symbol).where(Stock.source == name).order_by(Stock.symbol)
            ).all()
            try:
                provider = (providers or {}).get(name) or get_provider(name, settings)
                result = sync(
                    session,
                    provider=provider,
                    symbols=list(symbols),
                    start=day - dt.timedelta(days=settings.MARKET_SYNC_LOOKBACK_DAYS),
                    end=day,
                    policy=policy,
                    kind="daily",
                    session_date=day,
                    today=now.astimezone(tz).date(),
                    cache=cache,
                )
            except Exception:  # a broken provider (or its database batch) must not stop others
                log.exception("daily sync of %s failed", name)
                continue
            log.info(
                "daily sync of %s for %s: %s, %d bars, %d failures",
                name,
                day,
                result.status,
                result.bars_written,
                len(result.failures),
            )
            results.append(result)
    return results


def _already_synced(session: Session, provider: str, day: dt.date) -> bool:
    stmt = select(SyncRun.id).where(
        SyncRun.kind == "daily",
        SyncRun.provider == provider,
        SyncRun.session_date == day,
        SyncRun.status == "finished",
    )
    return session.scalar(stmt.limit(1)) is not None


def _index_sessions(session: Session) -> list[dt.date]:
    """Sessions seen in the stored SSE Composite bars (extends the offline calendar)."""
    return list(
        session.scalars(select(StockPrice.date).where(StockPrice.symbol == CN_CALENDAR_INDEX))
    )
