"""The daily job, the task that runs it, and the bars handed to the engine."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from quantdesk.engine.data import Bars
from quantdesk.extensions import Extensions
from quantdesk.indicators import sma
from quantdesk.market import service, sync
from quantdesk.market.models import SyncRun, TechnicalIndicator
from quantdesk.market.providers.base import ProviderUnavailable
from quantdesk.market.tasks import daily_sync, daily_trigger
from tests.market.fakes import FakeProvider, make_bars

SH = ZoneInfo("Asia/Shanghai")
FRIDAY_AFTER_CLOSE = dt.datetime(2024, 3, 1, 16, 0, tzinfo=SH)


class Broken(FakeProvider):
    def bars(self, symbol: str, start: dt.date, end: dt.date) -> object:  # type: ignore[override]
        raise RuntimeError("a bug in the adapter")


def own(db: Session, provider: FakeProvider, symbols: list[str]) -> None:
    result = sync.sync(
        db,
        provider=provider,
        symbols=symbols,
        today=dt.date(2024, 2, 20),
        policy=sync.RetryPolicy(retries=0),
    )
    assert result.status == "finished", result.failures


def daily_runs(db: Session) -> list[tuple[str, str, dt.date | None]]:
    rows = db.execute(
        select(SyncRun.provider, SyncRun.status, SyncRun.session_date)
        .where(SyncRun.kind == "daily")
        .order_by(SyncRun.id)
    ).all()
    return [tuple(row) for row in rows]  # type: ignore[misc]


def test_each_provider_syncs_the_due_session_once(
    ext: Extensions, db: Session, market_data: object
) -> None:
    good = FakeProvider(name="fakeb", table={"BBB": make_bars(45, seed=2)})
    flaky = FakeProvider(name="fakea", table={"AAA": make_bars(45, seed=1)})
    broken = Broken(name="fakec", table={"CCC": make_bars(30, seed=3)})
    own(db, good, ["BBB"])
    own(db, flaky, ["AAA"])
    own(db, broken, [])  # owns nothing yet: give it a symbol through the listings
    sync.store.upsert_listings(db, broken.listings(["CCC"]), source="fakec")
    db.commit()
    flaky.failures["AAA"] = [ProviderUnavailable("maintenance")] * 3
    providers = {"fakea": flaky, "fakeb": good, "fakec": broken}
    policy = sync.RetryPolicy(retries=1, backoff=0.0)
    results = sync.daily_job(
        ext.db, ext.settings, now=FRIDAY_AFTER_CLOSE, providers=providers, policy=policy
    )
    day = dt.date(2024, 3, 1)
    assert [(r.provider, r.status) for r in results] == [("fakea", "failed"), ("fakeb", "finished")]
    assert good.calls[-1] == ("BBB", day - dt.timedelta(days=10), day)
    runs = daily_runs(db)
    assert ("fakeb", "finished", day) in runs
    assert ("fakea", "failed", day) in runs
    assert ("fakec", "failed", day) in runs  # the bug is recorded, the others still ran
    assert not any(provider == "sample" for provider, _, _ in runs)  # static data: skipped
    calls = len(good.calls)
    again = sync.daily_job(
        ext.db,
        ext.settings,
        now=FRIDAY_AFTER_CLOSE + dt.timedelta(hours=2),
        providers=providers,
        policy=policy,
    )
    assert len(good.calls) == calls  # already done for this session
    assert [r.provider for r in again] == ["fakea"]  # the failed one is tried again
    assert again[0].status == "finished"
    weekend = sync.daily_job(
        ext.db,
        ext.settings,
        now=FRIDAY_AFTER_CLOSE + dt.timedelta(days=1),
        providers=providers,
        policy=policy,
    )
    assert weekend == []  # Saturday: Friday's session is the due one, and it is done


def test_the_daily_task_and_its_trigger(ext: Extensions, db: Session, market_data: object) -> None:
    ext.tasks.submit(daily_sync)  # eager in tests; only `sample` owns symbols: nothing to do
    assert db.scalar(select(func.count()).select_from(SyncRun).where(SyncRun.kind == "daily")) == 0
    assert daily_trigger(ext.settings) == {
        "day_of_week": "mon-fri",
        "hour": 15,
        "minute": 30,
        "timezone": "Asia/Shanghai",
    }


def test_bars_for_the_engine(db: Session, market_data: object) -> None:
    frame, listed = service.load_bars(
        db,
        symbols=["600519.SH", "688981.SH", "000002.SZ"],
        start=dt.date(2016, 1, 1),
        end=dt.date(2024, 12, 31),
    )
    bars = Bars.from_long(frame, listed)
    assert bars.symbols == ("600519.SH", "688981.SH", "000002.SZ")
    assert bars.dates[0] == np.datetime64("2016-01-04")
    j = bars.symbols.index("688981.SH")
    assert np.isnan(bars.close[: bars.dates.searchsorted(np.datetime64("2020-07-16")), j]).all()
    k = bars.symbols.index("000002.SZ")
    assert bars.suspended[bars.dates.searchsorted(np.datetime64("2016-02-01")), k]
    assert listed["688981.SH"] == dt.date(2020, 7, 16)


def test_indicator_series_can_be_stored(db: Session, market_data: object) -> None:
    written = service.store_indicators(
        db, symbol="600519.SH", names=["sma", "macd"], params={"sma_n": 5}
    )
    trading = db.scalar(
        select(func.count())
        .select_from(TechnicalIndicator)
        .where(TechnicalIndicator.symbol == "600519.SH", TechnicalIndicator.indicator_type == "sma")
    )
    assert written == trading * 4  # sma, macd, macd_signal, macd_hist
    rows = db.execute(
        select(TechnicalIndicator.value, TechnicalIndicator.parameters)
        .where(TechnicalIndicator.symbol == "600519.SH", TechnicalIndicator.indicator_type == "sma")
        .order_by(TechnicalIndicator.date)
    ).all()
    assert {row.parameters for row in rows} == {"n=5"}
    frame = service.bars_frame(db, "600519.SH", start=None, end=None, adjust=service.Adjust.QFQ)
    expected = sma(frame.loc[~frame["suspended"], "close"].to_numpy(), 5)
    got = np.array([np.nan if r.value is None else r.value for r in rows])
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    again = service.store_indicators(db, symbol="600519.SH", names=["sma"], params={"sma_n": 5})
    assert again == trading  # replaced, not duplicated
    with pytest.raises(service.NotFound):
        service.store_indicators(db, symbol="NOPE", names=["sma"], params={})
