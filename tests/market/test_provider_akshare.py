"""The akshare provider against recorded shapes of Eastmoney's and Tencent's answers.

akshare's own parsing runs on them (only `requests.Session.request` is replaced), so a change of
akshare's expectations shows up here as it would in production.
"""

from __future__ import annotations

import datetime as dt
import http.client
import time
from typing import Any

import numpy as np
import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk.market import sync
from quantdesk.market.models import Stock, StockPrice
from quantdesk.market.providers.akshare import AkshareProvider, sector_of_industry
from quantdesk.market.providers.base import (
    Pacer,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    SchemaChanged,
)
from tests.market import recorded as rec

EM_KLINE = r"push2his\.eastmoney\.com/api/qt/stock/kline/get"
TX_KLINE = r"proxy\.finance\.qq\.com/ifzqgtimg/appstock/app/newfqkline/get"
TX_START = r"web\.ifzq\.gtimg\.cn/other/klineweb/klineWeb/weekTrends"
EM_INFO = r"push2\.eastmoney\.com/api/qt/stock/get"
EM_LIST = r"push2\.eastmoney\.com/api/qt/clist/get"
JAN = (dt.date(2024, 1, 1), dt.date(2024, 1, 10))


def em_route(params: dict[str, Any]) -> dict[str, Any]:
    code = params["secid"].split(".")[1]
    if params["fields1"] == "f1,f2,f3,f4,f5":  # stock_zh_index_daily_em
        return rec.em_index(code)
    return rec.em_stock(code, params["fqt"])


def tx_route(url: str, params: dict[str, Any]) -> tuple[int, str]:
    symbol, _, start, _, _, adjust = params["param"].split(",")
    return 200, rec.tx_kline(symbol, adjust, int(start[:4]))


@pytest.fixture
def transport(monkeypatch: pytest.MonkeyPatch) -> rec.Transport:
    fake = rec.Transport()
    fake.json(EM_KLINE, em_route)
    fake.add(TX_KLINE, tx_route)
    fake.add(TX_START, lambda url, params: (200, rec.tx_start(params["code"])))
    fake.json(EM_INFO, lambda p: rec.em_info(p["secid"].split(".")[1], "贵州茅台", "酿酒行业"))
    monkeypatch.setattr(requests.Session, "request", fake.request)
    return fake


@pytest.fixture
def provider() -> AkshareProvider:
    return AkshareProvider(timeout=2.0, interval=0.0)


def sources(transport: rec.Transport) -> list[str]:
    return [
        "tencent" if "qq.com" in url or "gtimg.cn" in url else "eastmoney"
        for url, _ in transport.calls
    ]


def test_daily_bars_from_eastmoney_with_factor_and_shares(
    transport: rec.Transport, provider: AkshareProvider
) -> None:
    bars = provider.bars("600519.SH", *JAN)
    assert [d.isoformat() for d in bars["date"]] == rec.DAYS
    assert bars["close"].tolist() == [b[1] for b in rec.RAW]
    assert bars["volume"].tolist() == [b[4] * 100 for b in rec.RAW]  # lots -> shares
    assert bars["amount"].tolist() == [b[5] for b in rec.RAW]
    np.testing.assert_allclose(bars["adj_factor"], rec.HFQ_FACTOR, rtol=1e-4)
    fqt = [params["fqt"] for _, params in transport.calls]
    assert fqt == ["0", "2"]  # unadjusted, then back-adjusted
    assert {params["secid"] for _, params in transport.calls} == {"1.600519"}
    assert transport.calls[0][1]["beg"] == "20240101"


def test_an_empty_answer_asks_the_next_source(
    transport: rec.Transport, provider: AkshareProvider
) -> None:
    transport.json(EM_KLINE, lambda params: rec.em_kline("600519", None))  # "data": null
    bars = provider.bars("600519.SH", *JAN)
    assert "tencent" in sources(transport)
    assert bars["close"].tolist() == [b[1] for b in rec.RAW]
    assert bars["volume"].tolist() == [b[4] * 100 for b in rec.RAW]
    np.testing.assert_allclose(bars["adj_factor"], rec.HFQ_FACTOR, rtol=1e-4)
    nothing = provider.bars("600519.SH", dt.date(2023, 6, 1), dt.date(2023, 6, 30))
    assert nothing.empty  # both sources have no bar there: an empty answer, not an error


