"""Market data speed: bulk-load rate into PostgreSQL, and the server-side time of a history request.

Run: ``.venv/bin/python benchmarks/market.py [--bars N] [--requests N]`` with PostgreSQL at
127.0.0.1:5432 (user postgres; a scratch database `quantdesk_bench_market` is created and
dropped) and, when reachable, Redis at 127.0.0.1:6379 (database 14, flushed) for the cache.

1. Bulk load: N synthetic bars (random walks, 2,500 sessions a symbol) written through
   `market.store.write_bars` in the sync's batches, one transaction each: the first load (COPY
   straight into `stock_prices`), then the same bars again (COPY into a staging table and the
   upsert, which finds nothing to change). Target (issue 5): at least 200,000 bars/s.
2. History: `GET /api/data/stocks/600519.SH/history` for ten years of daily bars (2,431) on
   the seeded sample, timed inside the app (the access log's duration, from the first
   before-request hook to the response: auth, query, adjustment, JSON), uncached (the cache
   cleared before each request) and cached. Targets: p50 at most 20 ms and 5 ms.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from typing import Any

import numpy as np
import pandas as pd
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from quantdesk import migrate
from quantdesk.app import create_app
from quantdesk.extensions import extensions_of
from quantdesk.market import store, sync
from quantdesk.market.providers.base import Listing
from quantdesk.market.sync import BATCH_ROWS
from quantdesk.settings import Settings

URL = "postgresql+psycopg://postgres@127.0.0.1:5432/quantdesk_bench_market"
REDIS = "redis://127.0.0.1:6379/14"
SESSIONS = 2500
HISTORY = "/api/data/stocks/600519.SH/history?start=2015-01-01&end=2024-12-31&adjust=qfq"


def recreate(url: str, *, drop_only: bool = False) -> None:
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        if not drop_only:
            connection.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()


def synthetic_bars(symbols: int) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    dates = pd.bdate_range("2015-01-05", periods=SESSIONS).date
    frames = []
    for k in range(symbols):
        close = np.round(20 * np.exp(np.cumsum(rng.normal(0, 0.02, SESSIONS))), 2)
        frames.append(
            pd.DataFrame(
                {
                    "symbol": f"B{k:05d}",
                    "date": dates,
                    "open": close,
                    "high": close + 0.1,
                    "low": close - 0.1,
                    "close": close,
                    "volume": rng.integers(1_000, 1_000_000, SESSIONS) * 100,
                    "amount": close * 1e6,
                    "adj_close": close,
                    "adj_factor": 1.0,
                    "prev_close": np.r_[np.nan, close[:-1]],
                    "is_st": False,
                    "suspended": False,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def load(session: Session, bars: pd.DataFrame, *, fresh: bool) -> tuple[int, float]:
    symbols = bars["symbol"].unique().tolist()
    per_batch = max(1, BATCH_ROWS // SESSIONS)
    written, started = 0, time.perf_counter()
    for start in range(0, len(symbols), per_batch):
        chunk = symbols[start : start + per_batch]
        part = bars[bars["symbol"].isin(chunk)]
        written += store.write_bars(session, part, fresh=set(chunk) if fresh else ())
        session.commit()
    return written, time.perf_counter() - started


def bench_bulk_load(n_bars: int) -> None:
    engine = create_engine(URL)
    migrate.upgrade(engine)
    bars = synthetic_bars(max(1, n_bars // SESSIONS))
    listings = [
        Listing(s, s, "NASDAQ", "us", "us", currency="USD") for s in bars["symbol"].unique()
    ]
    with Session(engine) as session:
        store.upsert_listings(session, listings, source="bench")
        session.commit()
        written, seconds = load(session, bars, fresh=True)
        print(
            f"bulk load, first load (COPY):        {written:>9,} bars in {seconds:6.2f} s "
            f"= {written / seconds:>9,.0f} bars/s   (target >= 200,000)"
        )
        unchanged, seconds = load(session, bars, fresh=False)
        print(
            f"bulk load, same bars again (upsert): {len(bars):>9,} bars in {seconds:6.2f} s "
            f"= {len(bars) / seconds:>9,.0f} bars/s   ({unchanged} rows changed)"
        )
    engine.dispose()


class Durations(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.values: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        duration = getattr(record, "duration_ms", None)
        if duration is not None:
            self.values.append(float(duration))


def percentiles(values: list[float]) -> str:
    q = statistics.quantiles(values, n=100)
    return f"p50 {statistics.median(values):6.2f} ms  p90 {q[89]:6.2f} ms  p99 {q[98]:6.2f} ms"


def ok(status: int) -> None:
    if status != 200:
        raise SystemExit(f"history request failed with {status}")


def bench_history(requests: int) -> None:
    redis_url = REDIS
    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=1).flushdb()
    except redis.RedisError:
        redis_url = ""
        print("(Redis not reachable: the cache is in-process)")
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        QUANTDESK_ENV="test",
        DATABASE_URL=URL,
        REDIS_URL=redis_url,
        SECRET_KEY="bench-secret-key-0000000000000000000000",  # noqa: S106 (a scratch app)
        JWT_SECRET_KEY="bench-jwt-secret-key-00000000000000000000",  # noqa: S106
        ARGON2_TIME_COST=1,
        ARGON2_MEMORY_KIB=8,
        RATELIMIT_ENABLED=False,
        LOG_LEVEL="WARNING",
        TASKS_EAGER=True,
    )
    engine = create_engine(URL)
    migrate.upgrade(engine)
    engine.dispose()
    app = create_app(settings)
    ext = extensions_of(app)
    with ext.db.session_scope() as session:
        result = sync.seed_demo(session)
    print(f"seeded the sample: {result.bars_written:,} bars")
    client = app.test_client()
    account = {"username": "bench", "email": "bench@example.com", "password": "long enough pw"}
    client.post("/api/auth/register", json=account)
    token = client.post("/api/auth/login", json=account).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    access = logging.getLogger("quantdesk.access")
    durations = Durations()
    access.addHandler(durations)
    access.setLevel(logging.INFO)
    access.propagate = False  # measure, do not print a line per request
    body: Any = client.get(HISTORY, headers=headers).get_json()
    print(f"history: {len(body['bars'])} daily bars, {body['start']} to {body['end']}")
    for _ in range(20):  # warm-up: connection pool, code paths
        client.get(HISTORY, headers=headers)
    durations.values.clear()
    for _ in range(requests):
        with app.app_context():
            ext.cache.clear()
        ok(client.get(HISTORY, headers=headers).status_code)
    uncached = list(durations.values)
    durations.values.clear()
    for _ in range(requests):
        ok(client.get(HISTORY, headers=headers).status_code)
    cached = list(durations.values)
    print(f"history, uncached ({len(uncached)}): {percentiles(uncached)}   (target p50 <= 20 ms)")
    print(f"history, cached   ({len(cached)}): {percentiles(cached)}   (target p50 <= 5 ms)")
    access.removeHandler(durations)
    ext.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000, help="bars to bulk-load")
    parser.add_argument("--requests", type=int, default=200, help="history requests per case")
    parser.add_argument("--only", choices=["load", "history"], help="run one of the two")
    args = parser.parse_args()
    try:
        if args.only != "history":
            recreate(URL)
            bench_bulk_load(args.bars)
        if args.only != "load":
            recreate(URL)
            bench_history(args.requests)
    finally:
        recreate(URL, drop_only=True)


if __name__ == "__main__":
    main()
