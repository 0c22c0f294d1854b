"""A synthetic A-share universe from a fixed seed, so every market rule can be exercised offline.

NOT MARKET DATA. The 56 stocks and two indices below have real-format codes but invented prices;
every name starts with 模拟 ("simulated") and their `source` is `sample`, so no screen or
report can mistake them for quotes. What they do carry is the structure of the real market:
the SSE trading calendar 2015-2024 (akshare's offline copy), the SH main, SZ main, ChiNext,
STAR and BSE boards with the engine's dated price limits (10%, ST 5%, ChiNext 20% from
2020-08-24, STAR 20%, BSE 30%, no limit in a listing's first five sessions), limit-up and
limit-down days (some one-price, 一字板), an ST stock, a three-month suspension, IPOs inside
the period, yearly cash dividends and bonus shares with ex-rights reference prices, and the
CSI 300 (000300.SH) and SSE Composite (000001.SH) as cap-weighted indices of the universe.
Generated in about 0.1 s; `quantdesk seed-demo` stores it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from quantdesk.engine.rules import Board, Market, Rule, limit_prices, rule_values
from quantdesk.market.calendar import cn_calendar
from quantdesk.market.providers.base import Listing

SEED = 20150105
START, END = dt.date(2015, 1, 1), dt.date(2024, 12, 31)
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

_D = dt.date


@dataclass(frozen=True)
class _Spec:
    symbol: str
    name: str
    industry: str
    sector: str
    listed: dt.date  # listings before START have their first bar on START's first session
    price: float  # price on the first bar (issue price for IPOs in the period)
    vol: float  # idiosyncratic volatility multiplier
    beta: float


def _s(
    symbol: str,
    name: str,
    industry: str,
    sector: str,
    listed: dt.date,
    price: float,
    vol: float = 1.0,
    beta: float = 1.0,
) -> _Spec:
    return _Spec(symbol, "模拟" + name, industry, sector, listed, price, vol, beta)


# fmt: off
SPECS: tuple[_Spec, ...] = (
    # --- Shanghai main board
    _s("600519.SH", "酱香酒业", "白酒", "消费", _D(2001, 8, 27), 185.0, 0.8, 0.9),
    _s("600036.SH", "招远银行", "银行", "金融", _D(2002, 4, 9), 17.5, 0.7, 0.9),
    _s("601318.SH", "平川保险", "保险", "金融", _D(2007, 3, 1), 42.0, 0.8, 1.1),
    _s("600900.SH", "长峡电力", "电力", "公用事业", _D(2003, 11, 18), 12.3, 0.5, 0.6),
    _s("601857.SH", "华油股份", "石油石化", "能源", _D(2007, 11, 5), 10.4, 0.7, 0.9),
    _s("600030.SH", "海岳证券", "证券", "金融", _D(2003, 1, 6), 33.0, 1.3, 1.4),
    _s("600276.SH", "恒康制药", "化学制药", "医药卫生", _D(2000, 10, 18), 38.0, 1.0, 0.8),
    _s("600309.SH", "万和化学", "化工", "原材料", _D(2001, 1, 5), 18.0, 1.1, 1.0),
    _s("601899.SH", "紫峰矿业", "有色金属", "原材料", _D(2008, 4, 25), 3.2, 1.2, 1.1),
    _s("600028.SH", "北方炼化", "石油石化", "能源", _D(2001, 8, 8), 6.1, 0.7, 0.9),
    _s("600048.SH", "保融地产", "房地产开发", "房地产", _D(2006, 7, 31), 10.2, 1.1, 1.1),
    _s("601888.SH", "海旅免税", "旅游零售", "消费", _D(2009, 10, 15), 29.0, 1.2, 1.0),
    _s("600887.SH", "伊原乳业", "食品饮料", "消费", _D(1996, 3, 12), 25.0, 0.8, 0.9),
    _s("601012.SH", "隆光能源", "光伏设备", "工业", _D(2012, 4, 11), 11.0, 1.5, 1.2),
    _s("600104.SH", "上江汽车", "汽车整车", "消费", _D(1997, 11, 25), 20.0, 0.9, 1.0),
    _s("600585.SH", "皖江建材", "建材", "原材料", _D(2002, 2, 7), 18.6, 1.0, 1.0),
    _s("601166.SH", "兴海银行", "银行", "金融", _D(2007, 2, 5), 16.0, 0.7, 0.9),
    _s("600406.SH", "国瑞电气", "电网设备", "工业", _D(2003, 10, 16), 16.0, 1.0, 1.0),
    _s("603288.SH", "海晏调味", "食品饮料", "消费", _D(2014, 2, 11), 52.0, 0.9, 0.8),
    _s("605499.SH", "东岳饮品", "食品饮料", "消费", _D(2021, 5, 27), 46.27, 1.1, 0.8),
    # --- Shenzhen main board
    _s("000001.SZ", "深平银行", "银行", "金融", _D(1991, 4, 3), 15.8, 0.8, 1.0),
    _s("000002.SZ", "万景地产", "房地产开发", "房地产", _D(1991, 1, 29), 13.9, 1.1, 1.1),
    _s("000333.SZ", "美达电器", "家电", "消费", _D(2013, 9, 18), 28.0, 1.0, 1.0),
    _s("000651.SZ", "格利电器", "家电", "消费", _D(1996, 11, 18), 36.0, 1.0, 1.0),
    _s("000858.SZ", "五粮春酒业", "白酒", "消费", _D(1998, 4, 27), 18.5, 1.0, 1.0),
    _s("002415.SZ", "海视科技", "电子", "信息技术", _D(2010, 5, 28), 26.0, 1.1, 1.1),
    _s("002594.SZ", "比邻汽车", "汽车整车", "消费", _D(2011, 6, 30), 50.0, 1.3, 1.1),
    _s("000725.SZ", "京华显示", "电子", "信息技术", _D(2001, 1, 12), 2.6, 1.1, 1.1),
    _s("002230.SZ", "科讯语音", "软件开发", "信息技术", _D(2008, 5, 12), 30.0, 1.4, 1.2),
    _s("000063.SZ", "中联通讯设备", "通信设备", "通信服务", _D(1997, 11, 18), 17.0, 1.2, 1.1),
    _s("002475.SZ", "立成精密", "电子", "信息技术", _D(2010, 9, 15), 25.0, 1.3, 1.2),
    _s("000568.SZ", "泸川酒业", "白酒", "消费", _D(1994, 5, 9), 21.0, 1.1, 1.0),
    _s("002352.SZ", "顺达物流", "物流", "工业", _D(2010, 2, 5), 9.0, 1.0, 1.0),
    _s("000792.SZ", "盐泽锂业", "化工", "原材料", _D(1997, 9, 4), 14.5, 1.3, 1.0),
    _s("000166.SZ", "申宏证券", "证券", "金融", _D(2015, 1, 26), 9.96, 1.3, 1.4),
    _s("001979.SZ", "蛇湾地产", "房地产开发", "房地产", _D(2015, 12, 30), 23.46, 1.1, 1.1),
    # --- ChiNext
    _s("300750.SZ", "宁川电池", "电池", "工业", _D(2018, 6, 11), 25.14, 1.4, 1.2),
    _s("300059.SZ", "东财信息", "互联网服务", "信息技术", _D(2010, 3, 19), 22.0, 1.6, 1.5),
    _s("300760.SZ", "迈康医疗", "医疗器械", "医药卫生", _D(2018, 10, 16), 48.8, 1.0, 0.8),
    _s("300015.SZ", "爱明眼科", "医疗服务", "医药卫生", _D(2009, 10, 30), 36.0, 1.1, 0.9),
    _s("300124.SZ", "汇通自动化", "自动化设备", "工业", _D(2010, 9, 28), 26.0, 1.3, 1.2),
    _s("300274.SZ", "阳华电源", "光伏设备", "工业", _D(2011, 11, 2), 11.0, 1.6, 1.3),
    _s("300498.SZ", "温和牧业", "养殖", "消费", _D(2015, 11, 2), 32.0, 1.2, 0.7),
    _s("300122.SZ", "智康生物", "生物制品", "医药卫生", _D(2010, 9, 28), 21.0, 1.4, 1.0),
    _s("300033.SZ", "同顺软件", "软件开发", "信息技术", _D(2009, 12, 25), 40.0, 1.7, 1.5),
    _s("301269.SZ", "华芯设计", "半导体", "信息技术", _D(2022, 7, 29), 32.69, 1.5, 1.3),
    # --- STAR market
    _s("688981.SH", "中微晶圆", "半导体", "信息技术", _D(2020, 7, 16), 27.46, 1.4, 1.3),
    _s("688111.SH", "金桥办公", "软件开发", "信息技术", _D(2019, 11, 18), 45.86, 1.3, 1.2),
    _s("688599.SH", "天川光能", "光伏设备", "工业", _D(2020, 6, 10), 8.16, 1.5, 1.3),
    _s("688012.SH", "中科刻蚀", "半导体设备", "信息技术", _D(2019, 7, 22), 29.01, 1.4, 1.3),
    _s("688036.SH", "传声通信", "消费电子", "信息技术", _D(2019, 9, 30), 35.0, 1.3, 1.2),
    _s("688169.SH", "石川科技", "家电", "消费", _D(2020, 2, 21), 271.12, 1.3, 1.1),
    _s("688271.SH", "联康影像", "医疗器械", "医药卫生", _D(2022, 8, 22), 109.88, 1.2, 1.0),
    _s("688223.SH", "晶辉能源", "光伏设备", "工业", _D(2022, 1, 26), 5.42, 1.5, 1.3),
    # --- Beijing Stock Exchange
    _s("430047.BJ", "诺兰生物", "生物制品", "医药卫生", _D(2021, 11, 15), 12.0, 1.8, 1.0),
    _s("832566.BJ", "梓桐药业", "中药", "医药卫生", _D(2021, 11, 15), 9.0, 1.8, 1.0),
)
# fmt: on

ST_SYMBOL, ST_FROM = "000792.SZ", _D(2019, 4, 30)  # *ST from this session to the end
SUSPENSION = ("000002.SZ", _D(2016, 1, 4), _D(2016, 3, 31))  # sessions with no trading
# Forced moves: (symbol, first session on/after date) -> (return, one-price bar). Each one
# runs into its board's limit, so every kind of limit day exists whatever the seed draws.
EVENTS: dict[tuple[str, dt.date], tuple[float, bool]] = {
    ("600519.SH", _D(2016, 2, 15)): (0.15, True),  # main board limit-up, one price all day
    ("600036.SH", _D(2018, 10, 11)): (-0.15, False),  # main board limit-down
    ("300059.SZ", _D(2019, 5, 6)): (-0.15, False),  # ChiNext before the reform: -10%
    ("300750.SZ", _D(2021, 3, 8)): (0.25, False),  # ChiNext after 2020-08-24: +20%
    ("688981.SH", _D(2022, 10, 10)): (-0.25, False),  # STAR: -20%
    ("000792.SZ", _D(2020, 6, 1)): (0.08, False),  # ST: +5%
    ("000792.SZ", _D(2020, 6, 2)): (-0.08, True),  # ST: -5%, one price
    ("430047.BJ", _D(2022, 3, 1)): (0.35, False),  # BSE: +30%
    ("000002.SZ", _D(2016, 4, 1)): (-0.15, True),  # the resumption after the suspension
    ("000002.SZ", _D(2016, 4, 5)): (-0.15, False),
}
# Market-wide moods (mean daily market return added over a date range), for realistic paths.
_REGIMES = (
    (_D(2015, 1, 5), _D(2015, 6, 12), 0.004),
    (_D(2015, 6, 15), _D(2015, 7, 8), -0.02),
    (_D(2015, 8, 18), _D(2015, 8, 26), -0.02),
    (_D(2016, 1, 4), _D(2016, 1, 7), -0.03),
    (_D(2018, 1, 29), _D(2018, 12, 28), -0.0015),
    (_D(2019, 1, 4), _D(2019, 4, 19), 0.003),
    (_D(2020, 2, 3), _D(2020, 2, 3), -0.08),
    (_D(2024, 9, 24), _D(2024, 10, 8), 0.035),
)
INDICES = (
    Listing("000300.SH", "沪深300(模拟)", "SH", "index", "cn_a", kind="index", currency="CNY"),
    Listing("000001.SH", "上证指数(模拟)", "SH", "index", "cn_a", kind="index", currency="CNY"),
)
_INDEX_START = {"000300.SH": 3533.71, "000001.SH": 3234.68}  # real closes of 2014-12-31
_SECTORS = sorted({spec.sector for spec in SPECS})


def board_of(symbol: str) -> Board:
    code, _, suffix = symbol.partition(".")
    if suffix == "BJ":
        return Board.BSE
    if code.startswith("688"):
        return Board.STAR
    if code.startswith("30"):
        return Board.CHINEXT
    return Board.MAIN


@dataclass(frozen=True)
class Universe:
    """The generated panels, `dates x symbols`; NaN close where a symbol has no bar."""

    dates: list[dt.date]
    symbols: list[str]
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    amount: FloatArray
    prev_close: FloatArray
    adj_factor: FloatArray
    is_st: BoolArray
    suspended: BoolArray
    listings: dict[str, Listing]


def _round2(x: FloatArray) -> FloatArray:
    return np.round(x, 2)


def _first_index(days: npt.NDArray[np.datetime64], day: dt.date) -> int:
    """The row of the first session on or after `day`."""
    return int(np.searchsorted(days, np.datetime64(day, "D")))


def _dividends(
    rng: np.random.Generator, days: npt.NDArray[np.datetime64], first: list[int]
) -> tuple[FloatArray, FloatArray]:
    """Cash per share as a fraction of the previous close, and bonus shares per share."""
    n_days, n = len(days), len(SPECS)
    cash, bonus = np.zeros((n_days, n)), np.zeros((n_days, n))
    yields = rng.uniform(0.0, 0.03, n)
    offsets = rng.integers(0, 40, n)
    draws = rng.uniform(0, 1, (END.year - START.year + 1, n))
    ratios = rng.choice([0.2, 0.3, 0.5, 1.0], (END.year - START.year + 1, n))
    for y, year in enumerate(range(START.year, END.year + 1)):
        for i in range(n):
            ex = _first_index(days, _D(year, 6, 1) + dt.timedelta(days=int(offsets[i])))
            if ex >= n_days or ex - first[i] < 250 or SPECS[i].symbol == ST_SYMBOL:
                continue
            cash[ex, i] = yields[i]
            if draws[y, i] < 0.12:
                bonus[ex, i] = ratios[y, i]
    return cash, bonus


@lru_cache(maxsize=1)
def universe() -> Universe:
    """Generate the universe (deterministic: the same seed and calendar give the same bars)."""
    dates = cn_calendar().sessions(START, END)
    days = np.array(dates, dtype="datetime64[D]")
    n_days, n = len(dates), len(SPECS)
    rng = np.random.default_rng(SEED)
    symbols = [spec.symbol for spec in SPECS]
    first = [max(0, _first_index(days, spec.listed)) for spec in SPECS]
    market = rng.normal(0.0001, 0.012, n_days)
    for begin, end, mood in _REGIMES:
        market[(days >= np.datetime64(begin)) & (days <= np.datetime64(end))] += mood
    sector_of = np.array([_SECTORS.index(spec.sector) for spec in SPECS])
    sector_moves = rng.normal(0.0, 0.008, (n_days, len(_SECTORS)))
    idio = rng.standard_t(4, (n_days, n)) * 0.011
    gaps, wick_up, wick_down = (rng.normal(0, 1, (n_days, n)) for _ in range(3))
    turnover_noise = rng.normal(0, 0.35, (n_days, n))
    ipo_pop = rng.uniform(0.3, 1.8, n)
    base_turnover = rng.uniform(0.003, 0.02, n)
    caps = np.exp(rng.uniform(np.log(8e9), np.log(1.5e12), n))
    shares: FloatArray = np.asarray(caps / np.array([s.price for s in SPECS]), dtype=np.float64)
    cash, bonus = _dividends(rng, days, first)
    vols = np.array([spec.vol for spec in SPECS])
    betas = np.array([spec.beta for spec in SPECS])
    boards = [board_of(s) for s in symbols]

    st = np.zeros((n_days, n), dtype=bool)
    st[days >= np.datetime64(ST_FROM), symbols.index(ST_SYMBOL)] = True
    suspended = np.zeros((n_days, n), dtype=bool)
    sus_symbol, sus_from, sus_to = SUSPENSION
    sus_rows = (days >= np.datetime64(sus_from)) & (days <= np.datetime64(sus_to))
    suspended[sus_rows, symbols.index(sus_symbol)] = True
    limit = np.empty((n_days, n))
    free_days = int(rule_values(Rule.NEW_LISTING_FREE_DAYS, Market.CN_A, Board.MAIN, days[:1])[0])
    for i, board in enumerate(boards):
        normal = rule_values(Rule.PRICE_LIMIT, Market.CN_A, board, days)
        st_limit = rule_values(Rule.PRICE_LIMIT_ST, Market.CN_A, board, days)
        limit[:, i] = np.where(st[:, i], st_limit, normal)
        if SPECS[i].listed >= START:
            limit[first[i] : first[i] + free_days, i] = 0.0  # no limit in the first sessions
    forced = np.full((n_days, n), np.nan)
    one_price = np.zeros((n_days, n), dtype=bool)
    for (symbol, day), (change, flat) in EVENTS.items():
        t, i = _first_index(days, day), symbols.index(symbol)
        forced[t, i], one_price[t, i] = change, flat

    shape = (n_days, n)
    o, h, lo, c, v, amt, pc = (np.full(shape, np.nan) for _ in range(7))
    factor = np.full(shape, np.nan)
    last = np.array([spec.price for spec in SPECS])
    last_factor = np.ones(n)
    first_row = np.array(first)
    in_period = np.array([spec.listed >= START for spec in SPECS])
    for t in range(n_days):
        live, starts = t >= first_row, t == first_row
        is_ipo = starts & in_period
        # ex-rights reference price: (P - cash) / (1 + bonus), to the cent
        ref = np.where(live, _round2((last - cash[t] * last) / (1.0 + bonus[t])), np.nan)
        ref = np.where(starts, last, ref)
        f_today = np.where(live & (ref > 0), last_factor * last / np.where(ref > 0, ref, 1), 1.0)
        shares *= 1.0 + np.where(live, bonus[t], 0.0)
        move = betas * market[t] + sector_moves[t, sector_of] + vols * idio[t]
        move = np.where(is_ipo, ipo_pop, move)
        move = np.where(np.isnan(forced[t]), move, forced[t])
        up, down = limit_prices(ref, limit[t])
        close = np.clip(_round2(ref * (1.0 + move)), np.maximum(down, 0.01), up)
        open_ = np.clip(_round2(ref * (1.0 + 0.4 * move + 0.004 * vols * gaps[t])), down, up)
        open_ = np.maximum(open_, 0.01)
        spread = 0.006 * vols
        high = np.minimum(_round2(np.maximum(open_, close) * (1 + spread * np.abs(wick_up[t]))), up)
        low = np.maximum(
            _round2(np.minimum(open_, close) * (1 - spread * np.abs(wick_down[t]))), down
        )
        flat = one_price[t]
        open_ = np.where(flat, close, open_)
        high, low = np.where(flat, close, high), np.where(flat, close, np.maximum(low, 0.01))
        turnover = base_turnover * np.exp(turnover_noise[t]) * (1.0 + 12.0 * np.abs(move))
        turnover = np.where(flat, turnover * 0.1, np.where(is_ipo, 0.6, turnover))
        volume = np.round(shares * 0.35 * turnover / 100.0) * 100.0
        halt = suspended[t]
        close, open_ = np.where(halt, ref, close), np.where(halt, ref, open_)
        high, low = np.where(halt, ref, high), np.where(halt, ref, low)
        volume = np.where(halt, 0.0, volume)
        amount = np.round(volume * (open_ + high + low + close) / 4.0, 2)
        for panel, values in (
            (o, open_),
            (h, high),
            (lo, low),
            (c, close),
            (v, volume),
            (amt, amount),
            (pc, ref),
            (factor, f_today),
        ):
            panel[t] = np.where(live, values, np.nan)
        last = np.where(live, close, last)
        last_factor = np.where(live, f_today, last_factor)
    return _with_indices(dates, symbols, (o, h, lo, c, v, amt, pc, factor), st, suspended, shares)


def _with_indices(
    dates: list[dt.date],
    symbols: list[str],
    panels: tuple[FloatArray, ...],
    st: BoolArray,
    suspended: BoolArray,
    shares: FloatArray,
) -> Universe:
    """Add the two indices as cap-weighted averages of their members' daily moves."""
    o, h, lo, c, v, amt, pc, factor = panels
    n_days = len(dates)
    sh = np.array([s.endswith(".SH") for s in symbols])
    not_bj = np.array([not s.endswith(".BJ") for s in symbols])
    members = {"000300.SH": not_bj, "000001.SH": sh}
    columns: dict[str, list[FloatArray]] = {}
    for index, member in members.items():
        weight = np.where(member & ~np.isnan(c) & ~st & ~suspended, pc * shares, 0.0)
        total = weight.sum(axis=1)
        rel = {
            name: np.nansum(weight * (p / pc - 1.0), axis=1) / total
            for name, p in (("open", o), ("high", h), ("low", lo), ("close", c))
        }
        level = _INDEX_START[index] * np.cumprod(1.0 + rel["close"])
        prev = np.concatenate(([_INDEX_START[index]], level[:-1]))
        i_open = np.round(prev * (1.0 + rel["open"]), 2)
        i_close = np.round(level, 2)
        i_high = np.maximum(np.round(prev * (1.0 + rel["high"]), 2), np.maximum(i_open, i_close))
        i_low = np.minimum(np.round(prev * (1.0 + rel["low"]), 2), np.minimum(i_open, i_close))
        i_volume = np.nansum(np.where(member[None, :], v, 0.0), axis=1)
        i_amount = np.round(np.nansum(np.where(member[None, :], amt, 0.0), axis=1), 2)
        prev_close = np.asarray(np.round(prev, 2), dtype=np.float64)
        columns[index] = [i_open, i_high, i_low, i_close, i_volume, i_amount, prev_close]
    stacked = []
    for k, panel in enumerate((o, h, lo, c, v, amt, pc)):
        extra = np.column_stack([columns[index][k] for index in members])
        stacked.append(np.hstack([panel, extra]))
    ones = np.ones((n_days, len(members)))
    no = np.zeros((n_days, len(members)), dtype=bool)
    listings = {spec.symbol: _listing(spec, shares[i], c[:, i]) for i, spec in enumerate(SPECS)}
    listings.update({index.symbol: index for index in INDICES})
    return Universe(
        dates=dates,
        symbols=[*symbols, *members],
        open=stacked[0],
        high=stacked[1],
        low=stacked[2],
        close=stacked[3],
        volume=stacked[4],
        amount=stacked[5],
        prev_close=stacked[6],
        adj_factor=np.hstack([factor, ones]),
        is_st=np.hstack([st, no]),
        suspended=np.hstack([suspended, no]),
        listings=listings,
    )


def _listing(spec: _Spec, shares: float, closes: FloatArray) -> Listing:
    exchange = spec.symbol.partition(".")[2]
    is_st = spec.symbol == ST_SYMBOL
    last = float(closes[~np.isnan(closes)][-1])
    return Listing(
        symbol=spec.symbol,
        name=("*ST" if is_st else "") + spec.name,
        exchange=exchange,
        board=board_of(spec.symbol).value,
        market="cn_a",
        kind="stock",
        sector=spec.sector,
        industry=spec.industry,
        market_cap=round(shares * last, 2),
        currency="CNY",
        listed_on=spec.listed,
        is_st=is_st,
    )