def test_changed_columns_fall_back_to_tencent(
    transport: rec.Transport, provider: AkshareProvider
) -> None:
    def changed(params: dict[str, Any]) -> dict[str, Any]:
        body = rec.em_stock("600519", params["fqt"])
        body["data"]["klines"] = [line + ",0.55" for line in body["data"]["klines"]]  # new field
        return body

    transport.json(EM_KLINE, changed)
    bars = provider.bars("600519.SH", *JAN)
    assert len(bars) == 5
    assert sources(transport)[0] == "eastmoney"
    assert "tencent" in sources(transport)


def test_akshare_renamed_columns_are_refused(
    transport: rec.Transport, provider: AkshareProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    import akshare.stock_feature.stock_hist_em as em

    real = em.stock_zh_a_hist
    monkeypatch.setattr(
        em, "stock_zh_a_hist", lambda **kw: real(**kw).rename(columns={"收盘": "收"})
    )
    transport.add(TX_KLINE, lambda url, params: (200, "kline_day={}"))  # Tencent broken too
    with pytest.raises(SchemaChanged, match="收盘"):
        provider.bars("600519.SH", *JAN)


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (lambda: requests.exceptions.ReadTimeout("read timed out"), ProviderTimeout),
        (lambda: (429, "<html><body>Too Many Requests</body></html>"), RateLimited),
        (
            lambda: requests.exceptions.ConnectionError(
                ("Connection aborted.", http.client.RemoteDisconnected("closed"))
            ),
            RateLimited,
        ),
        (lambda: (502, "<html>Bad Gateway</html>"), ProviderUnavailable),
    ],
    ids=["timeout", "http-429", "ban-disconnect", "bad-gateway"],
)
def test_failures_are_classified_and_retryable(
    transport: rec.Transport, provider: AkshareProvider, failure: Any, expected: type
) -> None:
    transport.add(EM_KLINE, lambda url, params: failure())
    transport.add(TX_START, lambda url, params: failure())
    with pytest.raises(expected) as raised:
        provider.bars("600519.SH", *JAN)
    assert raised.value.retryable
    assert sources(transport) == ["eastmoney", "tencent"]  # both tried, once each


def test_a_hung_source_meets_the_deadline(
    transport: rec.Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    def hang(url: str, params: dict[str, Any]) -> tuple[int, str]:
        time.sleep(3)
        return 200, "{}"

    transport.add(EM_KLINE, hang)
    transport.add(TX_START, hang)
    provider = AkshareProvider(timeout=0.1, interval=0.0)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match="no answer within"):
        provider.bars("600519.SH", *JAN)
    assert time.monotonic() - started < 2.8


def test_index_bars_from_eastmoney(transport: rec.Transport, provider: AkshareProvider) -> None:
    bars = provider.bars("000300.SH", *JAN)
    assert bars["close"].tolist() == [3386.35 + i for i in range(5)]
    assert (bars["adj_factor"] == 1.0).all()
    assert (bars["volume"] == 113406577 * 100).all()
    assert transport.calls[0][1]["secid"] == "1.000300"


def test_tencent_volumes_in_lots_become_shares(
    transport: rec.Transport, provider: AkshareProvider
) -> None:
    transport.add(EM_KLINE, lambda url, params: requests.exceptions.ConnectTimeout("no"))
    # akshare multiplies Tencent's lots by 100, except for codes starting sz000, which it
    # takes for indices; 000001.SZ is a stock, so the provider converts it.
    ping_an = provider.bars("000001.SZ", *JAN)
    moutai = provider.bars("600519.SH", *JAN)
    assert ping_an["volume"].tolist() == moutai["volume"].tolist() == [b[4] * 100 for b in rec.RAW]
    assert ping_an["amount"].tolist() == pytest.approx([b[5] for b in rec.RAW])


def test_one_stock_listing(transport: rec.Transport, provider: AkshareProvider) -> None:
    (listing,) = provider.listings(["600519.SH"])
    assert (listing.symbol, listing.name, listing.exchange) == ("600519.SH", "贵州茅台", "SH")
    assert (listing.industry, listing.sector) == ("酿酒行业", "消费")
    assert listing.listed_on == dt.date(2001, 8, 27)
    assert listing.market_cap == 2065197866978.0
    assert listing.is_st is False
    transport.json(EM_INFO, lambda p: rec.em_info("600080", "*ST金花", "化学制药"))
    (st,) = provider.listings(["600080.SH"])
    assert st.is_st is True
    assert st.sector == "医药卫生"
    (index,) = provider.listings(["000300.SH"])
    assert (index.kind, index.name) == ("index", "沪深300")


