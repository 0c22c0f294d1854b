"""Sync: idempotent upserts, retries with backoff, failures that never delete or corrupt, owners."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from flask import Flask
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from quantdesk.app import create_app
from quantdesk.extensions import Extensions, extensions_of
from quantdesk.market import store, sync
from quantdesk.market.cache import MarketCache, market_cache
from quantdesk.market.models import Stock, StockPrice, SyncRun
from quantdesk.market.providers.base import (
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    SchemaChanged,
)
from tests.conftest import Backend
from tests.market.fakes import FakeProvider, make_bars
from tests.support import Account, Api

TODAY = dt.date(2024, 3, 1)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def policy(retries: int = 3) -> tuple[sync.RetryPolicy, Sleeps]:
    sleeps = Sleeps()
    return sync.RetryPolicy(retries=retries, backoff=1.0, sleep=sleeps), sleeps


def stored(db: Session, symbol: str) -> pd.DataFrame:
    rows = db.execute(
        select(
            StockPrice.date,
            StockPrice.open,
            StockPrice.close,
            StockPrice.volume,
            StockPrice.adj_factor,
            StockPrice.prev_close,
        )
        .where(StockPrice.symbol == symbol)
        .order_by(StockPrice.date)
    ).all()
    return pd.DataFrame(rows, columns=["date", "open", "close", "volume", "adj_factor", "prev"])


def run(
    db: Session, provider: FakeProvider, symbols: list[str], **kwargs: object
) -> sync.SyncResult:
    retry = kwargs.pop("policy", None) or policy()[0]
    return sync.sync(db, provider=provider, symbols=symbols, today=TODAY, policy=retry, **kwargs)  # type: ignore[arg-type]


def test_a_sync_twice_writes_once_and_corrections_replace(db: Session, market_data: object) -> None:
    provider = FakeProvider(table={"TEST": make_bars(40)})
    first = run(db, provider, ["TEST"])
    assert (first.status, first.symbols_ok, first.bars_written) == ("finished", 1, 40)
    before = stored(db, "TEST")
    assert len(before) == 40
    again = run(db, provider, ["TEST"], start=dt.date(2024, 1, 1))
    assert (again.status, again.bars_written) == ("finished", 0)
    pd.testing.assert_frame_equal(stored(db, "TEST"), before)
    fixed = provider.table["TEST"].copy()
    fixed.loc[5, "close"] = fixed.loc[5, "close"] + 1.0  # the source corrects one day
    provider.table["TEST"] = fixed
    corrected = run(db, provider, ["TEST"], start=dt.date(2024, 1, 1))
    assert corrected.bars_written == 2  # that day, and the next one's reference price
    after = stored(db, "TEST")
    assert after.loc[5, "close"] == before.loc[5, "close"] + 1.0
    assert after.loc[6, "prev"] == pytest.approx(after.loc[5, "close"])
    stock = db.get(Stock, "TEST")
    assert stock is not None
    assert (stock.first_date, stock.last_date) == (before["date"].iloc[0], before["date"].iloc[-1])
    assert stock.last_close == before["close"].iloc[-1]
    assert stock.source == "fake"
    runs = db.scalars(select(SyncRun).where(SyncRun.provider == "fake").order_by(SyncRun.id)).all()
    assert [(r.status, r.bars_written) for r in runs] == [
        ("finished", 40),
        ("finished", 0),
        ("finished", 2),
    ]


def test_incremental_sync_overlaps_the_last_bars(db: Session, market_data: object) -> None:
    provider = FakeProvider(table={"TEST": make_bars(20)})
    run(db, provider, ["TEST"])
    provider.table["TEST"] = make_bars(30)  # ten more sessions, same history
    provider.calls.clear()
    result = run(db, provider, ["TEST"], lookback_days=7)
    assert result.bars_written == 10
    last_stored = make_bars(20)["date"].iloc[-1]
    assert provider.calls == [("TEST", last_stored - dt.timedelta(days=7), TODAY)]
    assert len(stored(db, "TEST")) == 30


def test_new_factors_are_put_on_the_stored_scale(db: Session, market_data: object) -> None:
    # Yahoo anchors factors at the latest bar: after a dividend every old factor changes.
    bars = make_bars(30)
    provider = FakeProvider(table={"TEST": bars.assign(adj_factor=1.0)})
    run(db, provider, ["TEST"])
    later = make_bars(40)
    later["adj_factor"] = 0.98  # everything before the new ex-date rescaled by Yahoo...
    later.loc[35:, "adj_factor"] = 1.0  # ...and the new dividend (ex-date: bar 35)
    provider.table["TEST"] = later
    run(db, provider, ["TEST"], start=dt.date(2024, 1, 20))
    rows = stored(db, "TEST")
    factors = rows["adj_factor"].to_numpy()
    assert factors[:35] == pytest.approx([1.0] * 35)  # the stored scale is kept
    assert factors[35:] == pytest.approx([1.0 / 0.98] * 5)
    ex = rows.iloc[35]
    before = rows.iloc[34]
    assert ex["prev"] == pytest.approx(round(before["close"] * 0.98, 4))  # ex-rights reference


def test_provider_failures_are_reported_and_never_touch_stored_bars(
    db: Session, market_data: object
) -> None:
    provider = FakeProvider(table={"AAA": make_bars(30, seed=1), "BBB": make_bars(30, seed=2)})
    run(db, provider, ["AAA", "BBB"])
    before = {s: stored(db, s) for s in ("AAA", "BBB")}
    changed = make_bars(35, seed=1).rename(columns={"close": "收盘"})  # the source changed shape
    provider.table = {"AAA": changed, "BBB": make_bars(35, seed=2)}
    provider.failures = {"BBB": [ProviderUnavailable("down")] * 5}
    retry, sleeps = policy(retries=2)
    result = run(db, provider, ["AAA", "BBB"], start=dt.date(2024, 1, 1), policy=retry)
    assert result.status == "failed"
    assert result.symbols_ok == 0
    assert set(result.failures) == {"AAA", "BBB"}
    assert "columns" in result.failures["AAA"]
    assert "down" in result.failures["BBB"]
    assert sleeps == [1.0, 2.0]  # BBB retried twice; a changed schema is not retried
    for symbol, frame in before.items():
        pd.testing.assert_frame_equal(stored(db, symbol), frame)
    row = db.get(SyncRun, result.run_id)
    assert row is not None
    assert row.status == "failed"
    assert set(row.failures) == {"AAA", "BBB"}
    assert row.finished_at is not None


def test_garbage_rows_are_dropped_or_the_frame_refused(db: Session, market_data: object) -> None:
    bars = make_bars(30)
    bars.loc[3, "close"] = float("nan")  # one bad row in thirty: dropped
    provider = FakeProvider(table={"TEST": bars})
    result = run(db, provider, ["TEST"])
    assert result.bars_written == 29
    worse = make_bars(30)
    worse.loc[:10, "close"] = -1.0  # a third of the rows: the source is broken
    provider.table["TEST"] = worse
    refused = run(db, provider, ["TEST"], start=dt.date(2024, 1, 1))
    assert "unusable" in refused.failures["TEST"]
    assert len(stored(db, "TEST")) == 29


def test_retries_back_off_and_then_succeed(db: Session, market_data: object) -> None:
    provider = FakeProvider(
        table={"TEST": make_bars(10)},
        failures={"TEST": [RateLimited("429"), ProviderTimeout("slow"), RateLimited("429")]},
    )
    retry, sleeps = policy(retries=3)
    result = run(db, provider, ["TEST"], policy=retry)
    assert (result.status, result.bars_written, result.failures) == ("finished", 10, {})
    assert sleeps == [1.0, 2.0, 4.0]
    assert len(provider.calls) == 4


def test_one_failing_symbol_does_not_stop_the_others(db: Session, market_data: object) -> None:
    provider = FakeProvider(
        table={"AAA": make_bars(10), "BBB": make_bars(10, seed=3)},
        failures={"AAA": [SchemaChanged("new columns")]},
    )
    result = run(db, provider, ["AAA", "BBB", "NOT.COVERED"])
    assert result.status == "finished"
    assert result.symbols_ok == 1
    assert set(result.failures) == {"AAA", "NOT.COVERED"}
    assert len(stored(db, "BBB")) == 10
    assert db.get(Stock, "NOT.COVERED") is None


def test_a_new_owner_replaces_the_old_bars_only_when_it_has_data(
    db: Session, market_data: object
) -> None:
    sample_bars = len(stored(db, "600519.SH"))
    assert sample_bars > 2000
    failing = FakeProvider(name="akshare", failures={"600519.SH": [ProviderUnavailable("x")]})
    result = run(db, failing, ["600519.SH"], policy=policy(retries=0)[0])
    assert result.status == "failed"
    assert len(stored(db, "600519.SH")) == sample_bars
    assert db.get(Stock, "600519.SH").source == "sample"  # type: ignore[union-attr]
    real = FakeProvider(name="akshare", table={"600519.SH": make_bars(15, price=1500.0)})
    moved = run(db, real, ["600519.SH"])
    assert moved.status == "finished"
    rows = stored(db, "600519.SH")
    assert len(rows) == 15  # no synthetic bar left mixed in with real ones
    stock = db.get(Stock, "600519.SH")
    assert stock is not None
    db.refresh(stock)
    assert (stock.source, stock.first_date, stock.last_date) == (
        "akshare",
        rows["date"].iloc[0],
        rows["date"].iloc[-1],
    )


def test_bulk_write_paths_agree(db: Session, market_data: object) -> None:
    provider = FakeProvider(table={"TEST": make_bars(40)})
    run(db, provider, ["TEST"])
    prepared = sync.prepare_bars(
        make_bars(40),
        symbol="TEST",
        source="fake",
        is_st_now=False,
        stored=pd.DataFrame(),
        today=TODAY,
    )
    # Claiming the symbol is fresh although it has bars: PostgreSQL's direct COPY conflicts
    # and the batch falls back to the upsert; nothing is duplicated, nothing changes.
    assert store.write_bars(db, prepared, fresh={"TEST"}) == 0
    count = db.scalar(select(func.count()).where(StockPrice.symbol == "TEST"))
    assert count == 40


def test_a_sync_invalidates_cached_history(
    app: Flask, ext: Extensions, db: Session, api: Api, user: Account
) -> None:
    provider = FakeProvider(table={"TEST": make_bars(30)})
    cache = MarketCache(ext.cache, timeout=600)
    with app.app_context():
        run(db, provider, ["TEST"], cache=cache)
    path = "/api/data/stocks/TEST/history"
    query = {"start": "2024-01-01", "end": "2024-03-01", "adjust": "none"}
    first = api.get(path, headers=user.headers, query_string=query).get_json()
    assert len(first["bars"]) == 30
    fixed = provider.table["TEST"].copy()
    fixed.loc[29, "close"] = 99.0
    fixed.loc[29, "high"] = 99.5
    provider.table["TEST"] = fixed
    with app.app_context():
        run(db, provider, ["TEST"], start=dt.date(2024, 1, 1), cache=cache)
    second = api.get(path, headers=user.headers, query_string=query).get_json()
    assert second["bars"][-1]["close"] == 99.0
    assert first["bars"][-1]["close"] != 99.0


def test_seed_demo_is_idempotent(db: Session, market_data: object) -> None:
    result = sync.seed_demo(db)
    assert (result.status, result.symbols_ok, result.bars_written) == ("finished", 62, 0)


def test_a_sync_checks_the_price_alerts_of_its_symbols(api: Api, app: Flask, db: Session) -> None:
    owner = api.logged_in()
    bars = make_bars(12)
    last, previous = float(bars.close.iloc[-1]), float(bars.close.iloc[-2])
    # An alert between the last two closes: the newest bar crosses it.
    threshold = (last + previous) / 2
    condition = "above" if last > previous else "below"
    response = api.post(
        "/api/notifications/price-alerts",
        headers=owner.headers,
        json={"symbol": "AAPL", "condition": condition, "threshold": threshold},
    )
    assert response.status_code == 201, response.get_json()
    with app.app_context():  # as in the CLI and the tasks: the alert sends through this app
        run(db, FakeProvider(table={"AAPL": bars}), ["AAPL"])
    items = api.get("/api/notifications", headers=owner.headers).get_json()["items"]
    assert [item["event"] for item in items] == ["price_alert"]
    assert items[0]["data"]["symbol"] == "AAPL"
    # Syncing the same bars again does not repeat it.
    with app.app_context():
        run(db, FakeProvider(table={"AAPL": bars}), ["AAPL"])
    assert api.get("/api/notifications", headers=owner.headers).get_json()["total"] == 1


def test_a_sync_in_another_process_is_seen_by_the_next_read(
    app: Flask, backend: Backend, db: Session, api: Api, user: Account
) -> None:
    """Another process's sync cannot clear this process's in-process cache: there the row's
    updated_at in the key makes the read see it. A shared (Redis) cache is cleared by every
    process's sync: there a second app on the same Redis stands for the other process."""
    provider = FakeProvider(table={"TEST": make_bars(30)})
    run(db, provider, ["TEST"])
    path = "/api/data/stocks/TEST/history"
    query = {"start": "2024-01-01", "end": "2024-03-01", "adjust": "none"}
    first = api.get(path, headers=user.headers, query_string=query).get_json()
    fixed = provider.table["TEST"].copy()
    fixed.loc[29, ["close", "high"]] = [99.0, 99.5]
    provider.table["TEST"] = fixed
    shared = market_cache(extensions_of(app)).shared
    assert shared is (backend.name == "production")
    elsewhere = create_app(backend.settings) if shared else None
    try:
        cache = market_cache(extensions_of(elsewhere)) if elsewhere else None
        run(db, provider, ["TEST"], start=dt.date(2024, 1, 1), cache=cache)
    finally:
        if elsewhere is not None:
            extensions_of(elsewhere).db.dispose()
    second = api.get(path, headers=user.headers, query_string=query).get_json()
    assert (first["bars"][-1]["close"], second["bars"][-1]["close"]) != (99.0, 99.0)
    assert second["bars"][-1]["close"] == 99.0


def test_a_cached_read_of_a_shared_cache_runs_no_query(
    app: Flask, backend: Backend, api: Api, user: Account
) -> None:
    """With Redis, a cached history or indicators read is answered from the request alone: no
    database query, not even for the caller's account (the token and blocklist suffice)."""
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if not statement.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):  # the test's own
            statements.append(statement)

    paths = [
        "/api/data/stocks/600519.SH/history",
        "/api/data/stocks/600519.SH/indicators?names=sma,rsi",
    ]
    for path in paths:
        assert api.get(path, headers=user.headers).status_code == 200  # fills the cache
    event.listen(Engine, "before_cursor_execute", count)
    try:
        for path in paths:
            assert api.get(path, headers=user.headers).status_code == 200
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    if backend.name == "production":
        assert statements == []
    else:  # in-process cache: one look at the instrument's updated_at per read
        assert len(statements) == len(paths)
        assert all("FROM stocks" in statement for statement in statements)