def test_the_whole_universe_with_industries(
    transport: rec.Transport, provider: AkshareProvider
) -> None:
    def lists(params: dict[str, Any]) -> dict[str, Any]:
        fs = params["fs"]
        if fs.startswith("m:90"):
            return rec.em_boards([("BK0477", "酿酒行业"), ("BK0475", "银行")])
        if fs.startswith("b:BK0477"):
            return rec.em_members(["600519", "000858"])
        if fs.startswith("b:BK0475"):
            return rec.em_members(["000001"])
        return rec.em_spot(
            [
                ("600519", "贵州茅台", 2.07e12),
                ("000858", "五粮液", 5.2e11),
                ("000001", "平安银行", 2.1e11),
                ("430047", "诺思兰德", 3.1e9),
            ]
        )

    transport.json(EM_LIST, lists)
    listed = {item.symbol: item for item in provider.listings(None)}
    assert {"600519.SH", "000858.SZ", "000001.SZ", "430047.BJ"} <= set(listed)
    assert {"000300.SH", "000001.SH", "399006.SZ"} <= set(listed)  # the main indices
    assert listed["000858.SZ"].industry == "酿酒行业"
    assert listed["000001.SZ"].sector == "金融"
    assert listed["430047.BJ"].industry is None  # in no board: kept, without industry
    assert listed["430047.BJ"].board == "bse"
    assert listed["600519.SH"].market_cap == 2.07e12


def test_sector_mapping_of_industry_names() -> None:
    assert sector_of_industry("银行") == "金融"
    assert sector_of_industry("半导体") == "信息技术"
    assert sector_of_industry("化学制药") == "医药卫生"
    assert sector_of_industry("工程机械") == "工业"
    assert sector_of_industry(None) is None


def test_the_pacer_spaces_calls() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(0.5, clock=lambda: now[0], sleep=sleep)
    pacer.wait()
    now[0] += 0.2
    pacer.wait()
    now[0] += 2.0
    pacer.wait()
    assert slept == pytest.approx([0.3])


def test_a_sync_through_akshare_stores_raw_bars_and_factors(
    transport: rec.Transport, provider: AkshareProvider, db: Session, market_data: object
) -> None:
    transport.json(EM_INFO, lambda p: rec.em_info("600999", "招商证券", "证券"))
    result = sync.sync(
        db,
        provider=provider,
        symbols=["600999.SH"],
        start=JAN[0],
        end=JAN[1],
        policy=sync.RetryPolicy(retries=0),
    )
    assert (result.status, result.bars_written) == ("finished", 5)
    stock = db.get(Stock, "600999.SH")
    assert stock is not None
    assert (stock.name, stock.source, stock.sector) == ("招商证券", "akshare", "金融")
    rows = db.scalars(
        select(StockPrice).where(StockPrice.symbol == "600999.SH").order_by(StockPrice.date)
    ).all()
    assert [r.close for r in rows] == [b[1] for b in rec.RAW]
    assert [r.volume for r in rows] == [b[4] * 100 for b in rec.RAW]
    assert rows[0].prev_close is None  # nothing stored before the first bar
    assert [r.prev_close for r in rows[1:]] == [b[1] for b in rec.RAW[:-1]]
    assert rows[0].adj_close == pytest.approx(rows[0].close * rows[0].adj_factor)
    # an outage later keeps all of it
    transport.add(EM_KLINE, lambda url, params: requests.exceptions.ConnectTimeout("down"))
    transport.add(TX_START, lambda url, params: requests.exceptions.ConnectTimeout("down"))
    failed = sync.sync(
        db,
        provider=provider,
        symbols=["600999.SH"],
        start=JAN[0],
        end=JAN[1],
        policy=sync.RetryPolicy(retries=1, backoff=0.0),
    )
    assert failed.status == "failed"
    assert "600999.SH" in failed.failures
    count = len(db.scalars(select(StockPrice.id).where(StockPrice.symbol == "600999.SH")).all())
    assert count == 5
